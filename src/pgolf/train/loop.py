"""The training loop (pure: a model, a token stream and a config in; a result and events out).

It re-states the baseline's loop (techniques.md §3.5) with the later records' switches:

- compile warm-up: `warmup_steps` real steps, then weights, optimizer states and the data stream are
  reset; outside the clock. When QAT or recurrence will switch on later, the last third of the
  warm-up runs with them on, so a compiled model has both graphs before the clock starts;
- the clock counts training steps only: periodic validation is excluded, as in the challenge. The
  run stops after the first step that reaches `max_seconds` (all ranks agree), or at `iterations`;
- before each step: lr multiplier (wall-clock-aware warm-down), Muon momentum warm-up, late QAT (from
  its start fraction, or once the lr multiplier falls below `qat_start_lr_mult`) and depth
  recurrence from their start fractions; after it: EMA update (from `ema_start_step`; restarted when
  QAT starts under `ema_restart_at_qat`), SWA snapshot (of the EMA weights when both are on),
  logging, validation, checkpoint;
- at the end the SWA average, else the EMA, else the final weights are loaded into the model and
  validated on the whole validation split;
- under torch.distributed the model runs under DDP, except with `optimizer = "parallel_muon"`: then
  each rank keeps its own gradients through the micro-steps and `OptimizerSet.reduce_and_step`
  reduces them (reduce-scatter for the Muon banks, all-reduce for the rest), clips by the global
  norm of the averaged gradients and steps.

The stage supplies everything that touches disk or the terminal through `Hooks`: events (dicts that
become metrics.jsonl and log.txt lines), checkpoints (a `TrainState` to serialize), and an interrupt
flag (Ctrl-C: checkpoint at the next step boundary, then stop). `clock` is injectable so tests can
drive the wall-clock logic with a fake clock.
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import nn

from pgolf.data.stream import StreamPosition, TokenBatches, TokenStream
from pgolf.optim.groups import OptimizerSet, build_optimizers
from pgolf.optim.parallel_muon import broadcast_parameters
from pgolf.optim.schedules import lr_multiplier, muon_momentum, swa_collects, switched_on, training_progress
from pgolf.runtime.device import autocast, synchronize
from pgolf.runtime.dist import SINGLE, DistInfo
from pgolf.runtime.seed import rng_state, set_rng_state
from pgolf.train.averaging import EMA, SWA
from pgolf.train.config import TrainConfig
from pgolf.train.validate import ValData, ValResult, evaluate

if TYPE_CHECKING:
    from torch.nn.parallel import DistributedDataParallel

    from pgolf.model.gpt import GPT


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C was seen; a checkpoint of the last completed step was handed to the stage first."""


@dataclass
class Runtime:
    """Where the loop runs: device, forward dtype (None = fp32), and the rank layout."""

    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    amp_dtype: torch.dtype | None = None
    dist: DistInfo = SINGLE


@dataclass
class Hooks:
    """Callbacks into the stage; all optional."""

    on_event: Callable[[dict[str, Any]], None] = lambda event: None
    on_checkpoint: Callable[[TrainState], None] | None = None
    interrupted: Callable[[], bool] = lambda: False


@dataclass
class TrainState:
    """Everything a resumed run needs to continue exactly where this one was (live tensors; the
    stage copies them to disk right away)."""

    step: int
    train_time_s: float
    model: dict[str, torch.Tensor]
    optimizers: dict[str, Any]
    stream: StreamPosition
    qat_on: bool
    ema: dict[str, torch.Tensor] | None = None
    swa: dict[str, torch.Tensor] | None = None
    swa_count: int = 0
    rng_meta: dict[str, Any] = field(default_factory=dict)
    rng_tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    last_train_loss: float | None = None
    switches: dict[str, int] = field(default_factory=dict)


@dataclass
class TrainResult:
    steps: int
    train_time_s: float
    tokens: int
    stop_reason: str  # "wallclock" | "iterations"
    final_train_loss: float | None
    weights: str  # "final" | "ema" | "swa"
    val: ValResult | None
    swa_count: int
    warmup_s: float
    val_time_s: float
    last_step_s: float
    switches: dict[str, int]  # feature -> step it switched on at

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.train_time_s if self.train_time_s > 0 else 0.0


