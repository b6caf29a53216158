"""Import a record's train_gpt.py at test time and compare its model and optimizers with pgolf's.

A record is imported as a module under a private name (`_pgolf_record_<folder>`), so its
`if __name__ == "__main__": main()` guard never fires; the record's file is never edited or copied.
What in the records cannot run here, and how it is worked around from outside:

- main() needs CUDA, NCCL, data shards and writes logs: it is never called. The tests build the
  record's GPT with the constructor arguments main() passes and restate main()'s optimizer split
  (each test file says which lines it follows).
- flash_attn_interface (PR #1406 uses FlashAttention 3 when it imports): an empty stub module stands
  in while the record is imported, so its `from flash_attn_interface import flash_attn_func` raises
  ImportError and the record takes its own F.scaled_dot_product_attention fallback - the same causal
  GQA attention, on the CPU.
- sentencepiece, zstandard and wandb are imported at module level but used only by main() and the
  export: an empty stub stands in for any that is not installed.
- Hyperparameters read os.environ when the class is created: `load_record(..., env=...)` imports the
  record with its launch script's variables set (PR #861's run_training.sh, the run commands of the
  others), so `module.Hyperparameters()` holds what the launch ran.

Everything is compared in float32 on the CPU.
"""

from __future__ import annotations

import builtins
import importlib.util
import os
import re
import sys
import types
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pgolf.model import GPT
from pgolf.stages.train import load_config
from pgolf.train.config import TrainConfig

_LOADED: dict[tuple, types.ModuleType] = {}
_OPTIONAL = ("sentencepiece", "zstandard", "wandb")


def launch_env(script: Path) -> dict[str, str]:
    """The `export KEY="value"` lines of a launch script (PR #861's run_training.sh)."""
    env = {}
    for line in script.read_text().splitlines():
        m = re.match(r'\s*export\s+([A-Z0-9_]+)="?([^"\s]*)"?\s*$', line)
        if m:
            env[m.group(1)] = m.group(2)
    return env


def readme_env(readme: Path, heading: str) -> dict[str, str]:
    """KEY=VALUE words of the first code block after `heading` in a record's README (its run command),
    leaving out values that name a shell variable (SEED=$SEED)."""
    block = readme.read_text().split(heading, 1)[1].split("```")[1]
    return {k: v for k, v in re.findall(r"([A-Z][A-Z0-9_]*)=(\S+)", block) if "$" not in v}


def load_record(reference_dir: Path, folder: str, env: Mapping[str, str] | None = None,
                extra_stubs: Mapping[str, types.ModuleType] | None = None) -> types.ModuleType:
    """The record's train_gpt.py as a module, imported once per session and environment; `env` is set
    while it is imported (its Hyperparameters class reads it then) and restored afterwards.
    `extra_stubs` ({dotted module name: module}) stand in for GPU-only imports of the record alone (PR
    #2135 imports triton and FlashAttention 3 unconditionally): its own `import` statements get them,
    and sys.modules never holds them, so torch (which caches whether triton is installed) and every
    other module keep seeing the real environment."""
    path = (reference_dir / folder / "train_gpt.py").resolve()
    env = dict(env or {})
    key = (path, tuple(sorted(env.items())))
    if key in _LOADED:
        return _LOADED[key]
    stubs: dict[str, types.ModuleType] = {}
    for name in _OPTIONAL:
        if importlib.util.find_spec(name) is None:
            stubs[name] = types.ModuleType(name)
    # An empty module: `from flash_attn_interface import flash_attn_func` fails -> SDPA fallback.
    stubs["flash_attn_interface"] = types.ModuleType("flash_attn_interface")
    private = dict(extra_stubs or {})
    for stub_name in private:
        stubs.pop(stub_name.split(".")[0], None)
    saved = {name: sys.modules.get(name) for name in stubs}
    sys.modules.update(stubs)
    saved_env = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    name = f"_pgolf_record_{folder.replace('-', '_')}_{len(_LOADED)}"
    try:
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        if private:
            module.__dict__["__builtins__"] = _private_builtins(private)
        sys.modules[name] = module  # dataclasses and pickling look modules up by name
        spec.loader.exec_module(module)
    finally:
        for stub_name, before in saved.items():
            if before is None:
                sys.modules.pop(stub_name, None)
            else:
                sys.modules[stub_name] = before
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    _LOADED[key] = module
    return module


