"""Configuration of `pgolf data build`."""

from __future__ import annotations

from dataclasses import dataclass

from pgolf.config import check

# The automatic held-out split: as many documents as val, at most this many (enough for the contamination
# probe's document bootstrap; the probe samples at most this many documents of each split anyway).
HELDOUT_CAP = 1000
TRANSFORMS = ("none", "caseops")


@dataclass(frozen=True)
class DataConfig:
    """How to turn a text corpus into challenge shards.

    corpus: corpus files in order (.jsonl, .jsonl.zst, .jsonl.gz, .txt); empty = the embedded corpus.
    tokenizer: a SentencePiece .model; empty = train one (always for --train-tokenizer).
    train_tokenizer: train a BPE with the official sp1024 settings on the training documents only.
    vocab_size: vocabulary of a trained tokenizer.
    val_docs: the first `val_docs` documents are the validation split, the rest train.
    heldout_docs: documents after val set aside for `pgolf verify --probe` (no stage ever reads them:
        not train, not calibration, not the tokenizer); -1 = min(val_docs, HELDOUT_CAP), 0 = none.
    shard_tokens: tokens per shard file (the challenge uses 10^8).
    tokenizer_max_sentences: lines the tokenizer trainer keeps (sampled beyond that).
    transform: "none", or "caseops": every document is rewritten by the lossless CaseOps case transform
        (PR #1729 / #1736 / #2135, `pgolf.data.caseops`) before it is tokenized with `tokenizer` (one trained
        for CaseOps, named by path), and the byte sidecar charges the original text's UTF-8 bytes.
    """

    corpus: tuple[str, ...] = ()
    tokenizer: str = ""
    train_tokenizer: bool = False
    vocab_size: int = 1024
    val_docs: int = 50
    heldout_docs: int = -1
    shard_tokens: int = 100_000_000
    tokenizer_max_sentences: int = 2_000_000
    transform: str = "none"

    def __post_init__(self) -> None:
        check(self.val_docs >= 1, "val_docs", "must be at least 1 (validation needs documents)")
        check(self.heldout_docs >= -1, "heldout_docs", "must be -1 (automatic), 0 (none) or a document count")
        check(self.shard_tokens >= 1, "shard_tokens", "must be positive")
        check(260 <= self.vocab_size <= 65536, "vocab_size", "must be in [260, 65536]")
        check(not (self.tokenizer and self.train_tokenizer), "tokenizer",
              "cannot be combined with train_tokenizer (pick one)")
        check(self.tokenizer_max_sentences >= 1000, "tokenizer_max_sentences", "must be at least 1000")
        check(self.transform in TRANSFORMS, "transform", f"must be one of {', '.join(TRANSFORMS)}")
        check(self.transform == "none" or bool(self.tokenizer), "transform",
              "caseops needs a tokenizer trained for CaseOps: pass --tokenizer PATH.model (e.g. PR #2135's "
              "fineweb_8192_bpe_lossless_caps_caseops_v1_reserved.model)")

    @property
    def heldout_count(self) -> int:
        """The held-out documents this build sets aside (`heldout_docs` with -1 resolved)."""
        return min(self.val_docs, HELDOUT_CAP) if self.heldout_docs < 0 else self.heldout_docs
