"""The artifact's bytes by tensor class: code bytes + model.bin split into embed / attn / mlp / ...

model.bin is compressed per section, not per tensor, so a class's share of it is an estimate. Each
section's stored bytes are apportioned to the tensors it holds, in proportion to what each tensor
contributes to that section:

- the integer codes (`codes` / `codes_packed`): each tensor's order-0 code entropy (bits per code
  times its codes, from `pgolf pack`'s report), the quantity an entropy coder spends bytes on;
  without it, the tensor's bits times its codes;
- the other tensors (`data` / `data_shuffled`: per-row fp16 scales of the integer tensors and the
  float passthrough tensors): their raw bytes;
- the index (meta), the rANS frequency tables and the container header are `overhead`.

The parts sum exactly to `code_bytes + model_bytes`; only the split between classes is estimated.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

# Display order of pgolf.model's parameter classes (a class not listed here is appended after them).
CLASS_ORDER = ("embed", "attn", "mlp", "bigram", "value_embed", "control", "other")
CODE_SECTIONS = ("codes", "codes_packed")
DATA_SECTIONS = ("data", "data_shuffled")
METHOD = ("estimated: each model.bin section's stored bytes split over its tensors, the integer codes by "
          "per-tensor order-0 entropy, scales and float tensors by raw size; index, coder tables and header "
          "are overhead")


@dataclasses.dataclass(frozen=True)
class Budget:
    """Bytes of one artifact by component (decimal bytes; class shares are estimates, see the module).

    code_bytes: train_gpt.py; model_bytes: model.bin; classes: {class: estimated model.bin bytes};
    params: {class: parameters}; overhead: index + coder tables + header bytes.
    """

    code_bytes: int
    model_bytes: int
    classes: dict[str, float]
    params: dict[str, int]
    overhead: float
    method: str = METHOD

    @property
    def total_bytes(self) -> int:
        return self.code_bytes + self.model_bytes

    def parts(self) -> list[tuple[str, float]]:
        """(component, bytes) in display order: code, the classes, overhead; they sum to total_bytes."""
        return [("code", float(self.code_bytes)), *self.classes.items(), ("overhead", self.overhead)]


def _ordered(keys: Sequence[str]) -> list[str]:
    known = [c for c in CLASS_ORDER if c in keys]
    return known + sorted(k for k in keys if k not in CLASS_ORDER)


def _apportion(total: float, weights: Mapping[str, float]) -> dict[str, float]:
    """Split `total` over the keys of `weights` in proportion (evenly when every weight is 0)."""
    norm = sum(weights.values())
    if not weights:
        return {}
    if norm <= 0:
        return {k: total / len(weights) for k in weights}
    return {k: total * w / norm for k, w in weights.items()}


def class_budget(code_bytes: int, model_bytes: int, sections: Sequence[Mapping[str, Any]],
                 quant_tensors: Mapping[str, Mapping[str, Any]],
                 code_entropy: Mapping[str, Mapping[str, Any]] | None = None) -> Budget:
    """Estimate the bytes of each tensor class in an artifact.

    code_bytes, model_bytes: the pack manifest's counts. sections: its `sections`
    ([{kind, stored_bytes, ...}]). quant_tensors: the quant report's `tensors`
    ({name: {class, method, bits, numel, payload_bits}}). code_entropy: the pack report's `tensors`
    ({"<name>.q": {numel, entropy_bytes}}), or None.
    """
    code_entropy = code_entropy or {}
    code_w: dict[str, float] = {}
    data_w: dict[str, float] = {}
    params: dict[str, int] = {}
    for name, t in quant_tensors.items():
        cls = str(t.get("class", "other"))
        numel, bits, payload = int(t["numel"]), int(t["bits"]), float(t["payload_bits"])
        params[cls] = params.get(cls, 0) + numel
        if t.get("method") == "passthrough":
            data_w[cls] = data_w.get(cls, 0.0) + payload / 8
            continue
        entropy = code_entropy.get(f"{name}.q", {}).get("entropy_bytes")
        code_w[cls] = code_w.get(cls, 0.0) + (float(entropy) if entropy is not None else bits * numel / 8)
        data_w[cls] = data_w.get(cls, 0.0) + (payload - bits * numel) / 8  # the per-row scales
    classes = dict.fromkeys(_ordered(list(params)), 0.0)
    for section in sections:
        size = float(section["stored_bytes"])
        share = (_apportion(size, code_w) if section["kind"] in CODE_SECTIONS
                 else _apportion(size, data_w) if section["kind"] in DATA_SECTIONS else {})
        for cls, b in share.items():
            classes[cls] += b
    overhead = model_bytes - sum(classes.values())  # index, coder tables, header: whatever no class holds
    return Budget(code_bytes=int(code_bytes), model_bytes=int(model_bytes), classes=classes, params=params,
                  overhead=overhead)
