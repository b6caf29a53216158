"""The few collectives evaluation needs, world-size aware and a no-op in one process.

Under torchrun every rank runs the same evaluation loop: each scores a contiguous share of a
chunk's windows, the per-token losses are gathered in rank order (so every rank holds the same
ledger), and adaptation gradients are summed across ranks before each step, as the records do
(PR #549). With one process nothing is communicated.
"""

from __future__ import annotations

import dataclasses

import torch


@dataclasses.dataclass(frozen=True)
class World:
    """This process's rank among `size` ranks (torch.distributed when it is initialized)."""

    rank: int = 0
    size: int = 1

    @classmethod
    def current(cls) -> World:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size())
        return cls()

    def share(self, n: int) -> tuple[int, int]:
        """This rank's contiguous share [lo, hi) of n items (the records' split)."""
        return n * self.rank // self.size, n * (self.rank + 1) // self.size

    def all_reduce_sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.size > 1:
            import torch.distributed as dist

            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def gather_concat(self, local: torch.Tensor) -> torch.Tensor:
        """Concatenate every rank's 1-D tensor in rank order; every rank receives the result."""
        if self.size == 1:
            return local
        import torch.distributed as dist

        size = torch.tensor([local.numel()], dtype=torch.int64, device=local.device)
        sizes = [torch.zeros_like(size) for _ in range(self.size)]
        dist.all_gather(sizes, size)
        counts = [int(s.item()) for s in sizes]
        longest = max(counts)
        padded = torch.zeros(longest, dtype=local.dtype, device=local.device)
        padded[: local.numel()] = local
        parts = [torch.empty_like(padded) for _ in range(self.size)]
        dist.all_gather(parts, padded)
        return torch.cat([p[:c] for p, c in zip(parts, counts)])
