"""What ran where: code identity (git commit, source hash) and environment (python, torch, device)."""

from __future__ import annotations

import functools
import hashlib
import platform
import subprocess
from pathlib import Path

import pgolf

PACKAGE_DIR = Path(pgolf.__file__).resolve().parent


@functools.lru_cache(maxsize=1)
def source_sha256() -> str:
    """sha256 over pgolf's own .py files (path + content, sorted): identifies the code that ran."""
    h = hashlib.sha256()
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        h.update(path.relative_to(PACKAGE_DIR).as_posix().encode())
        h.update(b"\0")
        h.update(path.read_bytes())
        h.update(b"\0")
    return h.hexdigest()


@functools.lru_cache(maxsize=1)
def git_info() -> dict[str, object]:
    """Commit and dirty flag of the checkout pgolf runs from, or nulls when it is not a git checkout."""

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", "-C", str(PACKAGE_DIR), *args], capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    dirty = None
    if commit is not None:
        status = git("status", "--porcelain", "--", str(PACKAGE_DIR))
        dirty = bool(status) if status is not None else None
    return {"git_commit": commit, "git_dirty": dirty}


def code_info() -> dict[str, object]:
    return {**git_info(), "source_sha256": source_sha256()}


def env_info(device: str = "cpu", world_size: int = 1) -> dict[str, object]:
    """Python, torch, CUDA and device facts (imports torch)."""
    import torch

    info: dict[str, object] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "device": device,
        "world_size": world_size,
        "num_threads": torch.get_num_threads(),
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_count"] = torch.cuda.device_count()
    else:
        info["cpu"] = platform.processor() or platform.machine()
    return info
