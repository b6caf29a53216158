"""The STAT block: per-seed values, the README and progression tests in nats and bpb (rules.md §8)."""

import math

import pytest

from pgolf.verify.records import SeedRecord
from pgolf.verify.significance import describe, per_seed, significance

LN2 = math.log(2)


def records(bpbs, bpt=2.436, tokens=1_000_000):
    return [SeedRecord(f"s{i}", i, b * LN2 * bpt, b, tokens, round(tokens * bpt), 15_900_000, 30_000, 15_870_000,
                       5000, 590.0, 400.0, "ledger") for i, b in enumerate(bpbs)]


def test_per_seed_block():
    block = per_seed(records([1.10, 1.12, 1.11]))
    assert block["n"] == 3 and block["seeds"] == [0, 1, 2]
    assert block["mean_bpb"] == pytest.approx(1.11) and block["std_bpb"] == pytest.approx(0.01)
    assert block["bytes_per_token"] == pytest.approx(2.436)


def test_margin_converts_with_bytes_per_token():
    block = significance(records([1.10, 1.101, 1.099]), [1.2, 1.2, 1.2])
    assert block["margin_bpb"] == pytest.approx(0.00296, abs=1e-5)  # 0.005 nats at 2.436 bytes/token
    t = block["tests"]["readme"]
    assert t["nats"]["t"] == pytest.approx(t["bpb"]["t"], rel=1e-6)  # the same test in both units
    assert t["nats"]["p"] == pytest.approx(t["bpb"]["p"], rel=1e-6, abs=1e-12)
    assert block["verdict"] == "PASS" and block["delta_nats"] == pytest.approx(0.1 * LN2 * 2.436)


def test_three_seeds_0_003_nats_better_is_a_warn():
    margin = 0.003 / (LN2 * 2.436)
    ref = [1.2000, 1.2002, 1.1998]
    block = significance(records([x - margin for x in ref]), ref)
    assert block["verdict"] == "WARN"
    assert block["tests"]["readme"]["passed"] is False and block["tests"]["progression"]["passed"] is True
    assert "Δ +0.00300 nats" in describe(block)


def test_one_reference_value_is_a_one_sample_test():
    block = significance(records([1.10, 1.101, 1.099]), [1.2])
    assert block["kind"] == "one-sample" and block["verdict"] == "PASS"


def test_without_reference_or_with_one_seed():
    assert significance(records([1.1, 1.2]), [])["verdict"] is None
    one = significance(records([1.1]), [1.2, 1.3])
    assert one["verdict"] is None and "at least 2" in one["problem"]
