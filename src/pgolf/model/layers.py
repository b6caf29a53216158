"""Transformer layers of the pgolf GPT: QAT-capable linear/embedding, RoPE, attention, MLP, block.

Shape suffixes (nanochat style):
  B batch, T sequence length, D model_dim, V vocab_size, H query heads, K key/value heads,
  E head_dim, R rotated dims / 2, C kv_dim (K * E), F MLP hidden width.
So `q_BHTE` is [batch, heads, time, head_dim]. Attention tensors use SDPA's (B, H, T, E) layout.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pgolf.model.config import ModelConfig
from pgolf.model.rowquant import fake_quantize_rows


def _torch_at_least(major: int, minor: int) -> bool:
    version = torch.__version__.split("+")[0].split(".")
    return (int(version[0]), int(version[1])) >= (major, minor)


# `enable_gqa` arrived in torch 2.5; older versions repeat K/V heads instead.
SDPA_NATIVE_GQA = _torch_at_least(2, 5)


def rms_norm(x: Tensor) -> Tensor:
    """RMSNorm over the last dim without a learned weight (baseline: PyTorch default eps)."""
    return F.rms_norm(x, (x.size(-1),))


class RMSNorm(nn.Module):
    """`rms_norm` as a module, so hooks (GPTQ calibration of the tied head) can see its output."""

    def forward(self, x: Tensor) -> Tensor:
        return rms_norm(x)


def activation_dtype(x: Tensor) -> torch.dtype:
    """The dtype activations should carry: the autocast dtype when autocast is on, else x's own."""
    device = x.device.type
    if torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return x.dtype


# ----------------------------------------------------------------------------- QAT-capable weights


class CastedLinear(nn.Linear):
    """Bias-free Linear whose fp32 weight is cast to the activation dtype at matmul time (baseline).

    `qat_bits` (set by `GPT.set_qat`) routes the weight through per-row fake quantization with a
    straight-through gradient. It is an instance attribute read on every call, so torch.compile
    guards on it and recompiles when it changes (the PR #315 class flag was constant-folded).
    `zero_init` marks output projections the baseline starts at zero.
    """

    def __init__(self, in_features: int, out_features: int, zero_init: bool = False):
        super().__init__(in_features, out_features, bias=False)
        self.zero_init = zero_init
        self.qat_bits: int | None = None
        self.qat_floor = 0.0  # lower bound of the QAT scales (0 = fp16's smallest normal)

    def effective_weight(self) -> Tensor:
        w = self.weight
        return w if self.qat_bits is None else fake_quantize_rows(w, self.qat_bits, self.qat_floor)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.effective_weight().to(x.dtype))


class CastedEmbedding(nn.Embedding):
    """Embedding table with the same `qat_bits` switch as `CastedLinear` (rows = tokens)."""

    def __init__(self, num_embeddings: int, embedding_dim: int):
        super().__init__(num_embeddings, embedding_dim)
        self.qat_bits: int | None = None
        self.qat_floor = 0.0

    def effective_weight(self) -> Tensor:
        w = self.weight
        return w if self.qat_bits is None else fake_quantize_rows(w, self.qat_bits, self.qat_floor)

    def forward(self, idx: Tensor) -> Tensor:
        return F.embedding(idx, self.effective_weight())


# ----------------------------------------------------------------------------- rotary embedding