def _private_builtins(private: Mapping[str, types.ModuleType]) -> dict[str, Any]:
    """Builtins whose __import__ answers the names in `private` (and their parents) with the stubs."""
    tops = {name.split(".")[0] for name in private}

    def _import(name: str, globals: Any = None, locals: Any = None, fromlist: Any = (), level: int = 0) -> Any:
        if level == 0 and name.split(".")[0] in tops:
            return private[name] if fromlist else private[name.split(".")[0]]
        return builtins.__import__(name, globals, locals, fromlist, level)

    return {**builtins.__dict__, "__import__": _import}


def preset(name: str, *overrides: str) -> TrainConfig:
    """A shipped preset with `--set`-style overrides (the same path `pgolf train --preset` takes)."""
    return load_config(name, overrides=list(overrides))


# ----------------------------------------------------------------------------- weights

# A pgolf parameter name -> its record source: (record parameter name, bank index or None), or a list
# of them whose flattened values are concatenated (PR #861's per-layer VE scales -> value_embed.lambdas).
Source = tuple[str, int | None]
NameMap = Callable[[str], Source | list[Source]]


def sources(name_map: NameMap, name: str) -> list[Source]:
    src = name_map(name)
    return src if isinstance(src, list) else [src]


def _gather(tensors: Mapping[str, torch.Tensor], srcs: list[Source]) -> torch.Tensor:
    parts = [tensors[n] if i is None else tensors[n][i] for n, i in srcs]
    return parts[0] if len(parts) == 1 else torch.cat([t.reshape(-1) for t in parts])


def copy_weights(record: nn.Module, model: GPT, name_map: NameMap) -> None:
    """Copy every record parameter into `model` through `name_map`, after checking that the map covers
    both models exactly: every pgolf parameter has a source of its size, every record element is used once."""
    rec = dict(record.named_parameters())
    used: dict[str, int] = defaultdict(int)
    with torch.no_grad():
        for name, p in model.named_parameters():
            srcs = sources(name_map, name)
            for src_name, index in srcs:
                assert src_name in rec, f"{name} -> {src_name}: no such record parameter"
                used[src_name] += rec[src_name].numel() if index is None else rec[src_name][index].numel()
            src = _gather(rec, srcs)
            assert src.numel() == p.numel(), f"{name} {tuple(p.shape)} <- {srcs} {tuple(src.shape)}"
            p.copy_(src.reshape(p.shape))
    for src_name, t in rec.items():
        assert used.get(src_name) == t.numel(), f"record parameter {src_name} is not mapped exactly once"


