"""TTT-8 on the phased LoRA's ledgers (`doc_windows`): a partial reset, a state change without a step, is
accepted only at a document start of a doc_windows eval; anywhere else it hides a change, and FAILs."""

from __future__ import annotations

import numpy as np
from test_verify_evidence import ledger_facts, legal_evidence, stream, verdicts

from pgolf.eval import check_ledger
from pgolf.eval.ledger import ScoreLedger
from pgolf.eval.windows import chunk_ranges, document_segments


def doc_windows_ledger(tokens: np.ndarray, side: np.ndarray, *, doc_windows: bool = True,
                       forged_at: int | None = None) -> str:
    """Per-document chunks of 16, one step after each but a document's last; at each new document the state
    changes (B zeroed) and the entry says partial_reset. `forged_at`: that entry also claims a partial
    reset and its parameters change without a step."""
    rng = np.random.default_rng(0)
    docs = document_segments(tokens, 1)
    P = tokens.shape[0] - 1
    ledger = ScoreLedger(P, "p0", {"mode": "ttt", "num_tokens": int(tokens.shape[0]),
                                   "config": {"doc_windows": doc_windows, "chunk_windows": True}})
    params, n = "p0", 0
    for k, (a, b, seg) in enumerate(chunk_ranges(docs, 16).tolist()):
        partial = k > 0 and a == docs[seg][0]
        if partial or k == forged_at:
            n += 1
            params = f"p{n}"  # the reset's change: recorded only by the flag
        ledger.commit(a, b, rng.uniform(1, 4, b - a).astype(np.float32), side[a + 1 : b + 1], params, params,
                      partial_reset=partial or k == forged_at)
        if b == docs[seg][1]:
            ledger.mark("last" if b == P else "none")
            continue
        ledger.record_step([(max(int(docs[seg][0]), b - 64), b)], epoch=0, lr=8e-5)
        n += 1
        params = f"p{n}"
    return ledger.to_jsonl()


def test_partial_resets_at_document_starts_pass():
    tokens, side = stream(6)
    text = doc_windows_ledger(tokens, side)
    assert not check_ledger(text).problems
    ev = legal_evidence()
    ev.seeds[0].data.doc_starts = document_segments(tokens, 1)[:, 0]
    ev.seeds[0].ledger = ledger_facts(text)
    assert verdicts(ev, "TTT-8") == {"PASS"}
    assert "PASS" in verdicts(ev, "MET-8")  # per-document windows: no chunk crosses a BOS


def test_a_partial_reset_elsewhere_or_without_doc_windows_fails():
    tokens, side = stream(6)
    ev = legal_evidence()
    ev.seeds[0].data.doc_starts = document_segments(tokens, 1)[:, 0]
    starts = set(document_segments(tokens, 1)[:, 0].tolist())
    text = doc_windows_ledger(tokens, side, forged_at=3)
    entry = [line for line in text.splitlines() if '"index": 3,' in line][0]
    assert int(entry.split('"start": ')[1].split(",")[0]) not in starts  # mid-document
    ev.seeds[0].ledger = ledger_facts(text)
    assert verdicts(ev, "TTT-8") == {"FAIL"}
    ev.seeds[0].ledger = ledger_facts(doc_windows_ledger(tokens, side, doc_windows=False))
    assert verdicts(ev, "TTT-8") == {"FAIL"}
