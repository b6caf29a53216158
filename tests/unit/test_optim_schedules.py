"""Schedules on fake clocks: warm-down (iterations, wall clock, fraction), momentum, switches, SWA."""

import pytest

from pgolf.optim.schedules import lr_multiplier, muon_momentum, swa_collects, switched_on, training_progress


def _baseline_iter_rule(step, iterations, warmdown):
    """The challenge script's lr_mul without a wall-clock cap, re-stated."""
    start = max(iterations - warmdown, 0)
    return max((iterations - step) / warmdown, 0.0) if start <= step < iterations else 1.0


def test_iteration_warmdown_is_the_baselines():
    for step in range(100):  # the steps a 100-iteration run takes
        got = lr_multiplier(step, 0.0, iterations=100, max_seconds=0, warmdown_iters=30)
        assert got == pytest.approx(_baseline_iter_rule(step, 100, 30))
    assert lr_multiplier(5, 0.0, iterations=100, max_seconds=0, warmdown_iters=0) == 1.0


def test_wallclock_warmdown_reaches_zero_at_the_cap():
    """Fake clock: 0.1 s per step, cap 60 s, window 100 steps = 10 s -> decay over the last 10 s."""
    cap, dt = 60.0, 0.1
    mults = []
    for step in range(600):
        mults.append(lr_multiplier(step, step * dt, iterations=20_000, max_seconds=cap, warmdown_iters=100))
    assert all(m == 1.0 for m in mults[:499])  # 50 s elapsed: 10 s remain = the window
    assert mults[550] == pytest.approx(0.5, abs=1e-9)
    assert mults[599] == pytest.approx(0.01, abs=1e-9)
    assert all(a >= b for a, b in zip(mults, mults[1:]))
    # The iteration budget still decays a run that ends before its cap.
    assert lr_multiplier(95, 1.0, iterations=100, max_seconds=600, warmdown_iters=10) == pytest.approx(0.5)


def test_fraction_warmdown_and_floor():
    kw = dict(iterations=1000, max_seconds=0, warmdown_iters=1200, warmdown_frac=0.5)
    assert lr_multiplier(400, 0.0, **kw) == 1.0  # warmdown_frac replaces warmdown_iters
    assert lr_multiplier(750, 0.0, **kw) == pytest.approx(0.5)
    assert lr_multiplier(1000, 0.0, **kw) == 0.0
    assert lr_multiplier(1000, 0.0, min_lr_frac=0.1, **kw) == pytest.approx(0.1)
    # wall clock: p = elapsed / cap when it is ahead of the step count
    assert lr_multiplier(10, 45.0, iterations=1000, max_seconds=60, warmdown_iters=0, warmdown_frac=0.5) == \
        pytest.approx(0.5)


def test_progress_is_the_larger_budget_fraction():
    assert training_progress(50, 0.0, 100, 0) == 0.5
    assert training_progress(10, 30.0, 100, 60.0) == 0.5
    assert training_progress(200, 0.0, 100, 0) == 1.0


def test_muon_momentum_warmup():
    assert muon_momentum(0, 0.95, 0.85, 500) == pytest.approx(0.85)
    assert muon_momentum(250, 0.95, 0.85, 500) == pytest.approx(0.90)
    assert muon_momentum(10_000, 0.95, 0.85, 500) == 0.95
    assert muon_momentum(0, 0.99, 0.92, 0) == 0.99


def test_switches_and_swa_fire_when_they_should():
    assert not switched_on(-1.0, 1.0)  # off
    assert switched_on(0.0, 0.0)  # the whole run
    assert [switched_on(0.5, p / 10) for p in range(10)] == [False] * 5 + [True] * 5
    # SWA: every 50 steps once the lr multiplier is below 0.4 (PR #180)
    fired = [s for s in range(1, 1001)
             if swa_collects(s, lr_multiplier(s - 1, 0.0, iterations=1000, max_seconds=0, warmdown_iters=500), 50, 0.4)]
    assert fired == [850, 900, 950, 1000]
    assert not swa_collects(900, 0.1, 0, 0.4)  # swa_every = 0: off
