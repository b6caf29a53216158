"""`TrainConfig`: everything `pgolf train` needs besides the data, with the model's config nested.

Defaults are the challenge baseline's (techniques.md §3.1, §3.4-3.5); later records' settings live
in the presets (configs/*.toml). A preset is a TOML file with a `[model]` table (ModelConfig) and a
`[train]` table (the fields below).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

from pgolf.config import check
from pgolf.errors import ConfigError
from pgolf.model import ModelConfig
from pgolf.model.params import QAT_CLASSES
from pgolf.optim.groups import AuxGroups, OptimSettings


@dataclass(frozen=True)
class QatBits:
    """Bit width per parameter class for quantization-aware training; 0 = that class stays exact.

    In TOML: `qat_bits = { mlp = 5, attn = 6 }` (the int5-MLP / int6-attention split of PR #180);
    on the command line: `--set qat_bits.mlp=5`. The bigram and value-embedding tables and their
    projections are separate targets (PR #1216 quantizes the bigram table and proj and the VE proj;
    PR #861 and #1406 only the projections).
    """

    attn: int = 6
    mlp: int = 6
    embed: int = 0
    bigram: int = 0
    """The bigram table."""
    bigram_proj: int = 0
    value_embed: int = 0
    """The value-embedding table."""
    value_embed_proj: int = 0

    def __post_init__(self) -> None:
        for name in QAT_CLASSES:
            bits = getattr(self, name)
            check(bits == 0 or 2 <= bits <= 8, f"qat_bits.{name}", f"must be 0 (exact) or 2..8, got {bits}")

    def as_mapping(self) -> dict[str, int]:
        """{class: bits} of the quantized classes, as `GPT.set_qat` takes it."""
        return {name: getattr(self, name) for name in QAT_CLASSES if getattr(self, name)}


@dataclass(frozen=True)
class TrainConfig:
    """How to train one model. Times are seconds of training (compile warm-up and validation excluded)."""

    model: ModelConfig = field(default_factory=ModelConfig)

    # --- batch and length -------------------------------------------------------------------
    seq_len: int = 1024
    """Training sequence length L."""
    batch_tokens: int = 524_288
    """Tokens per optimizer step, all ranks and micro-steps together (the baseline's 524,288)."""
    grad_accum_base: int = 8
    """Micro-steps on one process; world size W runs grad_accum_base / W each, so 1 and 8 GPUs run
    the same experiment."""
    iterations: int = 20_000
    """Step cap (the baseline's 20,000; the wall clock usually binds first)."""
    max_seconds: float = 600.0
    """Wall-clock cap on training time (the challenge's 600 s); 0 = none. The last step overshoots
    by less than one step."""
    warmup_steps: int = 20
    """Compile warm-up steps on training data whose effects are then reset (weights, optimizer
    states, data stream); outside the clock. Not an lr warm-up."""

    # --- schedule ---------------------------------------------------------------------------
    warmdown_iters: int = 1200
    """Linear lr warm-down over the last N steps, measured in time under a wall-clock cap (§3.5)."""
    warmdown_frac: float = 0.0
    """Fraction-of-training warm-down (SP8K, PR #1394: 0.667); > 0 replaces warmdown_iters."""
    min_lr_frac: float = 0.0
    """Floor of the lr multiplier (0 baseline; 0.1 in later records)."""

    # --- optimizers -------------------------------------------------------------------------
    tied_embed_lr: float = 0.05
    """Adam lr of a tied embedding."""
    embed_lr: float = 0.6
    """Adam lr of an untied embedding (and the bigram / value-embedding tables when untied)."""
    head_lr: float = 0.008
    """Adam lr of an untied lm_head."""
    matrix_lr: float = 0.04
    """Muon lr of the block matrices."""
    scalar_lr: float = 0.04
    """Adam lr of vectors, scalars and control tensors."""
    beta1: float = 0.9
    beta2: float = 0.95
    adam_eps: float = 1e-8
    adam_wd: float = 0.0
    """Decoupled weight decay of the Adam groups (AdamW; 0.04 in PR #180 onward)."""
    embed_wd: float = -1.0
    """Decoupled weight decay of the embedding group alone (PR #2135 EMBED_WD = 0.085); -1 = adam_wd."""
    muon_momentum: float = 0.95
    """Muon momentum after its warm-up (0.99 from PR #65 on)."""
    muon_momentum_warmup_start: float = 0.85
    muon_momentum_warmup_steps: int = 500
    muon_backend_steps: int = 5
    """Newton-Schulz iterations."""
    muon_wd: float = 0.0
    """Decoupled Muon weight decay, times the scheduled lr (0.04 PR #162 on; 0.085-0.095 later)."""
    muon_variant: Literal["standard", "eq_r"] = "standard"
    """"eq_r": MuonEq-R, rows of the update equalized before Newton-Schulz (PR #1217, #1406)."""
    ns_coefficients: Literal["baseline", "polar_express", "polar_express_pr1344"] = "baseline"
    """Newton-Schulz coefficients: the baseline quintic or Polar Express (arXiv:2505.16932) normalized
    by 1.02 ||U||_F; "polar_express_pr1344": the same table normalized by ||U||_F + 1e-7, as PR #1344
    through PR #2135 run it."""
    optimizer: Literal["muon", "parallel_muon"] = "muon"
    """The matrices' optimizer. "muon": Muon under DDP (each rank orthogonalizes every W-th matrix,
    one all-reduce shares the updates). "parallel_muon": Parallel Muon (PR #1216), the same update;
    under torchrun the model is not wrapped in DDP: matrices of one shape are banked, their gradients
    reduce-scattered, each rank keeps the momentum of and orthogonalizes its shard, the updates are
    all-gathered; the other gradients are all-reduced meanwhile. For several GPUs; one process runs
    Muon's arithmetic either way."""
    grad_clip: float = 0.0
    """Global gradient-norm clip; 0 = off (0.3 from PR #162 on)."""
    aux_groups: AuxGroups = field(default_factory=AuxGroups)
    """Optimizer group of the bigram / value-embedding tables and projections ("auto" = pgolf's:
    tables Adam at the embedding lr, projections Muon). PR #861: bigram_table, value_embed_table and
    value_embed_proj = "scalar"; PR #1216, #1406: bigram_proj and value_embed_proj = "scalar"."""
    decoder_lr_mult: float = 1.0
    """lr multiplier of every parameter of blocks num_layers // 2 and up, matrices and scalars
    (PR #861 DECODER_LR_MULT = 2.0); 1 = off."""

    # --- weight averaging, QAT, recurrence --------------------------------------------------
    ema_decay: float = 0.0
    """EMA of the weights after every step, saved instead of the final weights; 0 = off (0.997 in records)."""
    ema_start_step: int = 0
    """0: the EMA starts from the initial weights. N > 0: it starts as a copy of the weights after
    step N and averages from step N + 1 on (PR #366 EMA_START_STEP = 50; PR #1216: 1)."""
    ema_restart_at_qat: bool = False
    """Drop the EMA when QAT switches on; it restarts as a copy of the weights after that step
    (PR #1216: "EMA will restart from current QAT weights")."""
    swa_every: int = 0
    """SWA snapshot every N steps during the warm-down, their uniform average saved; 0 = off (50 in
    PR #162/#180). With ema_decay > 0 too, the snapshots are of the EMA weights."""
    swa_start_frac: float = 0.5
    """SWA collects once the lr multiplier is below this (PR #162: 0.5, PR #180: 0.4)."""
    qat_start_frac: float = -1.0
    """Quantization-aware training from this fraction of training on; -1 = off, 0 = the whole run."""
    qat_start_lr_mult: float = 0.0
    """QAT also switches on at the first step whose lr multiplier is below this (PR #861
    QAT_THRESHOLD, PR #1406 LATE_QAT_THRESHOLD: 0.15); 0 = only qat_start_frac."""
    qat_bits: QatBits = field(default_factory=QatBits)
    """Bits per class while QAT is on."""
    qat_scale_floor: float = 0.0
    """Lower bound of the QAT row scales (PR #861: 1/15 at int5; PR #1406: 1/31 at int6); 0 = none
    (fp16's smallest normal, as `pgolf quantize` stores them)."""
    recur_start_frac: float = 0.5
    """Depth recurrence (model.recur_layers) switches on at this fraction of training (PR #1204 / #1394:
    about half); -1 = never."""

    # --- validation, logging, runtime -------------------------------------------------------
    val_every: int = 0
    """Validate every N steps (and at step 0); 0 = only at the end. A diagnostic: it drives nothing."""
    val_tokens: int = 0
    """Cap on validation tokens for periodic validation; 0 = all. The final validation uses all."""
    val_batch_tokens: int = 524_288
    """Validation tokens per forward pass (all ranks)."""
    seed: int = 1337
    device: Literal["auto", "cpu", "cuda"] = "auto"
    compile: bool = False
    """torch.compile the model (GPU; the warm-up steps absorb the compile time)."""
    dtype: Literal["auto", "fp32", "bf16"] = "auto"
    """"auto": bf16 autocast on GPU, fp32 on CPU."""
    checkpoint_every_s: float = 300.0
    """Seconds between resumable checkpoints (wall time); 0 = none."""
    log_every: int = 200
    """Log a train step line every N steps (and the first 10); 0 = only the first 10 and the last."""

    def __post_init__(self) -> None:
        check(self.seq_len >= 1, "seq_len", "must be positive")
        check(self.batch_tokens >= self.seq_len, "batch_tokens", f"must be at least seq_len ({self.seq_len})")
        check(self.grad_accum_base >= 1, "grad_accum_base", "must be positive")
        check(self.batch_tokens % (self.grad_accum_base * self.seq_len) == 0, "batch_tokens",
              f"must be a multiple of grad_accum_base * seq_len = {self.grad_accum_base * self.seq_len}")
        check(self.iterations >= 1, "iterations", "must be at least 1")
        check(self.max_seconds >= 0, "max_seconds", "must be >= 0 (0 = no wall-clock cap)")
        check(self.warmup_steps >= 0, "warmup_steps", "must be >= 0")
        check(self.warmdown_iters >= 0, "warmdown_iters", "must be >= 0")
        check(0 <= self.warmdown_frac <= 1, "warmdown_frac", "must be in [0, 1]")
        check(0 <= self.min_lr_frac < 1, "min_lr_frac", "must be in [0, 1)")
        for key in ("tied_embed_lr", "embed_lr", "head_lr", "matrix_lr", "scalar_lr", "adam_wd", "muon_wd", "grad_clip"):
            check(getattr(self, key) >= 0, key, "must be >= 0")
        check(self.embed_wd >= 0 or self.embed_wd == -1, "embed_wd", "must be >= 0, or -1 (= adam_wd)")
        check(0 <= self.beta1 < 1 and 0 <= self.beta2 < 1, "beta1", "and beta2 must be in [0, 1)")
        check(self.adam_eps > 0, "adam_eps", "must be positive")
        check(0 <= self.muon_momentum < 1, "muon_momentum", "must be in [0, 1)")
        check(0 <= self.muon_momentum_warmup_start < 1, "muon_momentum_warmup_start", "must be in [0, 1)")
        check(self.muon_momentum_warmup_steps >= 0, "muon_momentum_warmup_steps", "must be >= 0")
        check(self.muon_backend_steps >= 1, "muon_backend_steps", "must be at least 1")
        check(0 <= self.ema_decay < 1, "ema_decay", "must be in [0, 1) (0 = off)")
        check(self.swa_every >= 0, "swa_every", "must be >= 0 (0 = off)")
        check(0 < self.swa_start_frac <= 1, "swa_start_frac", "must be in (0, 1]")
        check(self.qat_start_frac <= 1, "qat_start_frac", "must be <= 1 (negative = off)")
        check(0 <= self.qat_start_lr_mult < 1, "qat_start_lr_mult", "must be in [0, 1) (0 = off)")
        check((self.qat_start_frac < 0 and self.qat_start_lr_mult == 0) or bool(self.qat_bits.as_mapping()),
              "qat_bits", "quantizes nothing while qat_start_frac / qat_start_lr_mult turn QAT on; set e.g. "
              "qat_bits.mlp=5")
        check(0 <= self.qat_scale_floor < 1, "qat_scale_floor", "must be in [0, 1) (0 = none)")
        check(self.ema_start_step >= 0, "ema_start_step", "must be >= 0 (0 = from the initial weights)")
        check(self.decoder_lr_mult > 0, "decoder_lr_mult", "must be positive (1 = off)")
        check(self.recur_start_frac <= 1, "recur_start_frac", "must be <= 1 (negative = never)")
        check(self.val_every >= 0, "val_every", "must be >= 0 (0 = only at the end)")
        check(self.val_tokens == 0 or self.val_tokens >= self.seq_len, "val_tokens",
              f"must be 0 (all) or at least seq_len ({self.seq_len})")
        check(self.val_batch_tokens >= self.seq_len, "val_batch_tokens", f"must be at least seq_len ({self.seq_len})")
        check(self.checkpoint_every_s >= 0, "checkpoint_every_s", "must be >= 0 (0 = off)")
        check(self.log_every >= 0, "log_every", "must be >= 0")

    def grad_accum(self, world_size: int) -> int:
        """Micro-steps per optimizer step on each of `world_size` ranks."""
        if self.grad_accum_base % world_size:
            raise ConfigError(f"world size {world_size} does not divide grad_accum_base={self.grad_accum_base}",
                              f"use a world size that divides it, or --set grad_accum_base={world_size * 8}")
        accum = self.grad_accum_base // world_size
        if self.batch_tokens % (world_size * accum * self.seq_len):
            raise ConfigError(f"batch_tokens={self.batch_tokens} does not split into {world_size} ranks x {accum} "
                              f"micro-steps x sequences of {self.seq_len}", "change batch_tokens or seq_len")
        return accum

    @property
    def qat_enabled(self) -> bool:
        """Whether any rule turns QAT on during the run."""
        return self.qat_start_frac >= 0 or self.qat_start_lr_mult > 0

    def optim_settings(self) -> OptimSettings:
        """The optimizer's view of this config: OptimSettings names the TrainConfig keys it reads (flat
        keys, as presets and `--set` spell them), so there is one list of them, not a copy."""
        return OptimSettings(**{f.name: getattr(self, f.name) for f in dataclasses.fields(OptimSettings)})
