"""The score ledger: what the writer refuses, and what `check_ledger` finds in forged ledgers."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from pgolf.errors import ArtifactError, LegalityError
from pgolf.eval import ScoreLedger, check_ledger, parse_ledger
from pgolf.eval.ledger import loss_digest

P0 = "a" * 32
P1 = "b" * 32


def losses(n, seed=0):
    return np.random.default_rng(seed).random(n).astype(np.float32) * 5


def small_ledger():
    """10 positions in three chunks, one adaptation step after the first two."""
    led = ScoreLedger(10, P0, {"mode": "ttt"})
    led.commit(0, 4, losses(4, 1), np.array([1, 2, 3, 4]), P0, P0)
    led.record_step([(0, 4)], epoch=0, lr=0.01)
    led.commit(4, 8, losses(4, 2), np.array([1, 1, 1, 1]), P1, P1)
    led.record_step([(0, 4), (4, 8)], epoch=0, lr=0.005)
    led.commit(8, 10, losses(2, 3), np.array([2, 0]), "c" * 32, "c" * 32)
    led.mark("last")
    return led


def test_entries_and_metric():
    led = small_ledger()
    assert led.complete and led.committed_end == 10
    all_losses = np.concatenate([losses(4, 1), losses(4, 2), losses(2, 3)]).astype(np.float64)
    s = led.summary()
    assert s["val_tokens"] == 10 and s["val_bytes"] == 16
    assert math.isclose(s["val_loss"], all_losses.sum() / 10, rel_tol=1e-12)
    assert math.isclose(s["val_bpb"], all_losses.sum() / (math.log(2) * 16), rel_tol=1e-12)
    e = led.entries[0]
    assert e.loss_sha256 == loss_digest(losses(4, 1)) and e.byte_sum == 10 and e.count == 4
    assert e.nll_sum == math.fsum(losses(4, 1).astype(np.float64).tolist())


def test_jsonl_round_trip_and_recheck():
    led = small_ledger()
    text = led.to_jsonl()
    assert text == small_ledger().to_jsonl()  # deterministic bytes
    header, entries, summary = parse_ledger(text)
    assert header["mode"] == "ttt" and header["params_initial"] == P0
    assert [e.to_dict() for e in entries] == [e.to_dict() for e in led.entries]
    assert summary["val_bpb"] == led.summary()["val_bpb"]
    check = check_ledger(text, num_positions=10, val_bytes=16, reported_bpb=led.summary()["val_bpb"])
    assert check.ok, check.problems
    assert check.val_bpb == led.summary()["val_bpb"] and check.val_tokens == 10


# ----------------------------------------------------------------------------- the writer refuses


def test_commit_twice_or_overlapping_or_out_of_order_is_refused():
    led = ScoreLedger(10, P0)
    led.commit(0, 4, losses(4), np.ones(4), P0, P0)
    with pytest.raises(LegalityError, match="scored again"):
        led.commit(0, 4, losses(4), np.ones(4), P0, P0)  # the same positions twice (TTT-4)
    with pytest.raises(LegalityError, match="scored again"):
        led.commit(3, 6, losses(3), np.ones(3), P0, P0)  # overlapping
    with pytest.raises(LegalityError, match="skipped"):
        led.commit(5, 8, losses(3), np.ones(3), P0, P0)  # a gap
    with pytest.raises(LegalityError, match="runs past"):
        led.commit(4, 11, losses(7), np.ones(7), P0, P0)
    with pytest.raises(LegalityError, match="one per position"):
        led.commit(4, 6, losses(3), np.ones(2), P0, P0)
    with pytest.raises(LegalityError, match="non-finite"):
        led.commit(4, 6, np.array([1.0, np.nan], dtype=np.float32), np.ones(2), P0, P0)
    assert led.committed_end == 4 and len(led.entries) == 1


def test_commit_with_changed_parameters_is_refused():
    led = ScoreLedger(10, P0)
    with pytest.raises(LegalityError, match="changed while"):
        led.commit(0, 4, losses(4), np.ones(4), P0, P1)


def test_steps_only_over_committed_spans():
    led = ScoreLedger(10, P0)
    with pytest.raises(LegalityError, match="before any position"):
        led.record_step([(0, 1)], 0, 0.1)  # adapting before scoring
    led.commit(0, 4, losses(4), np.ones(4), P0, P0)
    with pytest.raises(LegalityError, match="only \\[0, 4\\) are scored"):
        led.record_step([(0, 5)], 0, 0.1)  # target 5 is not scored yet
    led.record_step([(0, 4)], 0, 0.1)
    assert led.entries[0].steps[0].committed == 4 and led.entries[0].adapt == "adapted"


# ----------------------------------------------------------------------------- forged ledgers


def forge(edit):
    lines = [json.loads(line) for line in small_ledger().to_jsonl().splitlines()]
    edit(lines)
    return "\n".join(json.dumps(x) for x in lines) + "\n"


def problems(text, **kw):
    return " | ".join(check_ledger(text, **kw).problems)


def test_check_finds_a_position_scored_twice():
    def dup(lines):
        lines[2]["start"] = 2
        lines[2]["count"] = 6  # entry 1 now rescored [2, 8)
    assert "scored twice" in problems(forge(dup))


def test_check_finds_a_duplicate_entry():
    def dup(lines):
        lines.insert(2, dict(lines[1]))
    assert "scored twice" in problems(forge(dup))


def test_check_finds_a_missing_tail():
    def drop(lines):
        del lines[3]
    text = forge(drop)
    assert "cover [0, 8)" in problems(text)
    assert not check_ledger(text).ok


def test_check_finds_adaptation_on_unscored_positions():
    def peek(lines):
        lines[1]["steps"][0]["spans"] = [[0, 6]]
    assert "reaches past the committed end" in problems(forge(peek))


def test_check_finds_parameters_changed_during_scoring_or_silently():
    def during(lines):
        lines[2]["params_after"] = "d" * 32
    assert "changed while it was scored" in problems(forge(during))

    def silently(lines):
        lines[2]["steps"] = []  # entry 1 no longer adapts, yet entry 2 starts from other parameters
    assert "without a recorded adaptation step" in problems(forge(silently))

    def first(lines):
        lines[1]["params_before"] = lines[1]["params_after"] = P1
    assert "other than the initial" in problems(forge(first))


def test_check_finds_adaptation_after_the_last_chunk():
    def late(lines):
        lines[3]["steps"] = [{"spans": [[0, 10]], "epoch": 0, "lr": 0.1, "committed": 10}]
    assert "after the last chunk" in problems(forge(late))


def test_check_finds_a_wrong_claim_or_byte_total():
    led = small_ledger()
    bpb = led.summary()["val_bpb"]
    assert "reported val_bpb" in problems(led.to_jsonl(), reported_bpb=bpb - 1e-4)
    assert "bytes" in problems(led.to_jsonl(), val_bytes=17)
    assert "positions" in problems(led.to_jsonl(), num_positions=11)

    def inflate(lines):
        lines[-1]["val_bpb"] = bpb - 0.01
    assert "summary val_bpb" in problems(forge(inflate))

    def unfinished(lines):
        lines.pop()
    assert "no summary" in problems(forge(unfinished))


def test_check_raise_if_bad():
    def dup(lines):
        lines.insert(2, dict(lines[1]))
    with pytest.raises(LegalityError, match="score ledger fails its check"):
        check_ledger(forge(dup)).raise_if_bad()


@pytest.mark.parametrize("text", ["", "not json\n", '{"kind": "chunk"}\n', '{"kind": "other", "format": 1}\n',
                                  '{"kind": "header", "format": "pgolf.ledger", "version": 99}\n'])
def test_malformed_ledgers_are_artifact_errors(text):
    with pytest.raises(ArtifactError):
        parse_ledger(text)
