"""`ModelConfig`: the architecture of a pgolf GPT, one field per technique (pure, no torch).

Defaults reproduce the challenge baseline (techniques §3.1-3.3, 17,059,912 parameters); every later
technique is a switch whose comment names the record or PR it comes from and the value that record
used. Fields are validated in `__post_init__`; a bad value raises a `ConfigError` naming the key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pgolf.config import check

Activation = Literal["relu2", "leaky_relu2", "swiglu"]
InitScheme = Literal["baseline", "ortho"]
ACTIVATIONS: tuple[str, ...] = ("relu2", "leaky_relu2", "swiglu")
INIT_SCHEMES: tuple[str, ...] = ("baseline", "ortho")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of `pgolf.model.GPT`; the defaults are the challenge baseline."""

    # --- size (baseline §3.1) ---------------------------------------------------------------
    vocab_size: int = 1024
    """Token vocabulary (sp1024; later records use 4096 or 8192)."""
    num_layers: int = 9
    """Physical transformer blocks (9 baseline, 10 PR #180, 11 from PR #287 on)."""
    model_dim: int = 512
    """Residual stream width D."""
    num_heads: int = 8
    """Query heads; head_dim = model_dim / num_heads (64)."""
    num_kv_heads: int = 4
    """Key/value heads (GQA: each serves num_heads / num_kv_heads query heads)."""
    mlp_mult: float = 2.0
    """MLP hidden width as a multiple of model_dim (2 baseline, 3 from PR #65/#162, 4 in PR #1394)."""
    mlp_hidden: int = 0
    """Explicit MLP hidden width; 0 = int(mlp_mult * model_dim)."""
    activation: Activation = "relu2"
    """MLP nonlinearity: relu(x)^2 (baseline), leaky_relu(x)^2 (PR #549), or SwiGLU (adds mlp.gate)."""
    leaky_slope: float = 0.5
    """Negative slope of leaky_relu2 (0.5 in PR #549)."""

    # --- embeddings and head ----------------------------------------------------------------
    tie_embeddings: bool = True
    """Use tok_emb as the output head (baseline); False adds a zero-init lm_head."""
    logit_softcap: float = 30.0
    """Logits are cap * tanh(z / cap) (baseline 30)."""
    tied_embed_init_std: float = 0.005
    """Std of the normal init of a tied embedding (baseline 0.005; untied keeps N(0, 1))."""

    # --- attention --------------------------------------------------------------------------
    rope_base: float = 10000.0
    """RoPE base frequency (baseline 10000)."""
    rope_dims: int = 0
    """Rotate only the first rope_dims dims of each head (partial RoPE, PR #315 uses 16); 0 = all."""
    rope_ref_len: int = 0
    """NTK-aware base scaling above this length: base * (T/ref)^(R/(R-2)) (PR #315 built it with
    1024 while training at 2048, so it is always on there); 0 = off."""
    qk_norm: bool = True
    """RMSNorm (no weight) on q and k per head before RoPE (baseline)."""
    qk_gain_init: float = 1.5
    """Initial per-head query gain q_gain (1.5 baseline, 4.0 PR #1394, 5.0 PR #1413, 5.25 PR #1493)."""
    xsa_last_n: int = 0
    """Exclusive self attention on the last N physical layers (PR #287: 4; PR #1019 on: all)."""
    attn_doc_mask: bool = False
    """Block-diagonal causal attention: no query attends across a BOS document boundary (document
    isolation for per-document evaluation and TTT; VARLEN PR #1530 does the same with varlen kernels)."""
    bos_id: int = 1
    """Token that starts every document (BOS); used by attn_doc_mask and the smear/bigram BOS fix."""

    # --- residual stream --------------------------------------------------------------------
    init: InitScheme = "baseline"
    """Weight init: "baseline" (PyTorch default Linear init, §3.3) or "ortho" (orthogonal, PR #65/#162;
    the bigram/value-embedding projections are scaled by 1/sqrt(2 L) as in PR #162-#414)."""
    unet_skips: bool = True
    """U-Net skips: decoder layers add learned-weighted encoder outputs, last in first out (baseline)."""
    skip_gates: bool = False
    """Sigmoid lerp gate per skip, init 0 (equal mix), PR #1394. Needs unet_skips."""
    resid_mix: bool = True
    """Each block starts from a learned mix of the stream and the embedding output x0 (baseline)."""
    ln_scale: bool = False
    """Scale the norm outputs feeding attention and MLP of layer l by 1/sqrt(l+1) (PR #315)."""
    parallel_resid_from: int = -1
    """Physical layers >= this one run attention and MLP in parallel on the same input (GPT-J style,
    PR #1412 uses 7); -1 = off."""

    # --- token-mixing embeddings ------------------------------------------------------------
    smear_gate: bool = False
    """SmearGate after the embedding norm: x_t += sigmoid(g) * (x_{t-1} - x_t), g init 0 (PR #162
    variant); zero at BOS positions (BOS fix, PR #1851)."""
    bigram_buckets: int = 0
    """BigramHash table rows K (PR #162: 4096; PR #287: 2048; PR #1019: 3072); 0 = off. Bucket K-1 is
    reserved for the first position and for BOS positions."""
    bigram_dim: int = 128
    """BigramHash table width, projected to model_dim (128; 112 in PR #1019)."""
    value_embed_layers: tuple[int, ...] = ()
    """Physical layers whose values get a shared value embedding (PR #374/#414 use (9, 10) of 11)."""
    value_embed_dim: int = 128
    """Value-embedding table width, projected to kv_dim (VE128)."""

    # --- depth recurrence and backout -------------------------------------------------------
    recur_layers: tuple[int, ...] = ()
    """Consecutive physical blocks that run again while recurrence is active (PR #1204: (4, 5))."""
    recur_loops: int = 1
    """Extra passes over recur_layers: 1 = "blocks 4,5 run twice" (PR #1204); PR #1394 Loop45x2 = 2."""
    backout: bool = False
    """Subtract backout_lambda * h_mid from the final stream before the norm (modded-nanogpt #140,
    nanochat; no challenge record)."""
    backout_layer: int = -1
    """h_mid is the stream after this physical block's first run; -1 = after the last encoder layer
    (the U-Net hinge of the current layer order)."""
    backout_init: float = 0.2
    """Initial backout_lambda (0.2 in nanochat)."""

    def __post_init__(self) -> None:
        # TOML gives lists; keep the frozen config hashable and comparable.
        object.__setattr__(self, "value_embed_layers", tuple(self.value_embed_layers))
        object.__setattr__(self, "recur_layers", tuple(self.recur_layers))
        L = self.num_layers
        check(self.vocab_size >= 2, "vocab_size", "must be at least 2")
        check(L >= 1, "num_layers", "must be at least 1")
        check(self.model_dim >= 1 and self.num_heads >= 1, "num_heads", "and model_dim must be positive")
        check(self.model_dim % self.num_heads == 0, "num_heads", f"must divide model_dim ({self.model_dim})")
        check(self.num_kv_heads >= 1 and self.num_heads % self.num_kv_heads == 0, "num_kv_heads",
              f"must divide num_heads ({self.num_heads})")
        check(self.head_dim % 2 == 0, "num_heads", f"must leave an even head_dim for RoPE (got {self.head_dim})")
        check(self.mlp_mult > 0, "mlp_mult", "must be positive")
        check(self.mlp_hidden >= 0, "mlp_hidden", "must be 0 (use mlp_mult) or positive")
        check(self.hidden_dim >= 1, "mlp_mult", "gives an empty MLP; raise it or set mlp_hidden")
        check(self.activation in ACTIVATIONS, "activation", f"must be one of {', '.join(ACTIVATIONS)}")
        check(self.init in INIT_SCHEMES, "init", f"must be one of {', '.join(INIT_SCHEMES)}")
        check(self.logit_softcap > 0, "logit_softcap", "must be positive")
        check(self.tied_embed_init_std > 0, "tied_embed_init_std", "must be positive")
        check(self.rope_base > 0, "rope_base", "must be positive")
        check(0 <= self.rope_dims <= self.head_dim and self.rope_dims % 2 == 0, "rope_dims",
              f"must be 0 (all) or an even number <= head_dim ({self.head_dim})")
        check(self.rope_ref_len >= 0, "rope_ref_len", "must be 0 (off) or positive")
        check(self.rope_ref_len == 0 or self.rotary_dims > 2, "rope_ref_len",
              "needs more than 2 rotated dims (the NTK exponent is R/(R-2))")
        check(0 <= self.xsa_last_n <= L, "xsa_last_n", f"must be in [0, num_layers={L}]")
        check(0 <= self.bos_id < self.vocab_size, "bos_id", f"must be a token id below vocab_size ({self.vocab_size})")
        check(not self.skip_gates or self.unet_skips, "skip_gates", "needs unet_skips = true")
        check(-1 <= self.parallel_resid_from < L, "parallel_resid_from", f"must be -1 (off) or a layer in [0, {L - 1}]")
        check(self.bigram_buckets == 0 or self.bigram_buckets >= 2, "bigram_buckets",
              "must be 0 (off) or at least 2 (bucket K-1 is reserved)")
        check(self.bigram_dim >= 1, "bigram_dim", "must be positive")
        check(self.value_embed_dim >= 1, "value_embed_dim", "must be positive")
        ve = self.value_embed_layers
        check(all(0 <= i < L for i in ve) and len(set(ve)) == len(ve), "value_embed_layers",
              f"must be distinct layer indices in [0, {L - 1}]")
        rl = self.recur_layers
        check(all(0 <= i < L for i in rl), "recur_layers", f"must be layer indices in [0, {L - 1}]")
        check(all(b == a + 1 for a, b in zip(rl, rl[1:])), "recur_layers",
              "must be consecutive and ascending, e.g. [4, 5]")
        check(self.recur_loops >= 1, "recur_loops", "must be at least 1 (use recur_layers = [] for none)")
        check(-1 <= self.backout_layer < L, "backout_layer", f"must be -1 (U-Net hinge) or a layer in [0, {L - 1}]")
        check(not (self.backout and self.backout_layer == -1 and L < 2), "backout_layer",
              "-1 needs at least 2 layers (an encoder half); name a layer")

    # --- derived sizes ----------------------------------------------------------------------
    @property
    def head_dim(self) -> int:
        return self.model_dim // self.num_heads

    @property
    def kv_dim(self) -> int:
        return self.num_kv_heads * self.head_dim

    @property
    def hidden_dim(self) -> int:
        """MLP hidden width actually built."""
        return self.mlp_hidden or int(self.mlp_mult * self.model_dim)

    @property
    def rotary_dims(self) -> int:
        """Head dims RoPE rotates (rope_dims, or the whole head when 0)."""
        return self.rope_dims or self.head_dim

    def layer_order(self, recur_active: bool) -> tuple[int, ...]:
        """Physical block index of each virtual layer, in execution order.

        With recur_layers (4, 5), recur_loops 1 and recurrence active, 9 layers run as
        (0, 1, 2, 3, 4, 5, 4, 5, 6, 7, 8) (PR #1204 "blocks 4,5 run twice").
        """
        order = list(range(self.num_layers))
        if recur_active and self.recur_layers:
            end = self.recur_layers[-1] + 1
            order[end:end] = list(self.recur_layers) * self.recur_loops
        return tuple(order)

    @property
    def num_skips(self) -> int:
        """U-Net skip weights: min(encoder, decoder) virtual layers of the deepest layer order."""
        if not self.unet_skips:
            return 0
        depth = len(self.layer_order(True))
        return min(depth // 2, depth - depth // 2)
