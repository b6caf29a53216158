"""Configuration of evaluation: scoring windows, ledger chunks, score-first TTT.

Defaults reproduce the records (techniques.md §6): window 2048 with stride 64 (SP8K's canonical
sliding form, §6.2), and the score-first TTT recipe of PR #461 -> #549 (§6.3): SGD lr 0.002,
momentum 0.9, 3 epochs per 32,768-token chunk, batches of 32 sequences, grad clip 1.0, cosine
decay over chunks, no frozen blocks. Scale them down for CPU runs with `--set`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pgolf.config import check
from pgolf.model.params import PARAM_CLASSES

Mode = Literal["plain", "sliding", "ttt"]


@dataclass(frozen=True)
class TTTConfig:
    """Score-first test-time training (techniques.md §6.3; rules TTT-1..8).

    optimizer: "sgd" (records; no Nesterov, momentum persists across chunks) or "adamw".
    lr: peak learning rate (records: 0.002 at sp1024, PR #549; 0.005 at sp8192, PR #1413).
    momentum: SGD momentum, or AdamW's beta1.
    beta2: AdamW's beta2.
    weight_decay: decoupled weight decay (AdamW) or L2 (SGD); records use 0.
    epochs: passes over each scored chunk before the next chunk is scored (PR #549: 3; rules TTT-5).
    batch_seqs: sequences per optimizer step, over all ranks (PR #549: 32).
    seq_len: tokens per training sequence; 0 = the evaluation window length. Each chunk is cut
        into floor(chunk / seq_len) full sequences from its start; a remainder is not trained on.
    params: which parameters adapt: "all" (PR #549), "mlp" (MLP weights only), "names" (those
        whose name matches a glob of `param_globs`, PR #861) or "lora" (rank-`lora_rank` adapters
        on the Linear layers named by `lora_targets`, PR #77).
    param_globs: name globs of the parameters that adapt with params = "names" (fnmatch, e.g.
        "*.mlp.fc.weight"; PR #861: its up/down projections and every "scale" tensor).
    lora_rank: rank of the LoRA adapters.
    lora_targets: module-name suffixes of the Linear layers that get LoRA adapters.
    freeze_blocks: the first N transformer blocks never adapt (PR #461: 2; PR #549: 0).
    block_lr_decay: block i of n adapts with lr * decay**(n - 1 - i) (1.0 = uniform).
    block_lr_floor: linear per-block lr (PR #1406's discriminative TTT): the first trainable block
        adapts with lr * floor, the last with lr, linearly between; parameters outside the blocks
        at lr (1.0 = uniform; PR #1406: 0.3). Multiplies with block_lr_decay.
    block_lr_classes: the parameter classes (`pgolf.model.param_class`) the per-block lr applies to;
        the others adapt at lr. Empty = all. PR #1406: ["control"] (its weight matrices live in banks
        outside its blocks, so its ramp only ever reached the per-block gains and mixes).
    schedule: "cosine": lr * (1 + cos(pi * c / (n - 1))) / 2 over the chunks c (PR #549), or "constant".
    grad_clip: clip the global gradient norm to this (0 = off).
    seed: seed of the LoRA initialization.
    """

    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = 0.002
    momentum: float = 0.9
    beta2: float = 0.999
    weight_decay: float = 0.0
    epochs: int = 3
    batch_seqs: int = 32
    seq_len: int = 0
    params: Literal["all", "mlp", "names", "lora"] = "all"
    param_globs: tuple[str, ...] = ()
    lora_rank: int = 8
    lora_targets: tuple[str, ...] = ("attn.c_q", "attn.c_v")
    freeze_blocks: int = 0
    block_lr_decay: float = 1.0
    block_lr_floor: float = 1.0
    block_lr_classes: tuple[str, ...] = ()
    schedule: Literal["cosine", "constant"] = "cosine"
    grad_clip: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        check(self.lr > 0, "ttt.lr", "must be positive")
        check(0 <= self.momentum < 1, "ttt.momentum", "must be in [0, 1)")
        check(0 <= self.beta2 < 1, "ttt.beta2", "must be in [0, 1)")
        check(self.weight_decay >= 0, "ttt.weight_decay", "must be >= 0")
        check(self.epochs >= 0, "ttt.epochs", "must be >= 0 (0 scores without adapting)")
        check(self.batch_seqs >= 1, "ttt.batch_seqs", "must be at least 1")
        check(self.seq_len >= 0, "ttt.seq_len", "must be >= 0 (0 = the evaluation window)")
        check(self.lora_rank >= 1, "ttt.lora_rank", "must be at least 1")
        check(len(self.lora_targets) > 0 or self.params != "lora", "ttt.lora_targets",
              "must name at least one Linear layer when params = 'lora'")
        check(self.freeze_blocks >= 0, "ttt.freeze_blocks", "must be >= 0")
        check(self.block_lr_decay > 0, "ttt.block_lr_decay", "must be positive")
        check(0 < self.block_lr_floor <= 1, "ttt.block_lr_floor", "must be in (0, 1] (1 = uniform)")
        check(all(c in PARAM_CLASSES for c in self.block_lr_classes), "ttt.block_lr_classes",
              f"must name classes among {', '.join(PARAM_CLASSES)}; got {list(self.block_lr_classes)}")
        check(len(self.param_globs) > 0 or self.params != "names", "ttt.param_globs",
              "must name at least one parameter glob when params = 'names'")
        check(self.grad_clip >= 0, "ttt.grad_clip", "must be >= 0 (0 = off)")


@dataclass(frozen=True)
class EvalConfig:
    """How the validation stream is scored.

    mode: "plain" (non-overlapping windows of seq_len), "sliding" (windows advanced by `stride`,
        each position scored once, SP8K's canonical form) or "ttt" (sliding scoring, then adaptation
        on each scored chunk).
    seq_len: window length L in tokens; 0 = the model's training sequence length.
    stride: sliding-window stride S (records: 64), 1 <= S <= L; every later window scores its last S positions.
    batch_seqs: windows per forward pass on each rank (records: 32).
    chunk_tokens: positions per ledger entry and TTT chunk (records: 32,768).
    doc_independent: windows and chunks never cross a BOS, and the TTT adapter is reset at every
        document: each document is scored as if it were alone (PR #77, rules MET-8, TTT-8).
    autocast: bf16 autocast for forward passes on CUDA (records); fp32 on CPU regardless.
    compile: torch.compile the scoring forward (warmed up on synthetic tokens only, rules TTT-6).
    time_budget_s: evaluation clock budget (rules TIME-3: 600 s); TTT stops adapting, but never
        stops scoring, when the projected finish would pass it. 0 = no budget.
    deadline_margin_s: safety margin kept before the budget when deciding to adapt.
    ttt: the score-first TTT options (used by mode "ttt").
    """

    mode: Mode = "sliding"
    seq_len: int = 0
    stride: int = 64
    batch_seqs: int = 32
    chunk_tokens: int = 32768
    doc_independent: bool = False
    autocast: bool = True
    compile: bool = False
    time_budget_s: float = 600.0
    deadline_margin_s: float = 10.0
    ttt: TTTConfig = field(default_factory=TTTConfig)

    def __post_init__(self) -> None:
        check(self.seq_len >= 0, "seq_len", "must be >= 0 (0 = the model's training sequence length)")
        check(self.stride >= 1, "stride", "must be at least 1")
        check(self.seq_len == 0 or self.stride <= self.seq_len, "stride",
              f"must be at most seq_len ({self.seq_len}); stride = seq_len is the plain evaluation")
        check(self.batch_seqs >= 1, "batch_seqs", "must be at least 1")
        check(self.chunk_tokens >= 1, "chunk_tokens", "must be at least 1")
        check(self.time_budget_s >= 0, "time_budget_s", "must be >= 0 (0 = no budget)")
        check(self.deadline_margin_s >= 0, "deadline_margin_s", "must be >= 0")

    @property
    def window_stride(self) -> int:
        """The stride the windows really use: plain evaluation is sliding with stride = L."""
        return self.seq_len if self.mode == "plain" else self.stride

    @property
    def ttt_seq_len(self) -> int:
        return self.ttt.seq_len or self.seq_len
