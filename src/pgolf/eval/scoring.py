"""Batched scoring of windows: per-position NLL under inference mode, split across ranks.

Windows are batched `batch_seqs` at a time and right-padded to a common width with token 0: the
model is causal (rules MET-6), so padding never reaches a scored position, and no token beyond a
window's last target is ever read. With `fixed_shape` (torch.compile) every batch is [batch_seqs, L].
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import cast

import numpy as np
import torch

from pgolf.eval.dist import World

# forward(idx_BT, tgt_BT) -> nll_BT (fp32): the model's `token_nll`, possibly compiled.
Forward = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# forward(idx_BT, tgt_BT, hint_BT, gate_BT, beta_BT) -> tilted nll_BT (fp32).
TiltedForward = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
# (hint ids [P] int64, gate [P] bool, beta [P] float32) per stream position, on the scoring device.
PositionTilt = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def token_nll_of(model: torch.nn.Module) -> Forward:
    """`model.token_nll`, the one method scoring needs beyond nn.Module's (which types any attribute it
    does not declare as Tensor | Module)."""
    return cast(Forward, model.token_nll)


def tilted_nll_of(model: torch.nn.Module) -> TiltedForward:
    """The tilted NLL from the model's logits (`model(idx) -> logits_BTV`): the log-softmax over the whole
    vocabulary is the normalizer, the target's and the hint's entries are read from it, and the closed
    form of `pgolf.eval.ngram_tilt.tilt_nll` gives -log p'(y) (PR #2135's scoring path)."""
    from pgolf.eval.ngram_tilt import tilt_nll  # here: a submission file without the tilt leaves the module out

    def forward(idx: torch.Tensor, tgt: torch.Tensor, hint: torch.Tensor, gate: torch.Tensor,
                beta: torch.Tensor) -> torch.Tensor:
        lp = torch.log_softmax(model(idx).float(), dim=-1)
        nll = -lp.gather(-1, tgt.unsqueeze(-1)).squeeze(-1)
        log_q = lp.gather(-1, hint.unsqueeze(-1)).squeeze(-1)
        return tilt_nll(nll, log_q, tgt, hint, gate, beta).float()

    return forward


def autocast_for(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA as the records evaluate (fp32 logits for the loss); nothing on CPU."""
    if enabled and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def window_batch(tokens: torch.Tensor, windows: np.ndarray, width: int, rows: int | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inputs, targets [R, width] (int64) and the scored-position mask [R, width] of `windows`.

    `tokens` is the whole stream (any integer dtype, on the scoring device); `windows` rows are
    (ctx, start, end). Cells past a window's end hold token 0 and are not scored; `rows` pads the
    batch with empty rows.
    """
    device = tokens.device
    win = torch.as_tensor(windows, dtype=torch.int64, device=device)
    ctx, start, end = win[:, 0:1], win[:, 1:2], win[:, 2:3]
    col = torch.arange(width, device=device).unsqueeze(0)
    pos = ctx + col  # the position each cell predicts from
    inside = pos < end
    src = torch.minimum(pos, end - 1)  # padding cells re-read the window's last position, then are zeroed
    x = torch.where(inside, tokens[src].long(), 0)
    y = torch.where(inside, tokens[src + 1].long(), 0)
    scored = inside & (pos >= start)
    if rows is not None and rows > x.shape[0]:
        pad = rows - x.shape[0]
        x = torch.cat([x, x.new_zeros(pad, width)])
        y = torch.cat([y, y.new_zeros(pad, width)])
        scored = torch.cat([scored, scored.new_zeros(pad, width)])
    return x, y, scored


def _tilt_cells(tilt: PositionTilt, windows: np.ndarray, width: int, rows: int
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The tilt's (hint, gate, beta) [rows, width] at the position each cell of `windows` predicts from;
    cells outside a window (padding) get no tilt."""
    hint, gate, beta = tilt
    device = hint.device
    win = torch.as_tensor(windows, dtype=torch.int64, device=device)
    pos = win[:, 0:1] + torch.arange(width, device=device).unsqueeze(0)
    inside = pos < win[:, 2:3]
    src = torch.minimum(pos, win[:, 2:3] - 1)
    h = torch.where(inside, hint[src], 0)
    g = inside & gate[src]
    b = torch.where(inside, beta[src], 0.0)
    if rows > h.shape[0]:
        pad = rows - h.shape[0]
        h, g, b = torch.cat([h, h.new_zeros(pad, width)]), torch.cat([g, g.new_zeros(pad, width)]), \
            torch.cat([b, b.new_zeros(pad, width)])
    return h, g, b


@torch.inference_mode()
def score_windows(forward: Forward | TiltedForward, tokens: torch.Tensor, windows: np.ndarray, *, seq_len: int,
                  batch_seqs: int, autocast: bool = True, fixed_shape: bool = False, world: World = World(),
                  tilt: PositionTilt | None = None) -> torch.Tensor:
    """Per-position NLL (fp32, on CPU) of the positions the ordered `windows` score, in position order.

    Each rank scores a contiguous share of the windows; the losses are gathered so every rank
    returns the whole range [windows[0, 1], windows[-1, 2]). With `tilt`, `forward` is a
    `TiltedForward` and each cell gets the tilt of the position it predicts from.
    """
    lo, hi = world.share(len(windows))
    mine = windows[lo:hi]
    device = tokens.device
    parts: list[torch.Tensor] = []
    for i in range(0, len(mine), batch_seqs):
        batch = mine[i : i + batch_seqs]
        width = seq_len if fixed_shape else int((batch[:, 2] - batch[:, 0]).max())
        x, y, scored = window_batch(tokens, batch, width, rows=batch_seqs if fixed_shape else None)
        with autocast_for(device, autocast):
            if tilt is None:
                nll = cast(Forward, forward)(x, y)
            else:
                nll = cast(TiltedForward, forward)(x, y, *_tilt_cells(tilt, batch, width, x.shape[0]))
        parts.append(nll.float()[scored])  # row-major: positions in order, windows are ordered
    local = torch.cat(parts) if parts else torch.zeros(0, dtype=torch.float32, device=device)
    return world.gather_concat(local).cpu()
