"""Ledgers written by pgolf's own score-first TTT loop pass every ledger check; forgeries do not."""

import functools

import numpy as np
import pytest
import torch
from test_verify_evidence import legal_evidence, verdicts

from pgolf.eval import EvalConfig, TTTConfig, evaluate
from pgolf.eval.ledger import parse_ledger
from pgolf.model import GPT, ModelConfig
from pgolf.verify.checks import run_checks
from pgolf.verify.evidence import LedgerFacts
from pgolf.verify.facts import data_facts

LEDGER_RULES = ("TTT-1", "TTT-2", "TTT-3", "TTT-4", "TTT-5", "TTT-8", "MET-1", "MET-4", "MET-8")


def _stream(num_docs=12, seed=0):
    rng = np.random.default_rng(seed)
    tokens = np.concatenate([np.concatenate(([1], rng.integers(4, 64, rng.integers(30, 70)))) for _ in range(num_docs)])
    side = rng.integers(1, 4, tokens.shape[0])
    side[tokens == 1] = 0
    return tokens.astype(np.uint16), side


@functools.lru_cache(maxsize=2)
def _run_eval(doc_independent: bool):
    """One short score-first TTT evaluation per mode (cached: the tests copy its evidence)."""
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=64, num_layers=1, model_dim=32, num_heads=2, num_kv_heads=1))
    tokens, side = _stream()
    cfg = EvalConfig(mode="ttt", seq_len=32, stride=16, chunk_tokens=48, batch_seqs=8, time_budget_s=0,
                     autocast=False, doc_independent=doc_independent,
                     ttt=TTTConfig(epochs=2, batch_seqs=4, lr=0.01, seq_len=16))
    res = evaluate(model, tokens, side, cfg)
    assert res.ledger.summary()["adapt_steps"] > 0
    return tokens, side, res.ledger.to_jsonl(), res.val_loss, res.val_bpb


def _evidence_from_eval(doc_independent: bool):
    tokens, side, text, val_loss, val_bpb = _run_eval(doc_independent)
    header, entries, summary = parse_ledger(text)
    ev = legal_evidence()
    s = ev.seeds[0]
    s.ledger = LedgerFacts(header=header, entries=entries, summary=summary)
    facts = data_facts(tokens, side, None)
    facts.lut_bytes, facts.lut_sidecar_mismatch, facts.docs_decode_mismatch = facts.sidecar_bytes, 0, 0
    s.data = facts
    s.stages["data"].manifest["metrics"].update(val_tokens=int(tokens.shape[0]), val_docs=facts.val_docs,
                                                val_bytes=facts.sidecar_bytes, val_doc_range=[0, facts.val_docs],
                                                train_doc_range=[facts.val_docs, 1000])
    s.stages["eval"].manifest["metrics"].update(val_loss=val_loss, val_bpb=val_bpb,
                                                val_tokens=summary["val_tokens"], val_bytes=summary["val_bytes"])
    s.eval_report = dict(s.stages["eval"].manifest["metrics"])
    return ev


@pytest.mark.parametrize("doc_independent", [False, True])
def test_real_ttt_ledger_passes(doc_independent):
    ev = _evidence_from_eval(doc_independent)
    for rule in LEDGER_RULES:
        assert "FAIL" not in verdicts(ev, rule), rule
    assert verdicts(ev, "TTT-1") == {"PASS"} and verdicts(ev, "MET-4") == {"PASS"}
    if doc_independent:
        assert any(e.reset for e in ev.seeds[0].ledger.entries)
        assert "PASS" in verdicts(ev, "MET-8")


def test_doc_independent_ledger_without_resets_fails():
    ev = _evidence_from_eval(True)
    for e in ev.seeds[0].ledger.entries:
        if e.reset:
            e.reset = False
    assert "FAIL" in verdicts(ev, "TTT-8")


def test_adaptation_recorded_before_the_chunk_was_scored_fails():
    ev = _evidence_from_eval(False)
    entries = ev.seeds[0].ledger.entries
    k = next(i for i, e in enumerate(entries) if e.steps)
    entries[k].steps[0] = type(entries[k].steps[0])(((entries[k].start, entries[k + 1].end),), 0, 0.01,
                                                     entries[k].end)
    assert verdicts(ev, "TTT-1") == {"FAIL"}


def test_rescored_position_and_summary_mismatch_fail():
    ev = _evidence_from_eval(False)
    entries = ev.seeds[0].ledger.entries
    entries[1].start -= 1  # position entries[0].end - 1 is scored twice
    entries[1].count += 1
    assert verdicts(ev, "TTT-4") == {"FAIL"} and verdicts(ev, "TTT-2") == {"FAIL"}
    assert "FAIL" in verdicts(ev, "MET-4")


def test_summary_line_that_disagrees_with_the_entries_fails():
    ev = _evidence_from_eval(False)
    ev.seeds[0].ledger.summary["val_bpb"] -= 1e-3
    assert verdicts(ev, "TTT-2") == {"FAIL"}
    assert any("summary" in r.detail for r in run_checks(ev) if r.id == "TTT-2")


def test_missing_ledger_fails_coverage():
    ev = legal_evidence()
    ev.seeds[0].ledger = LedgerFacts(error="ledger.jsonl.zst cannot be decoded (ZstdError)")
    assert verdicts(ev, "TTT-2") == {"FAIL"} and verdicts(ev, "MET-4") == {"FAIL"}
    assert verdicts(ev, "TTT-1") == {"INFO"}
