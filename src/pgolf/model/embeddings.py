"""Token-level additions to the embedding and value streams: SmearGate, BigramHash, value embeddings.

Shape suffixes: B batch, T sequence length, D model_dim, C kv_dim, P table width
(bigram_dim or value_embed_dim), L value-embedding layers.

SmearGate and BigramHash look one token back. With `bos_reset` (the default) neither lets a document
see the one before it: the smear gate is zero at BOS positions and a BOS position hashes as the first
position does (BOS fix, PR #1851). Without it they look across BOS, as every record before PR #1851 did.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pgolf.model.layers import CastedEmbedding, CastedLinear

# Multipliers of the canonical BigramHash (PR #162 code, used by every later bigram record).
BIGRAM_MUL_CUR = 36313
BIGRAM_MUL_PREV = 27191
BIGRAM_MUL1009 = 1009  # PR #861: (1009 prev + cur) mod K


class SmearGate(nn.Module):
    """x_t <- x_t + sigmoid(gate) * (x_{t-1} - x_t), x_{-1} = 0, per channel (PR #162 variant).

    gate starts at 0 (an even blend). Positions flagged in `is_bos_BT` keep their own embedding;
    None (bos_reset = false) blends every position, as the records before PR #1851 did.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.gate = nn.Parameter(torch.zeros(dim, dtype=torch.float32))

    def forward(self, x_BTD: Tensor, is_bos_BT: Tensor | None) -> Tensor:
        g_D = torch.sigmoid(self.gate.to(x_BTD.dtype))
        prev_BTD = torch.cat((torch.zeros_like(x_BTD[:, :1]), x_BTD[:, :-1]), dim=1)
        if is_bos_BT is None:
            return x_BTD + g_D * (prev_BTD - x_BTD)
        g_BTD = g_D * (~is_bos_BT).unsqueeze(-1).to(x_BTD.dtype)
        return x_BTD + g_BTD * (prev_BTD - x_BTD)


class WindowSmearGate(nn.Module):
    """x_t <- x_t + lam * sigmoid(w . x_t[:window]) * x_{t-1} for t >= 1; position 0 is kept (PR #1667 /
    modded-nanogpt, as PR #2135 runs it on the raw token embedding, before its norm).

    One input-dependent scalar gate per position; w [1, window] and lam start at 0 (an identity).
    Positions flagged in `is_bos_BT` take nothing from the previous token (PR #2135's
    SMEAR_GATE_BOS_FIX=1); None blends every position (its launch: SMEAR_GATE_BOS_FIX=0).
    """

    def __init__(self, window: int):
        super().__init__()
        self.window = window
        self.window_gate = nn.Parameter(torch.zeros(1, window, dtype=torch.float32))
        self.lam = nn.Parameter(torch.zeros(1, dtype=torch.float32))

    def forward(self, x_BTD: Tensor, is_bos_BT: Tensor | None) -> Tensor:
        z_BT1 = F.linear(x_BTD[:, 1:, : self.window], self.window_gate.to(x_BTD.dtype))
        g_BT1 = self.lam.to(x_BTD.dtype) * torch.sigmoid(z_BT1)
        if is_bos_BT is not None:
            g_BT1 = g_BT1 * (~is_bos_BT[:, 1:]).unsqueeze(-1).to(x_BTD.dtype)
        return torch.cat((x_BTD[:, :1], x_BTD[:, 1:] + g_BT1 * x_BTD[:, :-1]), dim=1)


def bigram_buckets(idx_BT: Tensor, num_buckets: int, bos_id: int | None, kind: str = "xor") -> Tensor:
    """Bucket of each (previous, current) token pair.

    "xor": ((36313 cur) XOR (27191 prev)) mod (K-1), the first position in the reserved bucket K-1
    (PR #162); "mul1009": (1009 prev + cur) mod K with prev = 0 at the first position (PR #861).
    With `bos_id` set (bos_reset) a BOS position hashes as the first position does (BOS fix);
    None hashes BOS like any token. Computed in int64; equal to the records' int32 arithmetic for
    ids below 59,138.
    """
    cur, prev = idx_BT[:, 1:].long(), idx_BT[:, :-1].long()
    if kind == "mul1009":
        first = idx_BT[:, :1].long()  # prev = 0: the hash of the first position is the token itself
        h_BT = torch.cat((first % num_buckets, (BIGRAM_MUL1009 * prev + cur) % num_buckets), dim=1)
        if bos_id is None:
            return h_BT
        return torch.where(idx_BT == bos_id, idx_BT.long() % num_buckets, h_BT)
    reserved = num_buckets - 1
    h_BT = torch.bitwise_xor(BIGRAM_MUL_CUR * cur, BIGRAM_MUL_PREV * prev) % reserved
    h_BT = torch.cat((torch.full_like(idx_BT[:, :1], reserved, dtype=torch.long), h_BT), dim=1)
    return h_BT if bos_id is None else torch.where(idx_BT == bos_id, reserved, h_BT)


class BigramHash(nn.Module):
    """scale * proj(table[bucket(prev, cur)]), added to the token embedding before its norm (PR #162).

    The table and proj inits are set by `GPT` (PR #162: zero table, non-zero proj; PR #861: N(0, 0.01)
    table, zero proj; with both zero neither would ever get a gradient). scale starts at 0.05;
    `with_scale=False` drops it (PR #861). `bos_id` None = no BOS fix.
    """

    def __init__(self, num_buckets: int, dim: int, model_dim: int, bos_id: int | None, kind: str = "xor",
                 with_scale: bool = True):
        super().__init__()
        self.num_buckets, self.bos_id, self.kind = num_buckets, bos_id, kind
        self.embed = CastedEmbedding(num_buckets, dim)
        self.proj = CastedLinear(dim, model_dim)
        self.scale = nn.Parameter(torch.tensor(0.05, dtype=torch.float32)) if with_scale else None

    def forward(self, idx_BT: Tensor) -> Tensor:
        h_BTP = self.embed(bigram_buckets(idx_BT, self.num_buckets, self.bos_id, self.kind))
        out_BTD = self.proj(h_BTP)
        return out_BTD if self.scale is None else out_BTD * self.scale.to(out_BTD.dtype)


class ValueEmbedding(nn.Module):
    """Shared token table added to the values of selected layers (VE128, PR #374/#414).

    At layer value_embed_layers[j]: v += lambdas[j] * scale * proj(table[id]). table ~ N(0, 0.01^2),
    scale 0.1, lambdas 1.
    """

    def __init__(self, vocab_size: int, dim: int, kv_dim: int, layers: tuple[int, ...]):
        super().__init__()
        self.slot = {layer: j for j, layer in enumerate(layers)}
        self.embed = CastedEmbedding(vocab_size, dim)
        self.proj = CastedLinear(dim, kv_dim)
        self.scale = nn.Parameter(torch.tensor(0.1, dtype=torch.float32))
        self.lambdas = nn.Parameter(torch.ones(len(layers), dtype=torch.float32))

    def shared(self, idx_BT: Tensor) -> Tensor:
        """scale * proj(table[id]): computed once per forward, reused by every VE layer."""
        ve_BTC = self.proj(self.embed(idx_BT))
        return ve_BTC * self.scale.to(ve_BTC.dtype)

    def for_layer(self, shared_BTC: Tensor, layer: int) -> Tensor | None:
        j = self.slot.get(layer)
        return None if j is None else shared_BTC * self.lambdas[j].to(shared_BTC.dtype)
