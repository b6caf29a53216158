"""Calibration for GPTQ: Hessians H = E[x x^T] of layer inputs, and self-generated tokens (pure).

The caller supplies the token batches (training tokens inside the training budget, or the output of
`generate_calibration`); nothing here reads data. Validation tokens must never be used (rules DATA-7).

The last section is GPTQ calibration of a pgolf GPT as `pgolf quantize` runs it, shared with the
submission file's own quantization (`pgolf.pack.reproduce`) so both give the same Hessians: which
weights are calibrated (`calibration_targets`), which tokens (`stream_calibration_tokens`,
`self_calibration_tokens`) and how they are fed (`calibration_hessians`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
from torch import nn

from pgolf.data.stream import TokenStream
from pgolf.errors import ConfigError, DataError
from pgolf.eval.scoring import autocast_for
from pgolf.model.params import param_class
from pgolf.quant.config import QuantizeConfig
from pgolf.quant.schemes import count_blocks, plan_tensor

if TYPE_CHECKING:
    from pgolf.model.gpt import GPT

Where = Literal["input", "output"]
CALIB_BATCH_TOKENS = 32_768  # tokens per calibration forward pass (sequences per batch = this // seq_len)


class HessianCollector:
    """Accumulates x^T x over the inputs of a model's `nn.Linear` layers while the caller runs forwards.

    ```
    with HessianCollector(model) as hc:
        for idx_BT in batches:
            model(idx_BT)
            hc.add("tok_emb.weight", model.hidden(idx_BT))  # optional: a tied head's input
    hessians = hc.hessians()   # {"blocks.0.attn.c_q.weight": H [in, in] fp32, ...}
    ```

    Keys are weight names (`<module>.weight`, so pass the unwrapped model, not a torch.compile or
    DDP wrapper). q/k/v see the same attention input and the MLP output projection sees the
    post-activation hidden, simply because that is what their forward receives; a layer called
    several times per forward (depth recurrence) adds one x^T x per call. `names` limits collection
    to those weights. A weight that is not an `nn.Linear` (a tied embedding used as the output head,
    SP8K #1394) is fed by hand with `add`, or through `extra`, which maps it to a module whose input
    or output it reads: `extra={"tok_emb.weight": ("final_norm", "output")}`.
    H is the mean over calibration rows (tokens), fp32, on the activations' device.
    """

    def __init__(
        self,
        model: nn.Module,
        names: Iterable[str] | None = None,
        extra: Mapping[str, tuple[str, Where]] | None = None,
    ):
        modules = dict(model.named_modules())
        targets: dict[str, tuple[nn.Module, Where]] = {
            f"{mod_name}.weight": (mod, "input")
            for mod_name, mod in modules.items()
            if isinstance(mod, nn.Linear) and mod_name
        }
        for weight, (mod_name, where) in (extra or {}).items():
            if mod_name not in modules:
                raise ConfigError(f"calibration module '{mod_name}' (for '{weight}') is not in the model")
            if where not in ("input", "output"):
                raise ConfigError(f"calibration hook for '{weight}' must be 'input' or 'output', got {where!r}")
            targets[weight] = (modules[mod_name], where)
        if names is not None:
            wanted = list(names)
            missing = [n for n in wanted if n not in targets]
            if missing:
                raise ConfigError(
                    f"no calibration hook for {', '.join(missing)}",
                    "only nn.Linear weights (or those named in `extra`) can be calibrated",
                )
            targets = {n: targets[n] for n in wanted}
        self._targets = targets
        self._sums: dict[str, torch.Tensor] = {}
        self._rows: dict[str, int] = {}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._last: tuple[torch.Tensor, torch.Tensor] | None = None  # (x, x^T x): q/k/v reuse one product

    def _hook(self, weight: str, where: Where):
        def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
            x = args[0] if where == "input" else output
            if self._last is not None and self._last[0] is x:
                xtx = self._last[1]
            else:
                x2 = x.detach().reshape(-1, x.shape[-1]).float()
                xtx = x2.T @ x2
                self._last = (x, xtx)
            self._accumulate(weight, xtx, x.numel() // x.shape[-1])

        return hook

    def _accumulate(self, weight: str, xtx: torch.Tensor, rows: int) -> None:
        if weight in self._sums:
            self._sums[weight] += xtx
        else:
            self._sums[weight] = xtx.clone()
        self._rows[weight] = self._rows.get(weight, 0) + rows

    @torch.no_grad()
    def add(self, weight: str, x: torch.Tensor) -> None:
        """Accumulate inputs `x` [..., in] of `weight` by hand, for inputs no module hook sees
        (e.g. the final normed hidden state that a tied embedding reads as the output head)."""
        x2 = x.detach().reshape(-1, x.shape[-1]).float()
        self._accumulate(weight, x2.T @ x2, x2.shape[0])

    def __enter__(self) -> HessianCollector:
        for weight, (mod, where) in self._targets.items():
            self._handles.append(mod.register_forward_hook(self._hook(weight, where)))
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._last = None

    @property
    def num_rows(self) -> dict[str, int]:
        """Calibration rows (tokens, times calls per forward) seen by each weight."""
        return dict(self._rows)

    def hessians(self) -> dict[str, torch.Tensor]:
        """{weight name: mean x x^T, fp32 [in, in]} for every weight whose layer ran at least once."""
        return {n: s / self._rows[n] for n, s in self._sums.items()}


@torch.no_grad()
def collect_hessians(
    model: nn.Module,
    batches: Iterable[torch.Tensor],
    names: Iterable[str] | None = None,
    extra: Mapping[str, tuple[str, Where]] | None = None,
) -> dict[str, torch.Tensor]:
    """Run `model(idx_BT)` on each token batch [B, T] in eval mode and return the Hessians (see above)."""
    was_training = model.training
    model.eval()
    try:
        with HessianCollector(model, names, extra) as hc:
            for idx in batches:
                model(idx)
    finally:
        model.train(was_training)
    return hc.hessians()


@torch.no_grad()
def generate_calibration(
    model: nn.Module,
    num_seqs: int,
    seq_len: int,
    *,
    temperature: float = 0.8,
    seed: int = 0,
    batch_size: int = 8,
) -> torch.Tensor:
    """Self-generated calibration tokens (ARGPTQ #1019): int64 [num_seqs, seq_len] on the model's device.

    Each sequence starts from a uniformly random token and is sampled autoregressively from
    `model(idx) -> logits [B, T, V]` at `temperature`, `batch_size` sequences at a time, from a
    generator seeded with `seed` (the same model and seed give the same tokens on the same device).
    No data is read, so the tokens are legal calibration at any time.
    """
    if num_seqs < 1 or seq_len < 1 or batch_size < 1:
        raise ValueError("num_seqs, seq_len and batch_size must be >= 1")
    if temperature <= 0:
        raise ValueError("temperature must be > 0")
    device = next(model.parameters()).device
    gen = torch.Generator(device=device).manual_seed(seed)
    was_training = model.training
    model.eval()
    try:
        vocab = model(torch.zeros(1, 1, dtype=torch.long, device=device)).shape[-1]
        out = []
        for start in range(0, num_seqs, batch_size):
            b = min(batch_size, num_seqs - start)
            idx = torch.randint(0, vocab, (b, 1), generator=gen, device=device)
            for _ in range(seq_len - 1):
                logits = model(idx)[:, -1, :].float()
                probs = torch.softmax(logits / temperature, dim=-1)
                nxt = torch.multinomial(probs, 1, generator=gen)
                idx = torch.cat([idx, nxt], dim=1)
            out.append(idx)
    finally:
        model.train(was_training)
    return torch.cat(out, dim=0)


# ----------------------------------------------------------------------------- GPTQ calibration of a pgolf GPT


def head_weight(model: nn.Module) -> str:
    """The weight the output head multiplies: the tied embedding, or an untied lm_head."""
    return "tok_emb.weight" if model.lm_head is None else "lm_head.weight"


def calibration_targets(model: nn.Module, cfg: QuantizeConfig) -> tuple[list[str], dict[str, tuple[str, Where]]]:
    """(weight names GPTQ will quantize and can calibrate, extra hooks for HessianCollector).

    Every nn.Linear weight that gets an integer width, plus the head: `GPT.forward` applies the head
    weight with F.linear on the final_norm output (no module call a hook could see), so its inputs
    are read from `final_norm`'s output.
    """
    extra: dict[str, tuple[str, Where]] = {head_weight(model): ("final_norm", "output")}
    hookable = {f"{n}.weight" for n, m in model.named_modules() if isinstance(m, nn.Linear) and n} | set(extra)
    state = model.state_dict()
    blocks = count_blocks(state)
    names = [n for n, t in state.items()
             if n in hookable and t.ndim == 2 and t.is_floating_point()
             and plan_tensor(n, tuple(t.shape), t.dtype, param_class(n), cfg, blocks).is_int]
    return names, {k: v for k, v in extra.items() if k in names}


def calibration_hessians(model: GPT, tokens: torch.Tensor, names: Sequence[str],
                         extra: Mapping[str, tuple[str, Where]], device: torch.device,
                         batch_tokens: int = CALIB_BATCH_TOKENS) -> dict[str, torch.Tensor]:
    """{weight: H = mean x x^T [in, in] fp32} over calibration tokens [S, T] (int64), fed to
    `model.hidden` `batch_tokens` at a time (QuantizeConfig.calib_batch_tokens; bf16 autocast on
    CUDA, as the records calibrate; fp32 on CPU). The model is left in eval mode."""
    per_batch = max(1, batch_tokens // tokens.shape[1])
    model.eval()
    with torch.no_grad(), autocast_for(device, True), HessianCollector(model, names, extra) as hc:
        for batch in tokens.split(per_batch):
            model.hidden(batch.to(device))  # the head's input is read at final_norm: no logits needed
    return hc.hessians()


def stream_calibration_tokens(shards: Sequence[np.ndarray], num_seqs: int, seq_len: int,
                              vocab_size: int) -> torch.Tensor:
    """The first num_seqs * seq_len tokens of the training stream (the shards in order, from offset 0:
    the order training reads them) as int64 [S, T]; fewer sequences (S < num_seqs) when the shards
    hold fewer tokens. DataError when they hold less than one sequence, or ids outside the vocabulary."""
    total = sum(int(a.shape[0]) for a in shards)
    num_seqs = min(num_seqs, total // seq_len)
    if num_seqs < 1:
        raise DataError(f"the calibration shards hold {total:,} tokens, fewer than one sequence of {seq_len}",
                        "lower calib_seq_len or calibrate on more data")
    flat = TokenStream(shards).take(num_seqs * seq_len)
    if flat.max(initial=0) >= vocab_size:
        raise DataError(f"calibration token ids reach {int(flat.max())}, outside the model's vocabulary "
                        f"of {vocab_size}", "calibrate on the data the model was trained on")
    return torch.from_numpy(np.ascontiguousarray(flat.reshape(num_seqs, seq_len)))


def self_calibration_tokens(model: nn.Module, cfg: QuantizeConfig, device: torch.device) -> torch.Tensor:
    """calib = "self": cfg.calib_tokens // cfg.calib_seq_len sequences the model samples itself
    (`generate_calibration` with the config's temperature and seed, bf16 autocast on CUDA), int64 [S, T]
    on the CPU."""
    num_seqs, seq_len = cfg.calib_tokens // cfg.calib_seq_len, cfg.calib_seq_len
    with autocast_for(device, True):
        tokens = generate_calibration(model, num_seqs, seq_len, temperature=cfg.calib_temperature,
                                      seed=cfg.calib_seed, batch_size=max(1, cfg.calib_batch_tokens // seq_len))
    return tokens.cpu()