def rotary_tables(cfg: ModelConfig, seq_len: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """cos_TR, sin_TR (fp32) for positions 0..seq_len-1 over the rotated dims of a head.

    inv_freq_j = base^(-2j/R') for j < R'/2, R' = rotated dims. With rope_ref_len > 0 and a longer
    sequence the base grows NTK-style to base * (T/T0)^(R'/(R'-2)) (PR #315).
    """
    rot = cfg.rotary_dims
    base = cfg.rope_base
    if cfg.rope_ref_len and seq_len > cfg.rope_ref_len:
        base = base * (seq_len / cfg.rope_ref_len) ** (rot / (rot - 2))
    inv_freq_R = 1.0 / (base ** (torch.arange(0, rot, 2, device=device, dtype=torch.float32) / rot))
    angle_TR = torch.outer(torch.arange(seq_len, device=device, dtype=torch.float32), inv_freq_R)
    return angle_TR.cos(), angle_TR.sin()


def apply_rotary(x_BHTE: Tensor, cos_TR: Tensor, sin_TR: Tensor) -> Tensor:
    """Rotate pairs (j, j + R) of the first 2R dims (half-split pairing, baseline); the rest pass."""
    half = cos_TR.size(-1)
    cos, sin = cos_TR.to(x_BHTE.dtype), sin_TR.to(x_BHTE.dtype)
    x1, x2, rest = x_BHTE[..., :half], x_BHTE[..., half : 2 * half], x_BHTE[..., 2 * half :]
    rotated = (x1 * cos + x2 * sin, x2 * cos - x1 * sin)
    return torch.cat(rotated + ((rest,) if rest.size(-1) else ()), dim=-1)


# ----------------------------------------------------------------------------- attention


def document_mask(idx_BT: Tensor, bos_id: int) -> Tensor:
    """Boolean mask_B1TT: query t may see key s iff s <= t and no BOS starts a document in (s, t]."""
    doc_BT = (idx_BT == bos_id).cumsum(dim=1)
    T = idx_BT.size(1)
    causal_TT = torch.ones(T, T, dtype=torch.bool, device=idx_BT.device).tril()
    return ((doc_BT[:, :, None] == doc_BT[:, None, :]) & causal_TT).unsqueeze(1)


def attend(q_BHTE: Tensor, k_BKTE: Tensor, v_BKTE: Tensor, mask_B1TT: Tensor | None = None,
           native_gqa: bool = SDPA_NATIVE_GQA) -> Tensor:
    """Causal softmax attention (scale 1/sqrt(E)); each K/V head serves H/K consecutive query heads.

    Without a mask this is SDPA's causal path (flash on GPU) with native GQA. With a document mask
    K/V heads are repeated first: masked SDPA then runs on the memory-efficient kernel, which is
    not guaranteed to accept grouped heads.
    """
    group = q_BHTE.size(1) // k_BKTE.size(1)
    if group > 1 and (mask_B1TT is not None or not native_gqa):
        k_BKTE = k_BKTE.repeat_interleave(group, dim=1)
        v_BKTE = v_BKTE.repeat_interleave(group, dim=1)
        group = 1
    if mask_B1TT is not None:
        return F.scaled_dot_product_attention(q_BHTE, k_BKTE, v_BKTE, attn_mask=mask_B1TT)
    if group > 1:
        return F.scaled_dot_product_attention(q_BHTE, k_BKTE, v_BKTE, is_causal=True, enable_gqa=True)
    return F.scaled_dot_product_attention(q_BHTE, k_BKTE, v_BKTE, is_causal=True)


def exclusive_self_attention(y_BHTE: Tensor, v_BKTE: Tensor) -> Tensor:
    """XSA (PR #287): remove from each head output its component along the token's own value.

    Query heads are viewed as (K, H/K) groups so v is never repeated.
    """
    B, H, T, E = y_BHTE.shape
    K = v_BKTE.size(1)
    y_BKGTE = y_BHTE.reshape(B, K, H // K, T, E)
    vhat_BK1TE = F.normalize(v_BKTE, dim=-1).unsqueeze(2)
    y_BKGTE = y_BKGTE - (y_BKGTE * vhat_BK1TE).sum(dim=-1, keepdim=True) * vhat_BK1TE
    return y_BKGTE.reshape(B, H, T, E)


class CausalSelfAttention(nn.Module):
    """GQA attention with qk-norm, (partial) RoPE, per-head query gain and optional XSA (baseline §3.2)."""

    def __init__(self, cfg: ModelConfig, layer: int):
        super().__init__()
        D, C = cfg.model_dim, cfg.kv_dim
        self.num_heads, self.num_kv_heads, self.head_dim = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
        self.c_q = CastedLinear(D, D)
        self.c_k = CastedLinear(D, C)
        self.c_v = CastedLinear(D, C)
        self.proj = CastedLinear(D, D, zero_init=True)
        self.q_gain = nn.Parameter(torch.full((cfg.num_heads,), cfg.qk_gain_init, dtype=torch.float32))
        self.qk_norm = cfg.qk_norm
        self.use_xsa = layer >= cfg.num_layers - cfg.xsa_last_n
        # Sparse head-output gate (PR #2135): zero init, so every head starts at half its output.
        self.gate_window, self.gate_scale = cfg.gate_window, cfg.sparse_attn_gate_scale
        self.attn_gate_w = (nn.Parameter(torch.zeros(cfg.num_heads, cfg.gate_window, dtype=torch.float32))
                            if cfg.sparse_attn_gate else None)

    def forward(self, x_BTD: Tensor, cos_TR: Tensor, sin_TR: Tensor, mask_B1TT: Tensor | None = None,
                ve_BTC: Tensor | None = None) -> Tensor:
        B, T, D = x_BTD.shape
        H, K, E = self.num_heads, self.num_kv_heads, self.head_dim
        q_BHTE = self.c_q(x_BTD).view(B, T, H, E).transpose(1, 2)
        k_BKTE = self.c_k(x_BTD).view(B, T, K, E).transpose(1, 2)
        v_BTC = self.c_v(x_BTD)
        if ve_BTC is not None:  # value embedding enters before the head split (PR #374)
            v_BTC = v_BTC + ve_BTC.to(v_BTC.dtype)
        v_BKTE = v_BTC.view(B, T, K, E).transpose(1, 2)
        if self.qk_norm:
            q_BHTE, k_BKTE = rms_norm(q_BHTE), rms_norm(k_BKTE)
        q_BHTE = apply_rotary(q_BHTE, cos_TR, sin_TR)
        k_BKTE = apply_rotary(k_BKTE, cos_TR, sin_TR)
        q_BHTE = q_BHTE * self.q_gain.to(q_BHTE.dtype)[None, :, None, None]
        # Norms may run in fp32 under autocast; SDPA wants one dtype.
        q_BHTE, k_BKTE = q_BHTE.to(v_BKTE.dtype), k_BKTE.to(v_BKTE.dtype)
        y_BHTE = attend(q_BHTE, k_BKTE, v_BKTE, mask_B1TT)
        if self.use_xsa:  # uses the final v of the layer, value embedding included (PR #287)
            y_BHTE = exclusive_self_attention(y_BHTE, v_BKTE)
        if self.attn_gate_w is not None:  # after XSA, before the output projection (PR #2135)
            z_BTH = F.linear(x_BTD[..., : self.gate_window], self.attn_gate_w.to(x_BTD.dtype))
            g_BHT1 = torch.sigmoid(self.gate_scale * z_BTH).transpose(1, 2).unsqueeze(-1)
            y_BHTE = y_BHTE * g_BHT1.to(y_BHTE.dtype)
        return self.proj(y_BHTE.transpose(1, 2).reshape(B, T, D))


# ----------------------------------------------------------------------------- MLP and block


class MLP(nn.Module):
    """proj(act(fc x)): relu^2 (baseline), leaky_relu(0.5)^2 (PR #549) or SwiGLU (silu(gate x) * fc x).

    With cfg.mlp_affine the activation is then scaled and shifted per channel (PR #861 "Star-ReLU").
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        D, F_ = cfg.model_dim, cfg.hidden_dim
        self.activation, self.leaky_slope = cfg.activation, cfg.leaky_slope
        self.fc = CastedLinear(D, F_)
        self.gate = CastedLinear(D, F_) if cfg.activation == "swiglu" else None
        self.proj = CastedLinear(F_, D, zero_init=True)
        self.scale = nn.Parameter(torch.ones(F_, dtype=torch.float32)) if cfg.mlp_affine else None
        self.bias = nn.Parameter(torch.zeros(F_, dtype=torch.float32)) if cfg.mlp_affine else None

    def forward(self, x_BTD: Tensor) -> Tensor:
        h_BTF = self.fc(x_BTD)
        if self.gate is not None:
            h_BTF = F.silu(self.gate(x_BTD)) * h_BTF
        elif self.activation == "leaky_relu2":
            h_BTF = F.leaky_relu(h_BTF, self.leaky_slope).square()
        else:
            h_BTF = torch.relu(h_BTF).square()
        if self.scale is not None and self.bias is not None:
            h_BTF = h_BTF * self.scale.to(h_BTF.dtype) + self.bias.to(h_BTF.dtype)
        return self.proj(h_BTF)


class Block(nn.Module):
    """x = mix(x, x0); x += a * attn(norm x); x += c * mlp(norm x)  (baseline §3.2 step 3).

    Parallel layers (PR #1412) feed attention and MLP the same normed input and add both at once.
    """

    def __init__(self, cfg: ModelConfig, layer: int):
        super().__init__()
        D = cfg.model_dim
        self.attn = CausalSelfAttention(cfg, layer)
        self.mlp = MLP(cfg)
        self.attn_scale = nn.Parameter(torch.ones(D, dtype=torch.float32))
        self.mlp_scale = nn.Parameter(torch.ones(D, dtype=torch.float32))
        # resid_mix[0] scales the stream, resid_mix[1] the embedding output x0; init (1, 0).
        self.resid_mix = (nn.Parameter(torch.stack((torch.ones(D), torch.zeros(D))).float())
                          if cfg.resid_mix else None)
        # LN scale 1/sqrt(l+1) by physical layer, also on recurrence passes (PR #315, #1394).
        self.norm_scale = 1.0 / math.sqrt(layer + 1) if cfg.ln_scale else 1.0
        self.parallel = 0 <= cfg.parallel_resid_from <= layer

    def _norm(self, x_BTD: Tensor) -> Tensor:
        h_BTD = rms_norm(x_BTD)
        return h_BTD * self.norm_scale if self.norm_scale != 1.0 else h_BTD

    def forward(self, x_BTD: Tensor, x0_BTD: Tensor, cos_TR: Tensor, sin_TR: Tensor,
                mask_B1TT: Tensor | None = None, ve_BTC: Tensor | None = None) -> Tensor:
        if self.resid_mix is not None:
            mix = self.resid_mix.to(x_BTD.dtype)
            x_BTD = mix[0] * x_BTD + mix[1] * x0_BTD
        attn_scale, mlp_scale = self.attn_scale.to(x_BTD.dtype), self.mlp_scale.to(x_BTD.dtype)
        h_BTD = self._norm(x_BTD)
        a_BTD = self.attn(h_BTD, cos_TR, sin_TR, mask_B1TT, ve_BTC)
        if self.parallel:
            return x_BTD + attn_scale * a_BTD + mlp_scale * self.mlp(h_BTD)
        x_BTD = x_BTD + attn_scale * a_BTD
        return x_BTD + mlp_scale * self.mlp(self._norm(x_BTD))

    def forward_lanes(self, lane0_BTD: Tensor, lane1_BTD: Tensor, x0_BTD: Tensor, resid_2: Tensor, post_22: Tensor,
                      cos_TR: Tensor, sin_TR: Tensor, mask_B1TT: Tensor | None = None,
                      ve_BTC: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Two-lane parallel block (PR #2135, cfg.parallel_lanes_from): attention reads the mix of lane0
        and x0, the MLP reads lane1; resid_2 = (r_attn, r_mlp) keeps each lane, post_22[j] = where
        branch j (0 attention, 1 MLP) writes into (lane0, lane1)."""
        dt = lane0_BTD.dtype
        attn_in = lane0_BTD
        if self.resid_mix is not None:
            mix = self.resid_mix.to(dt)
            attn_in = mix[0] * lane0_BTD + mix[1] * x0_BTD
        a_BTD = self.attn_scale.to(dt) * self.attn(self._norm(attn_in), cos_TR, sin_TR, mask_B1TT, ve_BTC)
        m_BTD = self.mlp_scale.to(dt) * self.mlp(self._norm(lane1_BTD))
        r, p = resid_2.to(dt), post_22.to(dt)
        return (r[0] * lane0_BTD + p[0, 0] * a_BTD + p[1, 0] * m_BTD,
                r[1] * lane1_BTD + p[0, 1] * a_BTD + p[1, 1] * m_BTD)
