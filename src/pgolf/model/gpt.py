"""The pgolf GPT: the challenge baseline (techniques §3.2) with every later technique as a switch.

Shape suffixes: B batch, T sequence length, D model_dim, V vocab_size, C kv_dim.

Forward pass:
  x = rms_norm(tok_emb[idx] (+ bigram)) -> smear -> x0   (the "window" smear runs before the norm)
  blocks in `cfg.layer_order(recurrence)`; the first half of that order (encoder) pushes its outputs,
  the second half (decoder) pops them as U-Net skips; from `parallel_lanes_from` on the decoder runs
  two lanes whose mean is the output; optional backout; rms_norm; tied head; softcap in fp32
  (asym_softcap: learned positive / negative caps in forward/token_nll, the fixed cap in loss).

Precision: parameters are fp32 (the embedding too: its Adam updates and EMA copies stay exact, where
the baseline kept it bf16, techniques §8.21). Under autocast the embedding output is cast to the
autocast dtype, so the residual stream is bf16 as in the records, and matrices are cast at matmul
time. Logits, softcap and NLL are computed in fp32.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pgolf.errors import ConfigError
from pgolf.model.config import ModelConfig
from pgolf.model.embeddings import BigramHash, SmearGate, ValueEmbedding, WindowSmearGate
from pgolf.model.layers import (
    Block,
    CastedEmbedding,
    CastedLinear,
    RMSNorm,
    activation_dtype,
    document_mask,
    rms_norm,
    rotary_tables,
)
from pgolf.model.params import QAT_CLASSES, qat_class

VALUE_EMBED_INIT_STD = 0.01  # VE table init (PR #374/#414)


class GPT(nn.Module):
    """Decoder-only LM over token ids. See `ModelConfig` for the switches."""

    recur_active: Tensor  # the buffer registered when cfg.recur_layers is set

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        D = cfg.model_dim
        self.tok_emb = CastedEmbedding(cfg.vocab_size, D)
        self.bigram = (BigramHash(cfg.bigram_buckets, cfg.bigram_dim, D, cfg.bos_id if cfg.bos_reset else None,
                                  cfg.bigram_hash, cfg.bigram_scale)
                       if cfg.bigram_buckets else None)
        self.smear: SmearGate | WindowSmearGate | None = None
        if cfg.smear_gate:
            self.smear = WindowSmearGate(cfg.gate_window) if cfg.smear_kind == "window" else SmearGate(D)
        self.blocks = nn.ModuleList(Block(cfg, i) for i in range(cfg.num_layers))
        self.value_embed = (ValueEmbedding(cfg.vocab_size, cfg.value_embed_dim, cfg.kv_dim, cfg.value_embed_layers)
                            if cfg.value_embed_layers else None)
        # One skip weight (init 1) per encoder/decoder pair of the deepest layer order; a shallower
        # order uses the first ones (as PR #1394 does before its loop switches on).
        self.skip_weights = nn.Parameter(torch.ones(cfg.num_skips, D)) if cfg.num_skips else None
        self.skip_gates = nn.Parameter(torch.zeros(cfg.num_skips, D)) if cfg.skip_gates and cfg.num_skips else None
        self.backout_lambda = nn.Parameter(torch.tensor(float(cfg.backout_init))) if cfg.backout else None
        # Two-lane parallel decoder (PR #2135): one row per physical layer, as the record allocates them.
        L = cfg.num_layers
        lanes = cfg.parallel_lanes_from >= 0
        self.parallel_post_lambdas = nn.Parameter(torch.ones(L, 2, 2)) if lanes else None
        self.parallel_resid_lambdas = nn.Parameter(torch.full((L, 2), 1.1)) if lanes else None
        # AsymLogit rescale (PR #1923 / #2135): not trained with the model (see ModelConfig.asym_softcap).
        self.softcap_pos: nn.Parameter | None = None
        self.softcap_neg: nn.Parameter | None = None
        if cfg.asym_softcap:
            self.softcap_pos = nn.Parameter(torch.tensor(float(cfg.logit_softcap)), requires_grad=False)
            self.softcap_neg = nn.Parameter(torch.tensor(float(cfg.logit_softcap)), requires_grad=False)
        self.final_norm = RMSNorm()  # the head's input: GPTQ calibrates the tied embedding on it
        self.head_out = HeadOutput()  # identity; where an evaluation adapter adds to the logits (a forward hook)
        self.lm_head = None if cfg.tie_embeddings else CastedLinear(D, cfg.vocab_size, zero_init=True)
        # Recurrence state: a persistent buffer so a saved state_dict reloads the forward it was
        # trained with, mirrored in a Python bool that control flow (and torch.compile guards) read.
        self._recur_on = False
        if cfg.recur_layers:
            self.register_buffer("recur_active", torch.tensor(False))
            self.register_load_state_dict_post_hook(_sync_recurrence)
        self._qat: dict[str, int] = {}
        self._init_weights()

    # ------------------------------------------------------------------------- init

    def _init_weights(self) -> None:
        cfg = self.cfg
        if cfg.tie_embeddings:  # an untied embedding keeps N(0, 1), as in the baseline
            nn.init.normal_(self.tok_emb.weight, mean=0.0, std=cfg.tied_embed_init_std)
        if self.bigram is not None:
            if cfg.bigram_init_std > 0:  # PR #861: N(0, 0.01)
                nn.init.normal_(self.bigram.embed.weight, std=cfg.bigram_init_std)
            else:  # PR #162: the table starts empty
                nn.init.zeros_(self.bigram.embed.weight)
        if self.value_embed is not None:
            nn.init.normal_(self.value_embed.embed.weight, std=VALUE_EMBED_INIT_STD)
        aux_projs = {id(m.proj) for m in (self.bigram, self.value_embed) if m is not None}
        for name, module in self.named_modules():
            if not isinstance(module, CastedLinear):
                continue
            if module.zero_init:  # attention/MLP output projections and an untied head (baseline)
                nn.init.zeros_(module.weight)
            elif id(module) in aux_projs and cfg.aux_proj_init == "zero":  # PR #861
                nn.init.zeros_(module.weight)
            elif id(module) in aux_projs and cfg.aux_proj_init == "ortho":  # PR #1216, #1406: unscaled
                nn.init.orthogonal_(module.weight, gain=1.0)
            elif cfg.init == "ortho":
                # OrthoInit (PR #65/#162). The records then scale layers named "*.proj" by
                # 1/sqrt(2L); with the block projections zero, that only hits the bigram and
                # value-embedding projections, which is what they trained with, so we keep it.
                nn.init.orthogonal_(module.weight, gain=1.0)
                if name.endswith(".proj"):
                    with torch.no_grad():
                        module.weight.mul_(1.0 / math.sqrt(2 * cfg.num_layers))
            # "baseline": PyTorch's default Kaiming-uniform init, kept as the baseline does.

    # ------------------------------------------------------------------------- switches

    @property
    def recurrence_active(self) -> bool:
        return self._recur_on

    def set_recurrence(self, active: bool) -> None:
        """Run (or skip) the extra passes over `cfg.recur_layers`; recorded in the state_dict.

        Off at construction (training switches it on after a fraction, PR #1204/#1394). A model
        without recur_layers ignores the call.
        """
        if not self.cfg.recur_layers:
            return
        self._recur_on = bool(active)
        with torch.no_grad():
            self.recur_active.fill_(self._recur_on)

    def layer_order(self) -> tuple[int, ...]:
        """Physical block index of each virtual layer in the current state."""
        return self.cfg.layer_order(self._recur_on)

    @property
    def qat_bits(self) -> dict[str, int]:
        """The current QAT setting ({} = off)."""
        return dict(self._qat)

    def set_qat(self, bits: Mapping[str, int] | None, floor: float = 0.0) -> None:
        """Fake-quantize (per-row STE, `pgolf.model.rowquant`) the matrices of the given classes.

        bits maps a target (`QAT_CLASSES`: "attn", "mlp", "embed", "bigram", "bigram_proj",
        "value_embed", "value_embed_proj") to a bit width 2..8, e.g. {"mlp": 5, "attn": 6}; None or {}
        restores the exact float forward. `floor` bounds the row scales from below (PR #861: 1/15).
        Acts in train and eval mode until changed; not saved in the state_dict.
        """
        bits = dict(bits or {})
        for cls, b in bits.items():
            if cls not in QAT_CLASSES:
                raise ConfigError(f"QAT class '{cls}' is unknown; use one of {', '.join(QAT_CLASSES)}")
            if isinstance(b, bool) or not isinstance(b, int) or not 2 <= b <= 8:
                raise ConfigError(f"QAT bits for '{cls}' must be an integer in 2..8, got {b!r}")
        if not floor >= 0:
            raise ConfigError(f"QAT scale floor must be >= 0, got {floor!r}")
        for name, module in self.named_modules():
            if isinstance(module, (CastedLinear, CastedEmbedding)):
                module.qat_bits = bits.get(qat_class(f"{name}.weight"))
                module.qat_floor = float(floor)
        self._qat = bits

    # ------------------------------------------------------------------------- forward

    def embed(self, idx_BT: Tensor) -> Tensor:
        """x0_BTD: token embedding (+ bigram), rms-normed, smeared; the input of block 0."""
        x_BTD = self.tok_emb(idx_BT)
        if self.bigram is not None:  # added before the norm (PR #162)
            x_BTD = x_BTD + self.bigram(idx_BT)
        is_bos_BT = idx_BT == self.cfg.bos_id if self.cfg.bos_reset else None
        if isinstance(self.smear, WindowSmearGate):  # before the norm, on the raw embedding (PR #2135)
            x_BTD = self.smear(x_BTD, is_bos_BT)
        x_BTD = rms_norm(x_BTD.to(activation_dtype(x_BTD)))
        if isinstance(self.smear, SmearGate):  # after the norm, PR #162 variant; under bos_reset BOS keeps its own
            x_BTD = self.smear(x_BTD, is_bos_BT)
        return x_BTD

    def hidden(self, idx_BT: Tensor) -> Tensor:
        """Final normed hidden state x_BTD (what the head reads)."""
        cfg = self.cfg
        order = self.layer_order()
        # Passes after the U-Net depth (recur_placement "after", PR #1406) take no skip.
        num_encoder = cfg.unet_depth(self._recur_on) // 2
        x_BTD = self.embed(idx_BT)
        x0_BTD = x_BTD
        cos_TR, sin_TR = rotary_tables(cfg, idx_BT.size(1), idx_BT.device)
        mask_B1TT = document_mask(idx_BT, cfg.bos_id) if cfg.attn_doc_mask else None
        ve_shared_BTC = self.value_embed.shared(idx_BT) if self.value_embed is not None else None
        backout_at = num_encoder - 1 if cfg.backout_layer < 0 else order.index(cfg.backout_layer)
        skips: list[Tensor] = []
        h_mid_BTD: Tensor | None = None
        lane_from = (cfg.lane_positions(self._recur_on) or (len(order),))[0]
        lane1_BTD: Tensor | None = None  # once the lanes run (PR #2135), x_BTD is lane0
        for pos, layer in enumerate(order):
            if pos == lane_from:  # both lanes start as the stream, before its skip (which enters lane0)
                lane1_BTD = x_BTD
            if pos >= num_encoder and skips and self.skip_weights is not None:
                x_BTD = self._add_skip(x_BTD, skips.pop(), pos - num_encoder)
            ve_BTC = (self.value_embed.for_layer(ve_shared_BTC, layer)
                      if self.value_embed is not None and ve_shared_BTC is not None else None)
            if lane1_BTD is not None and self.parallel_resid_lambdas is not None \
                    and self.parallel_post_lambdas is not None:
                x_BTD, lane1_BTD = cast(Block, self.blocks[layer]).forward_lanes(
                    x_BTD, lane1_BTD, x0_BTD, self.parallel_resid_lambdas[layer], self.parallel_post_lambdas[layer],
                    cos_TR, sin_TR, mask_B1TT, ve_BTC)
            else:
                x_BTD = self.blocks[layer](x_BTD, x0_BTD, cos_TR, sin_TR, mask_B1TT, ve_BTC)
            if pos < num_encoder and self.skip_weights is not None:
                skips.append(x_BTD)
            if self.backout_lambda is not None and pos == backout_at:
                h_mid_BTD = x_BTD
        if lane1_BTD is not None:
            x_BTD = self._merge_lanes(x_BTD, lane1_BTD)
        if h_mid_BTD is not None and self.backout_lambda is not None:
            # backout: remove part of the mid-depth stream (modded-nanogpt #140)
            x_BTD = x_BTD - self.backout_lambda.to(x_BTD.dtype) * h_mid_BTD
        return self.final_norm(x_BTD)

    def _merge_lanes(self, lane0_BTD: Tensor, lane1_BTD: Tensor) -> Tensor:
        out = self.cfg.parallel_lane_out
        if out == "attn":
            return lane0_BTD
        if out == "mlp":
            return lane1_BTD
        return 0.5 * (lane0_BTD + lane1_BTD)

    def _add_skip(self, x_BTD: Tensor, skip_BTD: Tensor, j: int) -> Tensor:
        assert self.skip_weights is not None  # hidden() adds skips only when there are skip weights
        skip_BTD = self.skip_weights[j].to(x_BTD.dtype) * skip_BTD
        if self.skip_gates is None:
            return x_BTD + skip_BTD
        # x <- g x + (1 - g) w skip, g = sigmoid(gate), gate init 0 (PR #1394)
        return torch.lerp(skip_BTD, x_BTD, torch.sigmoid(self.skip_gates[j].to(x_BTD.dtype)))

    def _head(self, idx_BT: Tensor) -> Tensor:
        """z_BTV (fp32): the head's output before the softcap."""
        x_BTD = self.hidden(idx_BT)
        head = self.tok_emb if self.lm_head is None else self.lm_head
        return self.head_out(x_BTD, F.linear(x_BTD, head.effective_weight().to(x_BTD.dtype)).float())

    def _softcap(self, z_BTV: Tensor, learned: bool) -> Tensor:
        cap = self.cfg.logit_softcap
        if not learned or self.softcap_pos is None or self.softcap_neg is None:
            return cap * torch.tanh(z_BTV / cap)
        # AsymLogit rescale (PR #1923): separate caps above and below zero
        p, n = self.softcap_pos.float(), self.softcap_neg.float()
        return torch.where(z_BTV >= 0, p * torch.tanh(z_BTV / p), n * torch.tanh(z_BTV / n))

    def forward(self, idx_BT: Tensor) -> Tensor:
        """logits_BTV (fp32): cap * tanh(z / cap) of the head output z (asym_softcap: the learned
        positive / negative caps)."""
        return self._softcap(self._head(idx_BT), learned=True)

    def token_nll(self, idx_BT: Tensor, tgt_BT: Tensor) -> Tensor:
        """nll_BT (fp32, nats): -log p(tgt | idx) per position from the soft-capped fp32 logits."""
        logits_BTV = self.forward(idx_BT)
        nll = F.cross_entropy(logits_BTV.flatten(0, 1), tgt_BT.flatten(), reduction="none")
        return nll.view_as(tgt_BT)

    def loss(self, idx_BT: Tensor, tgt_BT: Tensor) -> Tensor:
        """Mean NLL over all positions (the training objective). Under asym_softcap it uses the fixed
        logit_softcap, as PR #2135's training forward does (its learned caps only serve evaluation)."""
        logits_BTV = self._softcap(self._head(idx_BT), learned=False)
        return F.cross_entropy(logits_BTV.flatten(0, 1), tgt_BT.flatten(), reduction="none").mean()


class HeadOutput(nn.Module):
    """(x_BTD, z_BTV) -> z_BTV unchanged: the head's output as a module call, so a forward hook can add a term
    read from the head's input (PR #2135's LoRA on the logits during TTT). No parameters."""

    def forward(self, x_BTD: Tensor, z_BTV: Tensor) -> Tensor:
        return z_BTV


def _sync_recurrence(module: GPT, incompatible_keys) -> None:
    """After load_state_dict: the Python mirror follows the loaded `recur_active` buffer."""
    module._recur_on = bool(module.recur_active)