class _LossModule(nn.Module):
    """forward(x, y) -> mean loss: the module DDP and torch.compile wrap (DDP syncs through forward)."""

    def __init__(self, model: GPT):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.model.loss(x, y)


def wrap_ddp(module: nn.Module, device: torch.device) -> nn.Module:
    """`module` under DistributedDataParallel (the process group must be initialized), without a
    buffer broadcast before every forward: buffers (GPT's `recur_active`) change only at scheduled
    steps, the same on every rank.

    torch >= 2.13 calls that `forward_sync_buffers=False` and deprecates `broadcast_buffers` with a
    FutureWarning; older torch (2.11 on the GPUs) only knows `broadcast_buffers=False`."""
    import inspect

    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [device.index] if device.type == "cuda" else None
    no_sync_kw = "forward_sync_buffers" if "forward_sync_buffers" in inspect.signature(DDP).parameters \
        else "broadcast_buffers"
    flags: dict[str, Any] = {no_sync_kw: False}
    return DDP(module, device_ids=ids, **flags)


class _Trainer:
    """One training run; `run()` is the loop. Split into methods so each phase reads on its own."""

    def __init__(self, model: GPT, cfg: TrainConfig, batches: TokenBatches, rt: Runtime, val: ValData | None,
                 hooks: Hooks, clock: Callable[[], float]):
        self.model, self.cfg, self.batches, self.rt, self.val, self.hooks, self.clock = (
            model, cfg, batches, rt, val, hooks, clock)
        self.accum = cfg.grad_accum(rt.dist.world_size)
        self.opts: OptimizerSet = build_optimizers(model, cfg.optim_settings(), cfg.model.tie_embeddings,
                                                   decoder_from=cfg.model.num_layers // 2)
        # Parallel Muon under torch.distributed: no DDP; gradients are reduced by the optimizers' step.
        self.ddp = rt.dist.distributed and cfg.optimizer != "parallel_muon"
        if rt.dist.distributed and not self.ddp:
            broadcast_parameters(model)  # every rank starts from rank 0's weights, as DDP's wrapping ensures
        self.runner = self._make_runner(cfg.compile)
        self.qat_bits = cfg.qat_bits.as_mapping()
        self.qat_on = False
        self.has_recurrence = bool(cfg.model.recur_layers)
        self.ema: EMA | None = None
        self.swa: SWA | None = None
        self.step = 0
        self.train_time_s = 0.0
        self.val_time_s = 0.0
        self.last_loss: float | None = None
        self.switches: dict[str, int] = {}

    def _make_runner(self, compiled: bool) -> nn.Module:
        runner: nn.Module = _LossModule(self.model)
        if compiled:
            runner = torch.compile(runner, dynamic=False)  # type: ignore[assignment]  # a Module compiles to a Module
        if self.ddp:
            runner = wrap_ddp(runner, self.rt.device)
        return runner

    def _first_compiled_step(self) -> None:
        """The first warm-up step, where torch.compile builds its graph. A machine that cannot compile
        (no C++ compiler for the CPU backend, an unsupported op) trains eagerly instead of failing: the
        failure happens before any weight changes, and the warm-up is reset anyway."""
        try:
            self._train_step(1.0)
        except Exception as exc:  # dynamo / inductor raise many types; any of them means "no graph here"
            if not type(exc).__module__.startswith("torch"):
                raise
            self.runner = self._make_runner(False)
            self.opts.zero_grad()
            first_line = (str(exc).strip().splitlines() or [""])[0][:200]
            self.hooks.on_event({"event": "warning", "step": 0,
                                 "message": f"torch.compile failed on this machine ({type(exc).__name__}: "
                                            f"{first_line}); training eagerly"})
            self._train_step(1.0)

    # ------------------------------------------------------------------------- one step

    def _train_step(self, lr_mult: float) -> torch.Tensor:
        """Forward/backward over the micro-steps, clip, optimizer step. Returns the mean loss (a tensor)."""
        cfg, rt = self.cfg, self.rt
        self.opts.set_lr_multiplier(lr_mult)
        self.opts.set_muon_momentum(muon_momentum(self.step, cfg.muon_momentum, cfg.muon_momentum_warmup_start,
                                                  cfg.muon_momentum_warmup_steps))
        self.opts.zero_grad()
        total = torch.zeros((), device=rt.device)
        for micro in range(self.accum):
            x_np, y_np = self.batches.next_batch(cfg.batch_tokens, cfg.seq_len, self.accum)
            x = torch.from_numpy(x_np).to(rt.device, non_blocking=True)
            y = torch.from_numpy(y_np).to(rt.device, non_blocking=True)
            sync_now = micro == self.accum - 1
            ctx = (cast("DistributedDataParallel", self.runner).no_sync() if (self.ddp and not sync_now)
                   else contextlib.nullcontext())
            with ctx:
                with autocast(rt.device, rt.amp_dtype):
                    loss = self.runner(x, y)
                (loss * (1.0 / self.accum)).backward()
            total += loss.detach()
        if rt.dist.distributed and not self.ddp:
            self.opts.reduce_and_step(cfg.grad_clip)  # reduce, clip by the global norm, step
        else:
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
            self.opts.step()
        self.opts.zero_grad()
        return total / self.accum

    # ------------------------------------------------------------------------- phases

    def warm_up(self) -> float:
        """Compile warm-up steps whose effects are reset (outside the clock). Returns seconds spent."""
        n = self.cfg.warmup_steps
        if n <= 0:
            return 0.0
        t0 = time.perf_counter()
        init_model = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        init_opts = copy.deepcopy(self.opts.state_dict())
        start = self.batches.stream.position
        later = n - max(1, n // 3)  # the last third primes the QAT / recurrence graphs
        for i in range(n):
            if i == later:
                if self.cfg.qat_enabled:
                    self._set_qat(True)
                if self.has_recurrence and self.cfg.recur_start_frac >= 0:
                    self.model.set_recurrence(True)
            if i == 0 and self.cfg.compile:
                self._first_compiled_step()
            else:
                self._train_step(1.0)
            self.hooks.on_event({"event": "warmup", "step": i + 1, "steps": n})
        self.model.load_state_dict(init_model)  # also restores the recurrence flag (a buffer)
        self._set_qat(False)
        self.opts.load_state_dict(init_opts)
        self.batches.stream = TokenStream(self.batches.stream.shards, start)
        synchronize(self.rt.device)
        return time.perf_counter() - t0

    def restore(self, state: TrainState) -> None:
        """Continue from a checkpoint (after the warm-up, which it overrides)."""
        self.model.load_state_dict(state.model)
        self.opts.load_state_dict(state.optimizers)
        self.batches.stream = TokenStream(self.batches.stream.shards, state.stream)
        self.step, self.train_time_s, self.last_loss = state.step, state.train_time_s, state.last_train_loss
        self.switches = dict(state.switches)
        if state.qat_on:
            self._set_qat(True)
        if self.cfg.ema_decay > 0 and state.ema is not None:
            if self.ema is None:  # saved after a later EMA start than this run has reached
                self.ema = EMA(self.model, self.cfg.ema_decay)
            self.ema.load_state_dict(state.ema)
        elif state.ema is None and self.cfg.ema_start_step > 0:
            self.ema = None  # saved before the EMA started
        if self.swa is not None and state.swa is not None:
            self.swa.load_state_dict(state.swa, state.swa_count)
        if state.rng_meta:
            set_rng_state(state.rng_meta, state.rng_tensors)

    def capture(self) -> TrainState:
        meta, tensors = rng_state()
        return TrainState(
            step=self.step, train_time_s=self.train_time_s, model=self.model.state_dict(),
            optimizers=self.opts.state_dict(), stream=self.batches.stream.position, qat_on=self.qat_on,
            ema=self.ema.state_dict() if self.ema else None, swa=self.swa.state_dict() if self.swa else None,
            swa_count=self.swa.count if self.swa else 0, rng_meta=meta, rng_tensors=tensors,
            last_train_loss=self.last_loss, switches=dict(self.switches))

    def _set_qat(self, on: bool) -> None:
        if on and self.cfg.qat_scale_floor > 0:
            self.model.set_qat(self.qat_bits, self.cfg.qat_scale_floor)
        else:  # the one-argument form: any model with set_qat(bits) trains without a floor
            self.model.set_qat(self.qat_bits if on else None)
        self.qat_on = on

    def _apply_switches(self, progress: float, lr_mult: float) -> None:
        cfg = self.cfg
        qat_now = switched_on(cfg.qat_start_frac, progress) or lr_mult < cfg.qat_start_lr_mult
        if not self.qat_on and qat_now:
            self._set_qat(True)
            self.switches["qat"] = self.step
            if cfg.ema_restart_at_qat and self.ema is not None:
                self.ema = None  # restarts after this step from the QAT weights (PR #1216)
            self.hooks.on_event({"event": "qat", "step": self.step, "bits": self.qat_bits, "progress": progress})
        if (self.has_recurrence and not getattr(self.model, "recurrence_active", False)
                and switched_on(cfg.recur_start_frac, progress)):
            self.model.set_recurrence(True)
            self.switches["recurrence"] = self.step
            self.hooks.on_event({"event": "recurrence", "step": self.step, "progress": progress})

    def _update_ema(self) -> None:
        """After step `self.step`: average into the EMA, or start it as a copy once the step has come
        (`ema_start_step`, PR #366; or the step QAT restarted it at, PR #1216)."""
        if self.cfg.ema_decay <= 0:
            return
        if self.ema is not None:
            self.ema.update(self.model)
        elif self.step >= self.cfg.ema_start_step:
            self.ema = EMA(self.model, self.cfg.ema_decay)

    def _validate(self, max_tokens: int, label: str) -> ValResult:
        cfg, rt = self.cfg, self.rt
        assert self.val is not None  # the callers validate only with validation data
        result = evaluate(self.model, self.val, cfg.seq_len, cfg.val_batch_tokens, rt.device, rt.amp_dtype,
                          max_tokens=max_tokens, rank=rt.dist.rank, world_size=rt.dist.world_size)
        self.val_time_s += result.seconds
        self.hooks.on_event({"event": "val", "step": self.step, "iterations": cfg.iterations, "val_loss": result.loss,
                             "val_bpb": result.bpb, "val_tokens": result.tokens, "val_bytes": result.bytes,
                             "elapsed_ms": 1000 * self.train_time_s, "val_time_ms": 1000 * result.seconds,
                             "weights": label})
        return result

    def _all_ranks_flag(self, *flags: bool) -> list[bool]:
        """MAX over ranks of each flag (every rank must stop at the same step)."""
        if not self.rt.dist.distributed:
            return list(flags)
        import torch.distributed as dist

        t = torch.tensor([int(f) for f in flags], device=self.rt.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return [bool(v) for v in t.tolist()]

    def _mean_over_ranks(self, value: torch.Tensor) -> float:
        if self.rt.dist.distributed:
            import torch.distributed as dist

            value = value.clone()
            dist.all_reduce(value, op=dist.ReduceOp.SUM)
            value /= self.rt.dist.world_size
        return float(value.item())

    # ------------------------------------------------------------------------- the loop

    def run(self, resume: TrainState | None) -> TrainResult:
        cfg, rt, clock = self.cfg, self.rt, self.clock
        self.model.train()
        warmup_s = self.warm_up()
        if cfg.ema_decay > 0 and cfg.ema_start_step == 0:
            self.ema = EMA(self.model, cfg.ema_decay)
        if cfg.swa_every > 0:
            self.swa = SWA(self.model)
        if resume is not None:
            self.restore(resume)
            self.hooks.on_event({"event": "resume", "step": self.step, "elapsed_ms": 1000 * self.train_time_s})
        if self.val is not None and cfg.val_every > 0 and self.step == 0:
            self._validate(cfg.val_tokens, "live")

        stop_reason = "iterations"
        ckpt_every = cfg.checkpoint_every_s
        last_ckpt = time.monotonic()
        last_step_s = 0.0
        synchronize(rt.device)
        t0 = clock()
        while self.step < cfg.iterations:
            elapsed = self.train_time_s + (clock() - t0)
            mult = lr_multiplier(self.step, elapsed, iterations=cfg.iterations, max_seconds=cfg.max_seconds,
                                 warmdown_iters=cfg.warmdown_iters, warmdown_frac=cfg.warmdown_frac,
                                 min_lr_frac=cfg.min_lr_frac)
            self._apply_switches(training_progress(self.step, elapsed, cfg.iterations, cfg.max_seconds), mult)
            step_start = clock()
            loss = self._train_step(mult)
            self.step += 1
            self._update_ema()
            now = clock()
            last_step_s = now - step_start
            elapsed = self.train_time_s + (now - t0)
            if self.swa is not None and swa_collects(self.step, mult, cfg.swa_every, cfg.swa_start_frac):
                if self.swa.count == 0:
                    self.hooks.on_event({"event": "swa_start", "step": self.step, "lr_mult": mult})
                self.swa.add(self.ema.averaged_state(self.model) if self.ema is not None else self.model.state_dict())

            # All ranks agree on the checkpoint time too: capturing ParallelMuon's state is a collective.
            reached_cap, interrupted, ckpt_time = self._all_ranks_flag(
                cfg.max_seconds > 0 and elapsed >= cfg.max_seconds, self.hooks.interrupted(),
                ckpt_every > 0 and time.monotonic() - last_ckpt >= ckpt_every)
            last = reached_cap or self.step >= cfg.iterations
            if self.step <= 10 or last or interrupted or (cfg.log_every > 0 and self.step % cfg.log_every == 0):
                self.last_loss = self._mean_over_ranks(loss)
                self.hooks.on_event({
                    "event": "step", "step": self.step, "iterations": cfg.iterations, "train_loss": self.last_loss,
                    "lr_mult": mult, "lrs": {k: o.param_groups[0]["lr"] for k, o in self.opts.optimizers.items()},
                    "muon_momentum": self.opts.muon.param_groups[0]["momentum"] if self.opts.muon else None,
                    "elapsed_ms": 1000 * elapsed, "step_avg_ms": 1000 * elapsed / self.step,
                    "tokens": self.step * cfg.batch_tokens,
                    "tokens_per_s": self.step * cfg.batch_tokens / elapsed if elapsed > 0 else 0.0})
            elif last:
                self.last_loss = self._mean_over_ranks(loss)
            if reached_cap:
                stop_reason = "wallclock"

            periodic_val = self.val is not None and cfg.val_every > 0 and self.step % cfg.val_every == 0 and not last
            checkpoint_due = self.hooks.on_checkpoint is not None and not last and (interrupted or ckpt_time)
            if periodic_val or checkpoint_due or last or interrupted:
                synchronize(rt.device)
                self.train_time_s += clock() - t0  # the clock pauses here
                if periodic_val:
                    self._validate(cfg.val_tokens, "live")
                if checkpoint_due and self.hooks.on_checkpoint is not None:  # (checkpoint_due implies it)
                    ckpt_t0 = clock()
                    self.hooks.on_checkpoint(self.capture())
                    self.hooks.on_event({"event": "checkpoint", "step": self.step, "elapsed_ms": 1000 * self.train_time_s})
                    self.train_time_s += clock() - ckpt_t0  # a checkpoint is not free: it counts
                    last_ckpt = time.monotonic()
                if interrupted and not last:  # an interrupt at the very end just lets the run finish
                    raise TrainingInterrupted(f"interrupted after step {self.step}")
                t0 = clock()
            if reached_cap:
                self.hooks.on_event({"event": "stop", "reason": "wallclock", "step": self.step,
                                     "elapsed_ms": 1000 * self.train_time_s})
                break
        return self.finish(stop_reason, warmup_s, last_step_s)

    def finish(self, stop_reason: str, warmup_s: float, last_step_s: float) -> TrainResult:
        weights, state = "final", None
        if self.swa is not None and self.swa.count > 0:
            weights, state = "swa", self.swa.averaged_state(self.model)
        elif self.ema is not None:
            weights, state = "ema", self.ema.averaged_state(self.model)
        if self.swa is not None and self.swa.count == 0:
            self.hooks.on_event({"event": "warning", "step": self.step,
                                 "message": "SWA took no snapshot (the lr multiplier never fell below swa_start_frac "
                                            f"at a multiple of swa_every); saving the {weights} weights"})
        if state is not None:
            self.model.load_state_dict(state)
        val = self._validate(0, weights) if self.val is not None else None
        return TrainResult(steps=self.step, train_time_s=self.train_time_s, tokens=self.step * self.cfg.batch_tokens,
                           stop_reason=stop_reason, final_train_loss=self.last_loss, weights=weights, val=val,
                           swa_count=self.swa.count if self.swa else 0, warmup_s=warmup_s, val_time_s=self.val_time_s,
                           last_step_s=last_step_s, switches=dict(self.switches))


def train(model: GPT, cfg: TrainConfig, batches: TokenBatches, rt: Runtime | None = None,
          val: ValData | None = None, hooks: Hooks | None = None, resume: TrainState | None = None,
          clock: Callable[[], float] = time.perf_counter) -> TrainResult:
    """Train `model` (already on `rt.device`) in place; on return it holds the weights to save.

    `model` needs `loss(x, y)`, `token_nll(x, y)` (validation), `set_qat(bits | None)` and, when
    `cfg.model.recur_layers` is set, `set_recurrence(bool)` / `recurrence_active`.
    """
    rt = rt or Runtime()
    trainer = _Trainer(model, cfg, batches, rt, val, hooks or Hooks(), clock)
    return trainer.run(resume)


def log_line(event: dict[str, Any]) -> str | None:
    """The challenge-style log.txt line of an event (None for events the log does not show)."""
    kind = event.get("event")
    if kind == "step":
        return (f"step:{event['step']}/{event['iterations']} train_loss:{event['train_loss']:.4f} "
                f"train_time:{event['elapsed_ms']:.0f}ms step_avg:{event['step_avg_ms']:.2f}ms")
    if kind == "val":
        bpb = f"{event['val_bpb']:.4f}" if event.get("val_bpb") is not None else "n/a"
        step_avg = event["elapsed_ms"] / max(event["step"], 1)
        prefix = "final " if event.get("weights") != "live" else ""
        suffix = f" weights:{event['weights']}" if prefix else ""
        return (f"{prefix}step:{event['step']}/{event['iterations']} val_loss:{event['val_loss']:.4f} val_bpb:{bpb} "
                f"train_time:{event['elapsed_ms']:.0f}ms step_avg:{step_avg:.2f}ms{suffix}")
    if kind == "warmup":
        return f"warmup_step:{event['step']}/{event['steps']}"
    if kind == "stop":
        return f"stopping_early: wallclock_cap train_time:{event['elapsed_ms']:.0f}ms step:{event['step']}"
    if kind == "qat":
        bits = ",".join(f"{k}:{v}" for k, v in event["bits"].items())
        return f"late_qat:enabled step:{event['step']} bits:{bits}"
    if kind == "recurrence":
        return f"recurrence:enabled step:{event['step']}"
    if kind == "swa_start":
        return f"swa:start step:{event['step']}"
    if kind == "checkpoint":
        return f"checkpoint step:{event['step']} train_time:{event['elapsed_ms']:.0f}ms"
    if kind == "resume":
        return f"resume step:{event['step']} train_time:{event['elapsed_ms']:.0f}ms"
    if kind == "warning":
        return f"warning: {event['message']}"
    return None