def perturb(model: nn.Module, seed: int = 0, std: float = 0.05) -> None:
    """Add N(0, std^2) noise to every parameter: zero-initialized projections, gates and tables would
    otherwise hide whole paths of the forward and backward from the comparison."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * std)


def batch_with_bos(vocab: int, batch: int, seq: int, bos: int = 1, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, targets) of random tokens with BOS at the first position of row 0 and inside rows (the
    place where a BOS-safe SmearGate / BigramHash would differ from the records')."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(2, vocab, (batch, seq + 1), generator=g)
    tokens[0, 0] = bos
    tokens[:, seq // 3] = bos
    tokens[-1, seq // 2 + 1] = bos
    return tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()


class _CaptureLogits:
    """Stands in for the record module's `F` during one forward: records the logits its training
    forward hands to F.cross_entropy (the record's own logits, whatever path computed them)."""

    def __init__(self, real: Any):
        self.real = real
        self.logits: torch.Tensor | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def cross_entropy(self, logits: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        if self.logits is None:  # the main loss comes first
            self.logits = logits.detach().clone()
        return self.real.cross_entropy(logits, *args, **kwargs)


def record_forward(module: types.ModuleType, record: nn.Module, x: torch.Tensor,
                   y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, logits_BTV) of the record's training forward `record(x, y)`."""
    capture = _CaptureLogits(module.F)
    module.F = capture
    try:
        loss = record(x, y)
    finally:
        module.F = capture.real
    assert capture.logits is not None, "the record's forward computed no cross-entropy"
    return loss, capture.logits.reshape(x.shape[0], x.shape[1], -1)


def assert_same_model(module: types.ModuleType, record: nn.Module, model: GPT, name_map: NameMap, vocab: int,
                      seq: int = 24, atol: float = 2e-5, rtol: float = 1e-5) -> None:
    """Equal logits (with BOS in the batch), equal loss, and equal gradients of every parameter, in
    training mode and float32."""
    record.float().train()
    model.float().train()
    x, y = batch_with_bos(vocab, 3, seq)
    record.zero_grad(set_to_none=True)
    model.zero_grad(set_to_none=True)
    ref_loss, ref_logits = record_forward(module, record, x, y)
    logits = model(x)
    torch.testing.assert_close(logits, ref_logits.float(), atol=atol, rtol=rtol)
    loss = model.loss(x, y)
    torch.testing.assert_close(loss, ref_loss, atol=atol, rtol=rtol)
    ref_loss.backward()
    loss.backward()
    grads = {n: q.grad for n, q in record.named_parameters() if q.grad is not None}
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        ref_grad = _gather(grads, sources(name_map, name))
        torch.testing.assert_close(p.grad, ref_grad.reshape(p.shape), atol=atol, rtol=rtol,
                                   msg=lambda m, n=name: f"{n}: {m}")


# ----------------------------------------------------------------------------- optimizer groups


def _kind(opt: torch.optim.Optimizer) -> str:
    return "muon" if "Muon" in type(opt).__name__ else "adam"


def _group_key(kind: str, group: Mapping[str, Any]) -> tuple:
    if kind == "muon":
        return ("muon", round(group["lr"], 12), round(group.get("weight_decay", 0.0), 12),
                round(group["momentum"], 12))
    return ("adam", round(group["lr"], 12), round(group["weight_decay"], 12), tuple(group["betas"]), group["eps"])


def optimizer_table(optimizers: Iterable[torch.optim.Optimizer], names_of: Mapping[int, list[str]]) -> dict[str, tuple]:
    """{pgolf parameter name: (optimizer kind, lr, weight decay, betas/eps or momentum)} of the given
    optimizers; `names_of` maps id(tensor) to the pgolf names it holds (a bank holds several; several
    record tensors may form one pgolf tensor, and must then agree)."""
    table: dict[str, tuple] = {}
    seen: set[int] = set()
    for opt in optimizers:
        kind = _kind(opt)
        for group in opt.param_groups:
            for p in group["params"]:
                assert id(p) not in seen, "a tensor is in two optimizer groups"
                seen.add(id(p))
                for name in names_of[id(p)]:
                    key = _group_key(kind, group)
                    assert table.setdefault(name, key) == key, f"{name}: its record pieces train differently"
    return table


def record_names_of(record: nn.Module, model: GPT, name_map: NameMap) -> dict[int, list[str]]:
    """id(record tensor) -> the pgolf parameter names it maps to."""
    rec = dict(record.named_parameters())
    out: dict[int, list[str]] = defaultdict(list)
    for name, _ in model.named_parameters():
        for src_name, _index in sources(name_map, name):
            if name not in out[id(rec[src_name])]:
                out[id(rec[src_name])].append(name)
    return out


def pgolf_optimizer_table(model: GPT, cfg: TrainConfig) -> dict[str, tuple]:
    """The same table for pgolf's OptimizerSet as the training loop builds it."""
    from pgolf.optim.groups import build_optimizers

    opts = build_optimizers(model, cfg.optim_settings(), cfg.model.tie_embeddings,
                            decoder_from=cfg.model.num_layers // 2)
    names = {id(p): [n] for n, p in model.named_parameters()}
    return optimizer_table(opts, names)


# ----------------------------------------------------------------------------- parameter counts


def counts_by_module(model: nn.Module, rename: Mapping[str, str] | None = None) -> dict[str, int]:
    """Parameter elements per top-level module name (after `rename` of the record's names)."""
    rename = rename or {}
    out: dict[str, int] = defaultdict(int)
    for name, p in model.named_parameters():
        top = name.split(".")[0]
        out[rename.get(top, top)] += p.numel()
    return dict(out)


def meta_gpt(cfg: TrainConfig) -> GPT:
    with torch.device("meta"):
        return GPT(cfg.model)
