"""Schedules as plain functions of (step, elapsed training seconds): learning-rate multiplier, Muon
momentum, training progress. Pure and clock-free, so tests drive them with fake clocks.

Learning rate (every group: lr = base_lr * multiplier; there is no lr warm-up, techniques.md §3.5):
- `warmdown_iters` (the baseline): a linear decay to 0 over the last `warmdown_iters` steps. With a
  wall-clock cap the window is measured in time, `warmdown_iters * (elapsed / step)`, so the decay
  ends exactly at the cap; when both a cap and an iteration count are set, whichever budget ends
  first drives the decay (the baseline on 8xH100 never reaches its 20,000 iterations, so this is its
  rule there, and short iteration-bound runs still decay).
- `warmdown_frac` (SP8K, PR #1394): progress p = max(step / iterations, elapsed / cap); the
  multiplier is (1 - p) / warmdown_frac once p >= 1 - warmdown_frac. It replaces warmdown_iters.
- `min_lr_frac` floors the multiplier (0 in the baseline; 0.1 in later records).
"""

from __future__ import annotations


def training_progress(step: int, elapsed_s: float, iterations: int, max_seconds: float) -> float:
    """Fraction of the training budget used, in [0, 1]: the larger of the step and time fractions."""
    p = step / iterations if iterations > 0 else 0.0
    if max_seconds > 0:
        p = max(p, elapsed_s / max_seconds)
    return min(max(p, 0.0), 1.0)


def lr_multiplier(step: int, elapsed_s: float, *, iterations: int, max_seconds: float, warmdown_iters: int,
                  warmdown_frac: float = 0.0, min_lr_frac: float = 0.0) -> float:
    """The lr multiplier before optimizer step `step` (steps done so far), after `elapsed_s` of training."""
    if warmdown_frac > 0:
        p = training_progress(step, elapsed_s, iterations, max_seconds)
        mult = (1.0 - p) / warmdown_frac if p >= 1.0 - warmdown_frac else 1.0
    elif warmdown_iters > 0:
        mult = 1.0
        if iterations > 0 and step >= iterations - warmdown_iters:
            mult = max(iterations - step, 0) / warmdown_iters
        if max_seconds > 0:
            step_s = elapsed_s / max(step, 1)
            window_s = warmdown_iters * step_s
            remaining_s = max(max_seconds - elapsed_s, 0.0)
            if remaining_s <= window_s:
                mult = min(mult, remaining_s / max(window_s, 1e-12))
    else:
        mult = 1.0
    return max(mult, min_lr_frac)


def muon_momentum(step: int, target: float, start: float, warmup_steps: int) -> float:
    """Linear Muon momentum warm-up from `start` to `target` over `warmup_steps` steps (baseline: 0.85 -> 0.95 over 500)."""
    if warmup_steps <= 0:
        return target
    frac = min(step / warmup_steps, 1.0)
    return (1.0 - frac) * start + frac * target


def switched_on(start_frac: float, progress: float) -> bool:
    """Whether a feature that starts at `start_frac` of training (negative: never) is on at `progress`."""
    return start_frac >= 0 and progress >= start_frac


def swa_collects(step: int, lr_mult: float, every: int, start_frac: float) -> bool:
    """SWA snapshot after step `step` (1-based count of steps done)? Every `every` steps once the lr
    multiplier has fallen below `start_frac`, i.e. in the warm-down (PR #162 / #180 semantics)."""
    return every > 0 and lr_mult < start_frac and step % every == 0
