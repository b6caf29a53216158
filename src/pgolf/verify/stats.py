"""Significance statistics for record claims (rules.md §8): one-sided Welch t-tests in nats and bpb.

A new record must beat the reference by a margin delta with a small p-value. With per-seed values
on both sides: Delta = mean_ref - mean_new (positive is better), SE = sqrt(s_new^2/n_new + s_ref^2/n_ref),
t = (Delta - delta) / SE, Welch-Satterthwaite df, one-sided p = P(T_df > t). The margin is 0.005 nats
(val_loss); in bpb it is 0.005 / (ln 2 * bytes_per_token). With a single reference number the test
is one-sample against mean_ref - delta.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

LN2 = math.log(2.0)
RECORD_MARGIN_NATS = 0.005


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10_000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c if abs(1.0 + aa / c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c if abs(1.0 + aa / c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta I_x(a, b) for a, b > 0 and 0 <= x <= 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def t_sf(t: float, df: float) -> float:
    """Survival function P(T > t) of Student's t with `df` degrees of freedom (df may be fractional)."""
    if math.isinf(t):
        return 0.0 if t > 0 else 1.0
    if df <= 0 or math.isnan(t):
        return math.nan
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))
    return tail if t > 0 else 1.0 - tail


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof = 1; 0 for a single value)."""
    n = len(values)
    mean = math.fsum(values) / n
    if n < 2:
        return mean, 0.0
    return mean, math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))


@dataclass(frozen=True)
class TestResult:
    """One one-sided test that `new` beats `ref` by more than `margin` (lower is better)."""

    unit: str  # "nats" or "bpb"
    n_new: int
    n_ref: int
    mean_new: float
    mean_ref: float
    std_new: float
    std_ref: float
    delta: float  # mean_ref - mean_new (positive: new is better)
    margin: float
    t: float
    df: float
    p: float
    alpha: float
    kind: str  # "welch" or "one-sample"

    @property
    def passed(self) -> bool:
        return self.p < self.alpha

    def to_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed}


def welch_test(new: Sequence[float], ref: Sequence[float], margin: float, alpha: float = 0.01,
               unit: str = "nats") -> TestResult:
    """One-sided test of mean(ref) - mean(new) > margin; one-sample when `ref` has a single value."""
    if len(new) < 2:
        raise ValueError("need at least 2 values on the new side for a t-test")
    m_new, s_new = mean_std(new)
    m_ref, s_ref = mean_std(ref)
    delta = m_ref - m_new
    if len(ref) >= 2:
        v_new, v_ref = s_new**2 / len(new), s_ref**2 / len(ref)
        se = math.sqrt(v_new + v_ref)
        denom = (v_new**2 / (len(new) - 1) if v_new else 0.0) + (v_ref**2 / (len(ref) - 1) if v_ref else 0.0)
        df = (se**4 / denom) if denom > 0 else float(len(new) + len(ref) - 2)
        kind = "welch"
    else:
        se = s_new / math.sqrt(len(new))
        df = float(len(new) - 1)
        kind = "one-sample"
    if se == 0:
        t = math.inf if delta > margin else (-math.inf if delta < margin else 0.0)
        p = 0.0 if delta > margin else 1.0
    else:
        t = (delta - margin) / se
        p = t_sf(t, df)
    return TestResult(unit, len(new), len(ref), m_new, m_ref, s_new, s_ref, delta, margin, t, df, p, alpha, kind)


def margin_bpb(margin_nats: float, bytes_per_token: float) -> float:
    """The nats margin converted to bpb for a tokenizer with `bytes_per_token` (Δnats = Δbpb·ln2·r)."""
    return margin_nats / (LN2 * bytes_per_token)
