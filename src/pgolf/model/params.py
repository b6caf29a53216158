"""Parameter classes: the one naming rule that optimizers, QAT and quantization share (pure).

Names follow the challenge baseline (`blocks.3.attn.c_q.weight`, `skip_weights`, ...) so users of
the records recognise them. Classes:

- "control": small gains, mixes and gates (any name containing a `CONTROL_PATTERNS` entry). They go
  to the scalar Adam group and stay fp32 at export, as in every record.
- "embed": `tok_emb.weight` (tied head included) and an untied `lm_head.weight`.
- "attn", "mlp": the main matrices of each block (Muon; int6/int5 at export).
- "bigram", "value_embed": the hashed bigram table / value-embedding table and their projections.
- "other": anything else (nothing in a pgolf GPT today).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import torch
from torch import nn

# Substrings that mark control tensors. The baseline's list (attn_scale, mlp_scale, resid_mix,
# q_gain, skip_weight) plus the later records' additions (skip_gates PR #1394, smear PR #65/#162,
# bigram.scale PR #162, VE scales PR #414) and pgolf's backout gain and recurrence flag.
CONTROL_PATTERNS: tuple[str, ...] = (
    "attn_scale",
    "mlp_scale",
    "resid_mix",
    "q_gain",
    "skip_weight",
    "skip_gates",
    "smear",
    "bigram.scale",
    "value_embed.scale",
    "value_embed.lambdas",
    "backout_lambda",
    "recur_active",
    "mlp.scale",  # PR #861's per-channel MLP scale and bias (mlp_affine)
    "mlp.bias",
    "attn_gate",  # PR #2135's sparse attention gate, two-lane mixing and learned softcaps
    "parallel_post_lambdas",
    "parallel_resid_lambdas",
    "softcap_pos",
    "softcap_neg",
)

PARAM_CLASSES: tuple[str, ...] = ("embed", "attn", "mlp", "bigram", "value_embed", "control", "other")

# What QAT can fake-quantize (control tensors never are). The bigram and value-embedding tables
# and their projections are separate targets: the records quantize them differently (PR #1216: the
# bigram table and proj and the VE proj, not the VE table; PR #861 and #1406: only the projections).
QAT_CLASSES: tuple[str, ...] = ("embed", "attn", "mlp", "bigram", "bigram_proj", "value_embed", "value_embed_proj")

# torch.compile and DDP wrap the model; their prefixes do not change what a tensor is.
_WRAPPER_PREFIX = re.compile(r"^(?:(?:_orig_mod|module)\.)+")


def param_class(name: str) -> str:
    """Class of a parameter or state_dict key: one of `PARAM_CLASSES`."""
    name = _WRAPPER_PREFIX.sub("", name)
    if any(pattern in name for pattern in CONTROL_PATTERNS):
        return "control"
    if name.startswith(("tok_emb.", "lm_head.")):
        return "embed"
    if name.startswith("bigram."):
        return "bigram"
    if name.startswith("value_embed."):
        return "value_embed"
    if ".attn." in name:
        return "attn"
    if ".mlp." in name:
        return "mlp"
    return "other"


def qat_class(name: str) -> str:
    """QAT target of a weight: its `param_class`, with the bigram / value-embedding projections split
    off as "bigram_proj" / "value_embed_proj" (the tables stay "bigram" / "value_embed")."""
    cls = param_class(name)
    if cls in ("bigram", "value_embed") and ".proj." in _WRAPPER_PREFIX.sub("", name):
        return f"{cls}_proj"
    return cls


def num_params(model: nn.Module) -> int:
    """Trainable parameter count; a tied embedding counts once (baseline: 17,059,912)."""
    return sum(p.numel() for p in model.parameters())


def params_by_class(named: Iterable[tuple[str, torch.Tensor]]) -> dict[str, list[str]]:
    """Group names by class, e.g. `params_by_class(model.named_parameters())` for optimizer groups."""
    groups: dict[str, list[str]] = {c: [] for c in PARAM_CLASSES}
    for name, _ in named:
        groups[param_class(name)].append(name)
    return groups
