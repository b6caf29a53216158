"""Weight averages applied at the end of training: EMA (PR #287 onward) and SWA (PR #162 / #180).

Both keep fp32 copies of the model's floating-point state (parameters and float buffers); integer
and bool buffers (the recurrence flag) are taken from the live model when the average is applied.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def _float_state(model: nn.Module) -> dict[str, Tensor]:
    return {k: v for k, v in model.state_dict().items() if v.is_floating_point()}


class EMA:
    """theta_bar <- d theta_bar + (1 - d) theta after every optimizer step, from the first timed step."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.shadow = {k: v.detach().float().clone() for k, v in _float_state(model).items()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        live = _float_state(model)
        shadow = list(self.shadow.values())
        torch._foreach_lerp_(shadow, [live[k].float() for k in self.shadow], 1.0 - self.decay)

    def state_dict(self) -> dict[str, Tensor]:
        return dict(self.shadow)

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        assert set(state) == set(self.shadow), "EMA keys differ from the model's"
        for k, v in state.items():
            self.shadow[k].copy_(v)

    def averaged_state(self, model: nn.Module) -> dict[str, Tensor]:
        """The model's state_dict with the EMA in place of float tensors (cast to their dtypes)."""
        return _merge(model, self.shadow, 1.0)


class SWA:
    """Uniform average of snapshots (sum + count, fp32); the first snapshot starts the sum."""

    def __init__(self, model: nn.Module):
        self.sum = {k: torch.zeros_like(v, dtype=torch.float32) for k, v in _float_state(model).items()}
        self.count = 0

    @torch.no_grad()
    def add(self, state: dict[str, Tensor]) -> None:
        """Add one snapshot: a state_dict (the live model's, or the EMA's averaged state)."""
        torch._foreach_add_(list(self.sum.values()), [state[k].float() for k in self.sum])
        self.count += 1

    def state_dict(self) -> dict[str, Tensor]:
        return dict(self.sum)

    def load_state_dict(self, state: dict[str, Tensor], count: int) -> None:
        assert set(state) == set(self.sum), "SWA keys differ from the model's"
        for k, v in state.items():
            self.sum[k].copy_(v)
        self.count = count

    def averaged_state(self, model: nn.Module) -> dict[str, Tensor]:
        assert self.count > 0, "no SWA snapshot was taken"
        return _merge(model, self.sum, 1.0 / self.count)


def _merge(model: nn.Module, floats: dict[str, Tensor], scale: float) -> dict[str, Tensor]:
    out = {}
    for k, v in model.state_dict().items():
        out[k] = (floats[k] * scale).to(v.dtype) if k in floats else v.detach().clone()
    return out
