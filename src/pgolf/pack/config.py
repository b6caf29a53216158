"""`PackConfig`: how `pgolf pack` compresses the model, what it checks it against, and what the
submission file evaluates by default."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pgolf.config import check
from pgolf.eval.config import EvalConfig
from pgolf.pack.budget import LIMIT_BYTES


@dataclass(frozen=True)
class PackConfig:
    """codec: model.bin's codec: "rans" (pgolf's entropy coder for the codes; the other sections get
        the smallest of zstd/lzma/brotli), "zstd" (level 22), "lzma" (preset 9e), "brotli" (quality
        11), "pergroup" (PR #2135's layout: each code matrix's rows in a greedy similarity order,
        transposed, brotli-11; the other sections as "rans"), "auto" (per section the smallest of
        all; minutes on a full-size model) or "none".
    layout: codes one per byte ("bytes"), bit-packed ("bitpack") or the smaller ("auto"); not used by rans.
    shuffle: byte-shuffle the other tensors ("on"), not ("off"), or the smaller ("auto").
    limit_bytes: the artifact cap in decimal bytes: 16,000,000 for the challenge's tracks; e.g.
        1,000,000 for a smaller track. Over it, pack still writes the artifact, says so, and exits 3.
    train_seq_len: the training sequence length recorded for evaluation; 0 = read it from the train
        manifest through the quant manifest's lineage.
    trainable: embed the training pipeline and the run's recipe in train_gpt.py, so that without a
        model.bin (or with TRAIN=1) it trains, quantizes and packs one, then evaluates it (~60 KB);
        false: the file only evaluates a model.bin beside it (~34 KB).
    shake: drop module-level definitions the submission's program never names (smaller train_gpt.py).
    wrapper: how train_gpt.py stores its program: "lzma", "zlib" or the smaller ("auto").
    minifier: how each embedded module is made small before compression: "ast" (ast.unparse, one
        space per indent) or "python-minifier" (the pinned python-minifier on top: local names
        renamed, statements joined; ~6% smaller train_gpt.py). A failure is an error, never a fallback.
    eval: the evaluation train_gpt.py runs (seq_len 0 = train_seq_len), recorded in model.bin;
        EVAL_* environment variables override it at run time.
    """

    codec: Literal["rans", "zstd", "lzma", "brotli", "pergroup", "auto", "none"] = "rans"
    layout: Literal["auto", "bytes", "bitpack"] = "auto"
    shuffle: Literal["auto", "on", "off"] = "auto"
    limit_bytes: int = LIMIT_BYTES
    train_seq_len: int = 0
    trainable: bool = True
    shake: bool = True
    wrapper: Literal["auto", "lzma", "zlib"] = "auto"
    minifier: Literal["ast", "python-minifier"] = "ast"
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self) -> None:
        check(self.limit_bytes > 0, "limit_bytes", "must be a positive number of bytes (16000000 for the challenge)")
        check(self.train_seq_len >= 0, "train_seq_len", "must be >= 0 (0: from the train manifest)")
        check(self.train_seq_len == 0 or self.train_seq_len >= 2, "train_seq_len", "must be at least 2")
