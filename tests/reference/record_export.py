"""Helpers of tests/reference/test_export_*.py and test_ttt_recipes.py (not a test module).

- `record(reference_dir, folder)`: a record's own train_gpt.py, imported in place by
  `refimport.load_record` (never copied); `reference_dir` is conftest.py's fixture, which skips with
  the reason when ../shared/reference is absent.
- `seed_tables(seed)` / `seed_quantize_config(seed)`: the seed's whole-pipeline config.
- `block_shapes(...)`: a record's per-block tensor shapes; `random_state(shapes)`: trained-looking
  float weights under the record's own names; `renamer(pairs)`: record names -> pgolf's.
- `record_prune`: the records' magnitude pruning, written from its description (every |w| strictly
  below the `frac` quantile of |W|, on 2-D tensors over 65,536 elements): the oracle pgolf's
  `prune_method = "quantile"` must equal.
- `from_mixed` / `from_int_obj`: a record's export, as per-tensor `Stored`; `pgolf_export`: pgolf's.
- `compare`: storage, integer codes, scales and dequantized values, tensor by tensor;
  `assert_export_equal`: pgolf's export of a state against the record's, stored and dequantized.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch

from pgolf import config as cfgmod
from pgolf.quant import QuantizeConfig, dequantize_state, quantize_state
from pgolf.quant.schemes import parse_scheme_id
from pgolf.stages.run import QuantizeStep

from .refimport import load_record

ROOT = Path(__file__).resolve().parents[2]
SEEDS_DIR = ROOT / "src" / "pgolf" / "configs" / "seeds"
SEEDS = ("baseline", "int5mlp-ttt", "backout", "int5-qat-ttt", "banked-ve", "recurrence")


def record(reference_dir: Path, folder: str) -> ModuleType:
    """The record's train_gpt.py as a module (imported once per session)."""
    path = reference_dir / folder / "train_gpt.py"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    return load_record(reference_dir, folder)


def seed_tables(seed: str) -> dict[str, Any]:
    return cfgmod.load_toml(SEEDS_DIR / f"{seed}.toml")


def seed_quantize_config(seed: str, **changes: Any) -> QuantizeConfig:
    """The seed's [quantize] table as a QuantizeConfig (the run-only keys left out)."""
    step_keys = {f.name for f in dataclasses.fields(QuantizeStep)}
    table = {k: v for k, v in seed_tables(seed)["quantize"].items() if k not in step_keys}
    return cfgmod.from_dict(QuantizeConfig, {**table, **changes}, where="quantize")


def random_state(shapes: Mapping[str, tuple[int, ...]], seed: int = 0) -> dict[str, torch.Tensor]:
    """fp32 weights that exercise every branch of an export: N(0, 0.02) matrices with a heavy tail
    (a quantile clip then differs from the row max), a row of tiny values (scale floors bind), a row
    of large ones (they do not), and 1-D gains around 1."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for name, shape in shapes.items():
        t = torch.randn(shape, generator=gen) * 0.02
        if t.ndim == 2 and t.shape[0] > 1:
            hits = torch.randint(0, t.numel(), (max(1, t.numel() // 1000),), generator=gen)
            t.view(-1)[hits] *= 30.0
            t[0] *= 1e-3
            t[1] *= 200.0
        else:
            t += 1.0
        out[name] = t
    return out


def block_shapes(layers: int, d: int, kv: int, hidden: int, *, heads: int = 4, up: str = "mlp.fc",
                 down: str = "mlp.proj", extra: Mapping[str, tuple[int, ...]] | None = None) -> dict[str, tuple[int, ...]]:
    """The shapes of `layers` transformer blocks under the records' names (blocks.<i>.attn.c_q ...):
    d x d query and out-projections, kv x d keys and values, `heads` q gains, the per-block gains and
    resid_mix, the MLP's `up` (hidden x d) and `down` (d x hidden), then `extra` per block."""
    out: dict[str, tuple[int, ...]] = {}
    for i in range(layers):
        b = f"blocks.{i}."
        out |= {b + "attn.c_q.weight": (d, d), b + "attn.c_k.weight": (kv, d), b + "attn.c_v.weight": (kv, d),
                b + "attn.proj.weight": (d, d), b + "attn.q_gain": (heads,), b + "attn_scale": (d,),
                b + "mlp_scale": (d,), b + "resid_mix": (2, d), b + f"{up}.weight": (hidden, d),
                b + f"{down}.weight": (d, hidden), **{b + k: v for k, v in (extra or {}).items()}}
    return out


def renamer(pairs: Mapping[str, str]) -> Callable[[str], str]:
    """A record tensor name -> pgolf's, each `pairs` key replaced by its value in turn."""
    def rename(name: str) -> str:
        for old, new in pairs.items():
            name = name.replace(old, new)
        return name
    return rename


VE_TO_PGOLF = renamer({"ve_shared.": "value_embed."})  # PRs #1216 / #1406's shared value embedding


def record_prune(state: Mapping[str, torch.Tensor], frac: float, min_numel: int = 65_536) -> dict[str, torch.Tensor]:
    """The records' magnitude pruning (PRs #366, #861, #1216), from its description."""
    out = {}
    for name, t in state.items():
        if t.is_floating_point() and t.ndim == 2 and t.numel() > min_numel:
            threshold = torch.quantile(t.abs().float().flatten(), frac)
            t = t.masked_fill(t.abs() < threshold, 0.0)
        out[name] = t
    return out


@dataclasses.dataclass
class Stored:
    """One tensor of an export: kind "int" (codes + fp16 per-row scales at `bits`), "fp16" or "fp32"."""

    kind: str
    bits: int | None = None
    codes: torch.Tensor | None = None
    scale: torch.Tensor | None = None
    value: torch.Tensor | None = None


