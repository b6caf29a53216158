"""Token-level additions to the embedding and value streams: SmearGate, BigramHash, value embeddings.

Shape suffixes: B batch, T sequence length, D model_dim, C kv_dim, P table width
(bigram_dim or value_embed_dim), L value-embedding layers.

SmearGate and BigramHash look one token back. Neither lets a document see the one before it: the
smear gate is zero at BOS positions and a BOS position hashes to the reserved bucket (BOS fix, PR #1851).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from pgolf.model.layers import CastedEmbedding, CastedLinear

# Multipliers of the canonical BigramHash (PR #162 code, used by every later bigram record).
BIGRAM_MUL_CUR = 36313
BIGRAM_MUL_PREV = 27191


class SmearGate(nn.Module):
    """x_t <- x_t + sigmoid(gate) * (x_{t-1} - x_t), x_{-1} = 0, per channel (PR #162 variant).

    gate starts at 0 (an even blend). Positions holding BOS keep their own embedding.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.gate = nn.Parameter(torch.zeros(dim, dtype=torch.float32))

    def forward(self, x_BTD: Tensor, is_bos_BT: Tensor) -> Tensor:
        g_D = torch.sigmoid(self.gate.to(x_BTD.dtype))
        g_BTD = g_D * (~is_bos_BT).unsqueeze(-1).to(x_BTD.dtype)
        prev_BTD = torch.cat((torch.zeros_like(x_BTD[:, :1]), x_BTD[:, :-1]), dim=1)
        return x_BTD + g_BTD * (prev_BTD - x_BTD)


def bigram_buckets(idx_BT: Tensor, num_buckets: int, bos_id: int) -> Tensor:
    """Bucket of each (previous, current) token pair: ((36313 cur) XOR (27191 prev)) mod (K-1).

    The first position and every BOS position get the reserved bucket K-1 (PR #162 + BOS fix).
    Computed in int64; equal to the records' int32 arithmetic for ids below 59,138.
    """
    reserved = num_buckets - 1
    cur, prev = idx_BT[:, 1:].long(), idx_BT[:, :-1].long()
    h_BT = torch.bitwise_xor(BIGRAM_MUL_CUR * cur, BIGRAM_MUL_PREV * prev) % reserved
    h_BT = torch.cat((torch.full_like(idx_BT[:, :1], reserved, dtype=torch.long), h_BT), dim=1)
    return torch.where(idx_BT == bos_id, reserved, h_BT)


class BigramHash(nn.Module):
    """scale * proj(table[bucket(prev, cur)]), added to the token embedding before its norm (PR #162).

    table starts at zero, scale at 0.05; proj is given a non-zero init by `GPT` (with both factors
    zero neither would ever get a gradient).
    """

    def __init__(self, num_buckets: int, dim: int, model_dim: int, bos_id: int):
        super().__init__()
        self.num_buckets, self.bos_id = num_buckets, bos_id
        self.embed = CastedEmbedding(num_buckets, dim)
        self.proj = CastedLinear(dim, model_dim)
        self.scale = nn.Parameter(torch.tensor(0.05, dtype=torch.float32))

    def forward(self, idx_BT: Tensor) -> Tensor:
        h_BTP = self.embed(bigram_buckets(idx_BT, self.num_buckets, self.bos_id))
        out_BTD = self.proj(h_BTP)
        return out_BTD * self.scale.to(out_BTD.dtype)


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
