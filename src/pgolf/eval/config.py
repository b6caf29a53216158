"""Configuration of evaluation: scoring windows, ledger chunks, score-first TTT.

Defaults reproduce the records (techniques.md §6): window 2048 with stride 64 (SP8K's canonical
sliding form, §6.2), and the score-first TTT recipe of PR #461 -> #549 (§6.3): SGD lr 0.002,
momentum 0.9, 3 epochs per 32,768-token chunk, batches of 32 sequences, grad clip 1.0, cosine
decay over chunks, no frozen blocks. Scale them down for CPU runs with `--set`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from pgolf.config import check
from pgolf.model.params import PARAM_CLASSES

Mode = Literal["plain", "sliding", "ttt"]
Tilt = Literal["none", "ngram"]
# The LoRA factors of method "phased_lora" (PR #2135's BatchedTTTLoRA): per virtual layer, on the query,
# key and value projections' outputs, the attention output ("o") and the MLP output ("mlp"), each read
# from that sublayer's normed input; "head" on the logits, read from the final norm.
PHASED_LORA_LAYERS = ("q", "k", "v", "o", "mlp", "head")
# The n-gram tilt's largest order: #2135's context hash has one coefficient per context slot (32 of them).
MAX_ORDER = 33


@dataclass(frozen=True)
class TiltConfig:
    """The n-gram tilt (`pgolf.eval.ngram_tilt`). order: n-gram order (context = order - 1 tokens);
    threshold: minimum hint confidence to tilt; boost: beta, the log-odds added to the hinted token.
    Defaults: #2135's TOKEN_ORDER=16, TOKEN_THRESHOLD=0.800, TOKEN_BOOST=2.625."""

    order: int = 16
    threshold: float = 0.8
    boost: float = 2.625

    def __post_init__(self) -> None:
        check(1 <= self.order <= MAX_ORDER, "ngram_tilt.order", f"must be in [1, {MAX_ORDER}]")
        check(0.0 < self.threshold <= 1.0, "ngram_tilt.threshold", "must be in (0, 1]")
        check(math.isfinite(self.boost) and self.boost >= 0.0, "ngram_tilt.boost", "must be finite and >= 0")


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
    adam_eps: AdamW's epsilon (PR #2135's LoRA TTT: 1e-10).

    method: "chunks" (the options above: train on each scored chunk, PR #549) or "phased_lora"
        (PR #2135's phased score-first LoRA TTT, `pgolf.eval.lora_ttt`; needs eval.doc_windows and not
        eval.doc_independent). Its
        keys follow; it uses optimizer, lr, momentum (AdamW beta1), beta2, weight_decay, adam_eps,
        lora_rank and seed from above, and trains one AdamW step per scored chunk.
    lora_alpha: the LoRA output is scaled by lora_alpha / lora_rank (#2135: TTT_LORA_ALPHA 144).
    lora_layers: which factors exist, among "q", "k", "v", "o", "mlp", "head" (#2135's launch:
        TTT_K_LORA=0, TTT_O_LORA=1, TTT_MLP_LORA=1, q, v and head always).
    warm_start_a: at each new document only the B factors (and the optimizer's moments) are zeroed and
        the A factors carry over from the previous document (#2135 TTT_WARM_START_A=1); false: A drawn
        afresh too.
    prefix_docs: the first documents of the stream whose scoring is followed by the global phase
        (#2135 PHASED_TTT_PREFIX_DOCS 2500); 0 = no global phase.
    num_phases: the prefix is cut into this many phases; after each, a global pass over every scored
        prefix document, then fresh LoRA factors (#2135 PHASED_TTT_NUM_PHASES 1).
    global_params: what the global pass trains: "all" (every parameter, #2135's code; its loss uses
        the fixed logit softcap, so the AsymLogit caps get no gradient) or "caps" (softcap_pos and
        softcap_neg only, on the learned-cap loss).
    global_lr, global_momentum, global_epochs, global_chunk_tokens, global_batch_seqs, global_grad_clip:
        the global pass's SGD: #2135's GLOBAL_TTT_* defaults 0.001, 0.9, 1, 32768, 32, 1.0; cosine over
        its chunks, the last chunk not trained on, sequences of the evaluation window.
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
    adam_eps: float = 1e-8
    method: Literal["chunks", "phased_lora"] = "chunks"
    lora_alpha: float = 144.0
    lora_layers: tuple[str, ...] = ("q", "v", "o", "mlp", "head")
    warm_start_a: bool = True
    prefix_docs: int = 2500
    num_phases: int = 1
    global_params: Literal["all", "caps"] = "all"
    global_lr: float = 0.001
    global_momentum: float = 0.9
    global_epochs: int = 1
    global_chunk_tokens: int = 32768
    global_batch_seqs: int = 32
    global_grad_clip: float = 1.0

    def __post_init__(self) -> None:
        check(self.lr > 0, "ttt.lr", "must be positive")
        check(self.adam_eps > 0, "ttt.adam_eps", "must be positive")
        check(self.lora_alpha > 0, "ttt.lora_alpha", "must be positive")
        check(len(self.lora_layers) > 0 and all(x in PHASED_LORA_LAYERS for x in self.lora_layers),
              "ttt.lora_layers", f"must name some of {', '.join(PHASED_LORA_LAYERS)}; got {list(self.lora_layers)}")
        check(self.prefix_docs >= 0, "ttt.prefix_docs", "must be >= 0 (0 = no global phase)")
        check(self.num_phases >= 1, "ttt.num_phases", "must be at least 1")
        check(self.global_lr > 0, "ttt.global_lr", "must be positive")
        check(0 <= self.global_momentum < 1, "ttt.global_momentum", "must be in [0, 1)")
        check(self.global_epochs >= 0, "ttt.global_epochs", "must be >= 0")
        check(self.global_chunk_tokens >= 1, "ttt.global_chunk_tokens", "must be at least 1")
        check(self.global_batch_seqs >= 1, "ttt.global_batch_seqs", "must be at least 1")
        check(self.global_grad_clip >= 0, "ttt.global_grad_clip", "must be >= 0 (0 = off)")
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
    doc_windows: windows and chunks never cross a BOS, without the claim of independence: the adapter
        may carry state from earlier (scored) documents; its per-document reset is recorded in the
        ledger (PR #2135's phased LoRA TTT). Implied by doc_independent.
    chunk_windows: each chunk is scored by one window, the seq_len tokens (at most) that end at the
        chunk's end, inside its segment (PR #2135's TTT scoring); needs chunk_tokens <= seq_len.
        Otherwise sliding windows of `stride`.
    autocast: bf16 autocast for forward passes on CUDA (records); fp32 on CPU regardless.
    compile: torch.compile the scoring forward (warmed up on synthetic tokens only, rules TTT-6).
    time_budget_s: evaluation clock budget (rules TIME-3: 600 s); TTT stops adapting, but never
        stops scoring, when the projected finish would pass it. 0 = no budget.
    deadline_margin_s: safety margin kept before the budget when deciding to adapt.
    tilt: "none", or "ngram": the token-only online n-gram tilt of PR #2135 (from PR #1145) applied to
        the scored distribution in every mode; it never changes what TTT trains on.
    tilt_order: n-gram order of the tilt (its context is the last order - 1 scored tokens; #2135: 16).
    tilt_threshold: minimum confidence of the n-gram's hint for a position to be tilted (#2135: 0.8).
    tilt_boost: beta, the log-odds added to the hinted token before renormalizing (#2135: 2.625).
    ttt: the score-first TTT options (used by mode "ttt").
    """

    mode: Mode = "sliding"
    seq_len: int = 0
    stride: int = 64
    batch_seqs: int = 32
    chunk_tokens: int = 32768
    doc_independent: bool = False
    doc_windows: bool = False
    chunk_windows: bool = False
    autocast: bool = True
    compile: bool = False
    time_budget_s: float = 600.0
    deadline_margin_s: float = 10.0
    tilt: Tilt = "none"
    tilt_order: int = 16
    tilt_threshold: float = 0.8
    tilt_boost: float = 2.625
    ttt: TTTConfig = field(default_factory=TTTConfig)

    def __post_init__(self) -> None:
        check(self.seq_len >= 0, "seq_len", "must be >= 0 (0 = the model's training sequence length)")
        check(self.stride >= 1, "stride", "must be at least 1")
        check(self.seq_len == 0 or self.chunk_windows or self.stride <= self.seq_len, "stride",
              f"must be at most seq_len ({self.seq_len}); stride = seq_len is the plain evaluation")
        check(self.batch_seqs >= 1, "batch_seqs", "must be at least 1")
        check(self.chunk_tokens >= 1, "chunk_tokens", "must be at least 1")
        check(self.time_budget_s >= 0, "time_budget_s", "must be >= 0 (0 = no budget)")
        check(self.deadline_margin_s >= 0, "deadline_margin_s", "must be >= 0")
        check(not self.chunk_windows or self.seq_len == 0 or self.chunk_tokens <= self.seq_len, "chunk_tokens",
              f"must be at most seq_len ({self.seq_len}) with chunk_windows: one window scores a whole chunk")
        check(self.mode != "ttt" or self.ttt.method != "phased_lora" or (self.doc_windows and not self.doc_independent),
              "doc_windows", "must be true, and doc_independent false, with ttt.method = 'phased_lora' (it scores per "
              "document and carries state across documents)")
        check(1 <= self.tilt_order <= MAX_ORDER, "tilt_order", f"must be in [1, {MAX_ORDER}]")
        check(0.0 < self.tilt_threshold <= 1.0, "tilt_threshold", "must be in (0, 1]")
        check(math.isfinite(self.tilt_boost) and self.tilt_boost >= 0.0, "tilt_boost", "must be finite and >= 0")

    @property
    def tilt_config(self) -> TiltConfig | None:
        """The n-gram tilt's settings, or None when the scored distribution is the model's own."""
        if self.tilt == "none":
            return None
        return TiltConfig(order=self.tilt_order, threshold=self.tilt_threshold, boost=self.tilt_boost)

    @property
    def per_document(self) -> bool:
        """Windows and chunks never cross a BOS (doc_independent or doc_windows)."""
        return self.doc_independent or self.doc_windows

    @property
    def window_stride(self) -> int:
        """The stride the windows really use: plain evaluation is sliding with stride = L."""
        return self.seq_len if self.mode == "plain" else self.stride

    @property
    def ttt_seq_len(self) -> int:
        return self.ttt.seq_len or self.seq_len