def _float(t: torch.Tensor) -> Stored:
    kind = {torch.float16: "fp16", torch.float32: "fp32"}[t.dtype]
    return Stored(kind, value=t)


def from_mixed(result: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> dict[str, Stored]:
    """`mixed_quantize_int6`'s (result, meta) (PRs #264, #366, #1216, #1406)."""
    out = {}
    for name, info in meta.items():
        if isinstance(info, str):
            out[name] = _float(result[name])
        else:
            bits = int(str(info["type"]).removeprefix("int"))
            out[name] = Stored("int", bits, result[name + ".q"], result[name + ".scale"])
    return out


def from_int_obj(obj: Mapping[str, Any], bits: int) -> dict[str, Stored]:
    """`quantize_state_dict_int8` / `_int6`'s object (baseline, PR #861, PR #1406's int8 helper)."""
    out = {name: Stored("int", bits, q, obj["scales"][name]) for name, q in obj["quantized"].items()}
    out.update({name: _float(t) for name, t in obj["passthrough"].items()})
    return out


def pgolf_export(state: Mapping[str, torch.Tensor], cfg: QuantizeConfig,
                 hessians: Mapping[str, torch.Tensor] | None = None) -> tuple[dict[str, Stored], dict[str, torch.Tensor]]:
    """pgolf's export of `state` under `cfg`: (per-tensor Stored, the dequantized state dict)."""
    res = quantize_state(state, cfg, hessians)
    out = {}
    for name, entry in res.meta["tensors"].items():
        bits = parse_scheme_id(entry["scheme"])
        if bits is None:
            out[name] = _float(res.tensors[name])
        else:
            out[name] = Stored("int", bits, res.tensors[f"{name}.q"], res.tensors[f"{name}.scale"])
    return out, dequantize_state(res.tensors, res.meta)


def compare(
    rec: Mapping[str, Stored],
    pg: Mapping[str, Stored],
    rename: Callable[[str], str] = lambda n: n,
    *,
    low_code: bool = False,
    near: float = 0.0,
) -> set[str]:
    """Assert that every record tensor has pgolf's storage, bits, codes and scales (or stored floats).

    `low_code`: the record's grid reaches -(qmax+1) (`mixed_quantize_int6` clamps to [-(c+1), c]);
    pgolf's is +-qmax. A tensor whose record codes never reach -(qmax+1) must still match exactly:
    a candidate's error on the record's grid is at most its error on pgolf's, equal when it has no
    such code, so the record's pick is then pgolf's pick too. A tensor whose codes do reach it is
    checked for storage and bits only, and returned (its name) for the caller to report.

    `near`: the fraction of a tensor's codes that may differ by exactly one step (same scales): two
    GPTQ sweeps that do not round identically in float32 can put an entry within an ulp of a rounding
    boundary on the other side. Such tensors are returned too.
    """
    assert sorted(rename(n) for n in rec) == sorted(pg), "the two exports hold different tensors"
    lows: set[str] = set()
    for name, r in rec.items():
        p = pg[rename(name)]
        assert (r.kind, r.bits) == (p.kind, p.bits), f"{name}: record {r.kind}{r.bits or ''}, pgolf {p.kind}{p.bits or ''}"
        if r.kind != "int":
            assert r.value is not None and p.value is not None
            assert torch.equal(r.value, p.value), f"{name}: stored float values differ"
            continue
        assert r.codes is not None and p.codes is not None and r.scale is not None and p.scale is not None
        rc, pc = r.codes.to(torch.int8), p.codes.reshape(r.codes.shape)
        if low_code and bool((rc == -(2 ** (int(r.bits or 8) - 1))).any()):
            lows.add(name)
            continue
        assert r.scale.dtype == torch.float16 and torch.equal(r.scale, p.scale), f"{name}: scales differ"
        diff = (rc.to(torch.int16) - pc.to(torch.int16)).abs()
        mismatch = int((diff != 0).sum().item())
        if mismatch and near > 0:
            assert int(diff.max().item()) == 1 and mismatch <= near * rc.numel(), \
                f"{name}: {mismatch} of {rc.numel()} codes differ, by up to {int(diff.max().item())}"
            lows.add(name)
            continue
        assert mismatch == 0, f"{name}: {mismatch} of {rc.numel()} codes differ"
    return lows


def assert_dequantized_equal(rec: Mapping[str, torch.Tensor], pg: Mapping[str, torch.Tensor],
                             rename: Callable[[str], str] = lambda n: n) -> None:
    """The record's dequantized state dict equals pgolf's, tensor by tensor (bit for bit)."""
    for name, t in rec.items():
        assert torch.equal(t, pg[rename(name)]), f"{name}: dequantized tensors differ"


def assert_export_equal(rec: Mapping[str, Stored], rec_deq: Mapping[str, torch.Tensor],
                        state: Mapping[str, torch.Tensor], cfg: QuantizeConfig,
                        rename: Callable[[str], str] = lambda n: n,
                        hessians: Mapping[str, torch.Tensor] | None = None) -> tuple[dict[str, Stored], dict[str, torch.Tensor]]:
    """pgolf's export of `state` (the record's names, `rename`d to pgolf's) under `cfg` stores what the
    record's export `rec` stores (`compare`) and dequantizes to the record's `rec_deq`, bit for bit;
    returns pgolf's (per-tensor Stored, dequantized state dict) for the caller's own checks."""
    pg, pg_deq = pgolf_export({rename(n): t for n, t in state.items()}, cfg, hessians)
    compare(rec, pg, rename)
    assert_dequantized_equal(rec_deq, pg_deq, rename)
    return pg, pg_deq
