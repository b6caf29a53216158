"""SentencePiece tokenizers: training with the official sp1024 settings, loading from bytes."""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Iterator
from typing import Any

from pgolf.errors import DataError

BOS_ID = 1

# The settings of the challenge's sp1024 tokenizer (data/download_hf_docs_and_tokenize.py upstream);
# the shipped fineweb_1024_bpe.model was trained with them.
OFFICIAL_SETTINGS: dict[str, Any] = {
    "model_type": "bpe",
    "character_coverage": 0.999,
    "byte_fallback": True,
    "split_digits": True,
    "normalization_rule_name": "nmt_nfkc",
    "add_dummy_prefix": False,
    "pad_id": 0,
    "bos_id": 1,
    "eos_id": 2,
    "unk_id": 3,
    "hard_vocab_limit": False,
}


def training_sentences(docs: Iterable[str]) -> Iterator[str]:
    """Lines of the documents, as the trainer's sentences.

    SentencePiece skips sentences longer than `max_sentence_length` (4192 bytes by default), which
    would drop most long documents; pieces never cross whitespace and the normalizer turns newlines
    into spaces, so feeding lines changes no merge statistics while keeping every line. NUL becomes a
    space, as upstream.
    """
    for doc in docs:
        for line in doc.replace("\x00", " ").split("\n"):
            line = line.strip()
            if line:
                yield line[:4000]


def train_tokenizer(docs: Iterable[str], vocab_size: int, max_sentences: int = 2_000_000,
                    num_threads: int | None = None) -> bytes:
    """Train a SentencePiece BPE with the official settings; returns the serialized model.

    `max_sentences` caps the lines the trainer keeps in memory (it samples when there are more).
    """
    import sentencepiece as spm

    if vocab_size < 260:
        raise DataError(f"vocab size {vocab_size} is too small: byte fallback alone needs 256 pieces + 4 specials",
                        "use --vocab-size 1024 (the challenge's) or larger")
    if vocab_size > 65536:
        raise DataError(f"vocab size {vocab_size} does not fit uint16 shards", "use at most 65536")
    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=training_sentences(docs),
            model_writer=model,
            vocab_size=vocab_size,
            input_sentence_size=max_sentences,
            shuffle_input_sentence=True,
            num_threads=num_threads or max(1, os.cpu_count() or 1),
            minloglevel=2,
            **OFFICIAL_SETTINGS,
        )
    except RuntimeError as e:
        raise DataError(f"tokenizer training failed: {e}",
                        "give it more text or a smaller --vocab-size") from None
    return model.getvalue()


def load_tokenizer(model_bytes: bytes, name: str = "tokenizer"):
    """A SentencePieceProcessor from serialized model bytes; a bad file is a DataError."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor()
    try:
        sp.LoadFromSerializedProto(model_bytes)
    except (RuntimeError, OSError, TypeError) as e:
        raise DataError(f"{name} is not a SentencePiece model ({e})", "pass a .model file") from None
    if sp.bos_id() != BOS_ID:
        raise DataError(f"{name} has BOS id {sp.bos_id()}, the challenge format needs BOS id {BOS_ID}",
                        "train it with bos_id=1 (pgolf data build --train-tokenizer does)")
    return sp
