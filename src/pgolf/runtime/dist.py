"""torchrun integration: rank and world size from the environment, process-group set-up and teardown.

`torchrun --standalone --nproc_per_node=N -m pgolf train ...` sets RANK, WORLD_SIZE and LOCAL_RANK;
without them pgolf runs as a single process. GPUs talk over NCCL, CPU processes over gloo. Only rank
0 prints and writes files.
"""

from __future__ import annotations

import dataclasses
import os


@dataclasses.dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


SINGLE = DistInfo()


def from_env() -> DistInfo:
    """The launcher's RANK / WORLD_SIZE / LOCAL_RANK, or a single process when they are absent."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return SINGLE
    return DistInfo(rank=int(os.environ["RANK"]), world_size=int(os.environ["WORLD_SIZE"]),
                    local_rank=int(os.environ.get("LOCAL_RANK", os.environ["RANK"])))


def init(info: DistInfo, device) -> None:
    """Join the process group (NCCL on GPU, gloo on CPU); a no-op for a single process."""
    import torch.distributed as dist

    if not info.distributed or dist.is_initialized():
        return
    if device.type == "cuda":
        dist.init_process_group(backend="nccl", device_id=device)
    else:
        dist.init_process_group(backend="gloo")
    dist.barrier()


def shutdown() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
