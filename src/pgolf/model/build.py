"""Build a GPT for weights read from disk, checking them against the config before allocating it.

A config read from a file (safetensors metadata, model.bin meta) is untrusted: a forged
`vocab_size` of 10**9 would otherwise allocate gigabytes before `load_state_dict` could complain.
The expected names and shapes come from a model built on the meta device (no memory), so the real
model is only allocated once the weights in hand, already bounded by the file's size, fit it.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from pgolf.errors import ArtifactError
from pgolf.model.config import ModelConfig
from pgolf.model.gpt import GPT


def expected_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """{name: shape} of `GPT(cfg).state_dict()`, computed without allocating any weight."""
    with torch.device("meta"):
        model = GPT(cfg)
    return {name: tuple(t.shape) for name, t in model.state_dict().items()}


def check_state(cfg: ModelConfig, state: Mapping[str, torch.Tensor], source: str, fix: str) -> None:
    """ArtifactError unless `state` has exactly the names and shapes `GPT(cfg)` expects."""
    expected = expected_shapes(cfg)
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        detail = (f"missing {', '.join(missing[:3])}" if missing else "") + \
                 ("; " if missing and extra else "") + (f"unexpected {', '.join(extra[:3])}" if extra else "")
        raise ArtifactError(f"{source} does not fit its model config ({detail})", fix)
    for name, shape in expected.items():
        got = tuple(state[name].shape)
        if got != shape:
            raise ArtifactError(f"{source} does not fit its model config ({name} has shape {list(got)}, "
                                f"the config needs {list(shape)})", fix)


def build_with_state(cfg: ModelConfig, state: Mapping[str, torch.Tensor], source: str, fix: str) -> GPT:
    """GPT(cfg) in eval mode on the CPU holding `state`; the shapes are checked before the model exists."""
    check_state(cfg, state, source, fix)
    model = GPT(cfg)
    try:
        model.load_state_dict(dict(state), strict=True)
    except RuntimeError as e:
        raise ArtifactError(f"{source} does not fit its model config ({str(e).splitlines()[0]})", fix) from None
    return model.eval()
