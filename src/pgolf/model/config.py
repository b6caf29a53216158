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
BigramHashKind = Literal["xor", "mul1009"]
AuxProjInit = Literal["auto", "ortho", "zero"]
RecurPlacement = Literal["in_place", "after"]
SmearKind = Literal["channel", "window"]
LaneOut = Literal["mean", "attn", "mlp"]
ACTIVATIONS: tuple[str, ...] = ("relu2", "leaky_relu2", "swiglu")
INIT_SCHEMES: tuple[str, ...] = ("baseline", "ortho")
BIGRAM_HASHES: tuple[str, ...] = ("xor", "mul1009")
AUX_PROJ_INITS: tuple[str, ...] = ("auto", "ortho", "zero")
RECUR_PLACEMENTS: tuple[str, ...] = ("in_place", "after")
SMEAR_KINDS: tuple[str, ...] = ("channel", "window")
LANE_OUTS: tuple[str, ...] = ("mean", "attn", "mlp")


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
    mlp_affine: bool = False
    """Per-channel scale (init 1) and bias (init 0) on the activation, before the down projection:
    mlp.proj(act(mlp.fc x) * mlp.scale + mlp.bias) (PR #861's "Star-ReLU" MLP, with leaky_relu2)."""

    # --- embeddings and head ----------------------------------------------------------------
    tie_embeddings: bool = True
    """Use tok_emb as the output head (baseline); False adds a zero-init lm_head."""
    logit_softcap: float = 30.0
    """Logits are cap * tanh(z / cap) (baseline 30)."""
    tied_embed_init_std: float = 0.005
    """Std of the normal init of a tied embedding (baseline 0.005; untied keeps N(0, 1))."""
    asym_softcap: bool = False
    """AsymLogit rescale (PR #1923, run by PR #2135): evaluation logits are p * tanh(z / p) where z >= 0
    and n * tanh(z / n) below, with scalars softcap_pos = p and softcap_neg = n (init logit_softcap).
    Training never updates them (requires_grad off; the training loss keeps the fixed cap, as the
    record's training forward does); an evaluation-time adaptation may."""

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
    sparse_attn_gate: bool = False
    """Per-head output gate (PR #2135 SPARSE_ATTN_GATE, modded-nanogpt style): each head's attention
    output (after XSA) is multiplied by sigmoid(scale * w_h . x[:gate_window]), x the block's normed
    attention input; weight `attn.attn_gate_w` [num_heads, gate_window], zero init (gate 0.5)."""
    sparse_attn_gate_scale: float = 1.0
    """The scale inside that sigmoid (the record's default 1.0; PR #2135's launch 0.5)."""
    gate_window: int = 12
    """Leading residual dims that feed the sparse attention gate and the "window" SmearGate (12 in PR #2135)."""
    attn_doc_mask: bool = False
    """Block-diagonal causal attention: no query attends across a BOS document boundary (document
    isolation for per-document evaluation and TTT; VARLEN PR #1530 does the same with varlen kernels)."""
    bos_id: int = 1
    """Token that starts every document (BOS); used by attn_doc_mask and the smear/bigram BOS fix."""
    bos_reset: bool = True
    """SmearGate and BigramHash do not look back across a BOS: the smear is zero at BOS positions and a
    BOS position hashes to the reserved bucket (BOS fix, PR #1851). False = what PR #162-#1406 did
    (a document's first token mixes in the previous document's last one)."""

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
    parallel_lanes_from: int = -1
    """Two residual lanes from this physical layer on (PR #2135 PARALLEL_START_LAYER = 8): at the first
    such decoder layer both lanes start as the stream; attention reads resid_mix(lane0, x0), the MLP
    reads lane1, and each lane becomes r * lane + p_attn * attn + p_mlp * mlp with learned
    parallel_resid_lambdas (init 1.1) and parallel_post_lambdas (init 1), [num_layers, 2] and
    [num_layers, 2, 2] as the record allocates them (rows of earlier layers are unused). U-Net skips
    enter lane0. Those layers must end the layer order and lie in the decoder. -1 = off."""
    parallel_lane_out: LaneOut = "mean"
    """What the final norm reads from the lanes: their mean (PR #2135), lane0 ("attn") or lane1 ("mlp")."""

    # --- token-mixing embeddings ------------------------------------------------------------
    smear_gate: bool = False
    """SmearGate: each position mixes in the previous one (see smear_kind); zero at BOS positions
    under bos_reset (BOS fix, PR #1851)."""
    smear_kind: SmearKind = "channel"
    """"channel": after the embedding norm, x_t += sigmoid(g) * (x_{t-1} - x_t), g per channel, init 0
    (PR #162 variant). "window": on the raw embedding before its norm, x_t += lam * sigmoid(w .
    x_t[:gate_window]) * x_{t-1}, w and lam init 0 (PR #1667 / modded-nanogpt, run by PR #2135)."""
    bigram_buckets: int = 0
    """BigramHash table rows K (PR #162: 4096; PR #287: 2048; PR #1019: 3072); 0 = off. With the "xor"
    hash bucket K-1 is reserved for the first position (and BOS positions under bos_reset)."""
    bigram_dim: int = 128
    """BigramHash table width, projected to model_dim (128; 112 in PR #1019)."""
    bigram_hash: BigramHashKind = "xor"
    """"xor": ((36313 cur) XOR (27191 prev)) mod (K-1) (PR #162 and most records); "mul1009":
    (1009 prev + cur) mod K with prev = 0 before the first token (PR #861; no reserved bucket, so
    under bos_reset a BOS position hashes as if its previous token were 0)."""
    bigram_scale: bool = True
    """A learned scalar (init 0.05) on the bigram output (PR #162); PR #861 has none."""
    bigram_init_std: float = 0.0
    """Std of the normal init of the bigram table; 0 = zeros (PR #162); PR #861: 0.01."""
    aux_proj_init: AuxProjInit = "auto"
    """Init of the bigram and value-embedding projections: "auto" = the init scheme's (orthogonal
    scaled by 1/sqrt(2L) under "ortho", as PR #162-#366; PyTorch's default under "baseline"),
    "ortho" = orthogonal, unscaled (PR #1216, #1406), "zero" (PR #861)."""
    value_embed_layers: tuple[int, ...] = ()
    """Physical layers whose values get a shared value embedding (PR #374/#414 use (9, 10) of 11)."""
    value_embed_dim: int = 128
    """Value-embedding table width, projected to kv_dim (VE128)."""

    # --- depth recurrence and backout -------------------------------------------------------
    recur_layers: tuple[int, ...] = ()
    """Consecutive physical blocks that run again while recurrence is active (PR #1204: (4, 5))."""
    recur_loops: int = 1
    """Extra passes over recur_layers: 1 = "blocks 4,5 run twice" (PR #1204); PR #1394 Loop45x2 = 2."""
    recur_placement: RecurPlacement = "in_place"
    """Where the extra passes run: "in_place" right after the last recurrent block (PR #1204 order
    0..5,4,5,6..), inside the U-Net; "after" once the whole stack has run, outside the U-Net pairing
    (PR #1406: 0..10 then 4,5)."""
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
        check(self.gate_window >= 1, "gate_window", "must be positive")
        check(not (self.sparse_attn_gate or (self.smear_gate and self.smear_kind == "window"))
              or self.gate_window <= self.model_dim, "gate_window", f"must be <= model_dim ({self.model_dim})")
        check(self.smear_kind in SMEAR_KINDS, "smear_kind", f"must be one of {', '.join(SMEAR_KINDS)}")
        check(self.parallel_lane_out in LANE_OUTS, "parallel_lane_out", f"must be one of {', '.join(LANE_OUTS)}")
        check(-1 <= self.parallel_lanes_from < L, "parallel_lanes_from", f"must be -1 (off) or a layer in [0, {L - 1}]")
        check(self.parallel_lanes_from < 0 or self.parallel_resid_from < 0, "parallel_lanes_from",
              "and parallel_resid_from are two parallel forms; set one")
        check(self.bigram_buckets == 0 or self.bigram_buckets >= 2, "bigram_buckets",
              "must be 0 (off) or at least 2 (bucket K-1 is reserved)")
        check(self.bigram_dim >= 1, "bigram_dim", "must be positive")
        check(self.bigram_hash in BIGRAM_HASHES, "bigram_hash", f"must be one of {', '.join(BIGRAM_HASHES)}")
        check(self.bigram_init_std >= 0, "bigram_init_std", "must be >= 0 (0 = a zero table)")
        check(self.aux_proj_init in AUX_PROJ_INITS, "aux_proj_init", f"must be one of {', '.join(AUX_PROJ_INITS)}")
        check(not (self.bigram_buckets and self.aux_proj_init == "zero" and self.bigram_init_std == 0),
              "aux_proj_init", "= zero with a zero bigram table (bigram_init_std = 0) never trains the bigram; "
              "give the table an init (PR #861: bigram_init_std = 0.01)")
        check(self.recur_placement in RECUR_PLACEMENTS, "recur_placement",
              f"must be one of {', '.join(RECUR_PLACEMENTS)}")
        check(self.value_embed_dim >= 1, "value_embed_dim", "must be positive")
        ve = self.value_embed_layers
        check(all(0 <= i < L for i in ve) and len(set(ve)) == len(ve), "value_embed_layers",
              f"must be distinct layer indices in [0, {L - 1}]")
        rl = self.recur_layers
        check(all(0 <= i < L for i in rl), "recur_layers", f"must be layer indices in [0, {L - 1}]")
        check(all(b == a + 1 for a, b in zip(rl, rl[1:])), "recur_layers",
              "must be consecutive and ascending, e.g. [4, 5]")
        check(self.recur_loops >= 1, "recur_loops", "must be at least 1 (use recur_layers = [] for none)")
        if self.parallel_lanes_from >= 0:
            for active in (False, True):
                lanes = self.lane_positions(active)
                order = self.layer_order(active)
                check(bool(lanes) and lanes == tuple(range(lanes[0], len(order)))
                      and lanes[0] >= self.unet_depth(active) // 2, "parallel_lanes_from",
                      f"must name a decoder layer after which every layer of the order {order} is >= it "
                      f"(the lanes run to the end of the decoder)")
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
        (0, 1, 2, 3, 4, 5, 4, 5, 6, 7, 8) in place (PR #1204 "blocks 4,5 run twice"), or as
        (0, ..., 8, 4, 5) with recur_placement "after" (PR #1406).
        """
        order = list(range(self.num_layers))
        if recur_active and self.recur_layers:
            extra = list(self.recur_layers) * self.recur_loops
            end = self.recur_layers[-1] + 1 if self.recur_placement == "in_place" else len(order)
            order[end:end] = extra
        return tuple(order)

    def lane_positions(self, recur_active: bool) -> tuple[int, ...]:
        """Positions in `layer_order(recur_active)` that run as two parallel lanes (parallel_lanes_from)."""
        if self.parallel_lanes_from < 0:
            return ()
        return tuple(i for i, layer in enumerate(self.layer_order(recur_active)) if layer >= self.parallel_lanes_from)

    def unet_depth(self, recur_active: bool) -> int:
        """Virtual layers the U-Net splits into encoder and decoder halves: the whole layer order, or
        only the stack when the extra passes run after it (PR #1406)."""
        if self.recur_placement == "after":
            return self.num_layers
        return len(self.layer_order(recur_active))

    @property
    def num_skips(self) -> int:
        """U-Net skip weights: min(encoder, decoder) virtual layers of the deepest layer order."""
        if not self.unet_skips:
            return 0
        depth = self.unet_depth(True)
        return min(depth // 2, depth - depth // 2)
