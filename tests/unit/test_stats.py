"""Significance statistics against the rulebook's test vectors and textbook t-table values."""

import math

import pytest

from pgolf.verify import stats


@pytest.mark.parametrize("t, df, p", [
    (12.706, 1, 0.025), (4.303, 2, 0.025), (2.015, 5, 0.05), (2.228, 10, 0.025), (1.645, 1e9, 0.05),
    (0.0, 7, 0.5),
])
def test_t_sf_matches_t_tables(t, df, p):
    assert stats.t_sf(t, df) == pytest.approx(p, abs=2e-4)
    assert stats.t_sf(-t, df) == pytest.approx(1 - p, abs=2e-4)


def test_rulebook_vectors():
    # rules.md §8: t = 4.29, df = 6 -> one-sided p = 0.0026; margins at 2.436 / 3.727 / 3.157 bytes per token.
    assert stats.t_sf(4.29, 6) == pytest.approx(0.0026, abs=5e-5)
    assert stats.margin_bpb(0.005, 2.436) == pytest.approx(0.00296, abs=5e-6)
    assert stats.margin_bpb(0.005, 3.727) == pytest.approx(0.00194, abs=5e-6)
    assert stats.margin_bpb(0.005, 3.157) == pytest.approx(0.00228, abs=5e-6)


def test_betainc_symmetry_and_known_value():
    assert stats.betainc(2, 3, 0.4) == pytest.approx(0.5248, abs=1e-4)
    assert stats.betainc(2, 3, 0.4) == pytest.approx(1 - stats.betainc(3, 2, 0.6), abs=1e-12)


def test_welch_by_hand():
    new, ref = [1.00, 1.02, 1.01], [1.05, 1.06, 1.04]
    r = stats.welch_test(new, ref, margin=0.0, alpha=0.01)
    se = math.sqrt(0.01**2 / 3 + 0.01**2 / 3)
    assert r.delta == pytest.approx(0.04) and r.t == pytest.approx(0.04 / se)
    assert r.df == pytest.approx(4.0)  # equal variances and sizes: df = n1 + n2 - 2
    assert r.kind == "welch" and r.passed and r.p < 0.01
    worse = stats.welch_test(ref, new, margin=0.0)
    assert worse.p > 0.99 and not worse.passed


def test_margin_and_edge_cases():
    # Three seeds 0.003 nats better with std 0.0005 both sides: fails the 0.005 README test.
    new = [2.0, 2.0005, 1.9995]
    ref = [x + 0.003 for x in new]
    assert not stats.welch_test(new, ref, margin=0.005).passed
    assert stats.welch_test(new, ref, margin=0.0, alpha=0.25).passed
    # Zero spread: decided by the sign of delta - margin.
    assert stats.welch_test([1.0, 1.0], [2.0, 2.0], margin=0.5).p == 0.0
    assert stats.welch_test([1.0, 1.0], [1.2, 1.2], margin=0.5).p == 1.0
    # A single reference number: one-sample test against it.
    one = stats.welch_test([1.0, 1.01, 0.99], [1.1], margin=0.005)
    assert one.kind == "one-sample" and one.df == 2
    with pytest.raises(ValueError):
        stats.welch_test([1.0], [1.1, 1.2], margin=0.0)
