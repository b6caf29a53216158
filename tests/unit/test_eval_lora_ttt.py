"""PR #2135's phased score-first LoRA TTT (`ttt.method = "phased_lora"`) on tiny models: score-first through
the committed view and the ledger (spans, partial resets, the global phase), the factors and their hooks,
the model left as it was, and config errors. Equality with the record: tests/reference/test_lora_ttt_pr2135.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_eval_support import BOS, ConvLM, byte_counts, stream, tiny_gpt

from pgolf.errors import ConfigError
from pgolf.eval import EvalConfig, TTTConfig, check_ledger, document_segments, evaluate, model_checksum
from pgolf.eval.lora_ttt import DocumentLoRA
from pgolf.eval.windows import chunk_window

TTT = dict(method="phased_lora", optimizer="adamw", lr=3e-3, momentum=0.0, beta2=0.99, weight_decay=2.0,
           adam_eps=1e-10, lora_rank=4, prefix_docs=2, global_chunk_tokens=32, global_batch_seqs=2)


def cfg(**ttt) -> EvalConfig:
    return EvalConfig(mode="ttt", seq_len=16, chunk_tokens=8, doc_windows=True, chunk_windows=True, time_budget_s=0,
                      ttt=TTTConfig(**{**TTT, **ttt}))


def test_chunk_windows_end_at_the_chunk():
    assert chunk_window((10, 100), (10, 18), 16).tolist() == [[10, 10, 18]]  # the document's start bounds it
    assert chunk_window((10, 100), (42, 50), 16).tolist() == [[34, 42, 50]]
    assert chunk_window((10, 100), (98, 100), 16).tolist() == [[84, 98, 100]]  # a short last chunk: 16 tokens


def test_score_first_with_partial_resets_and_a_global_phase():
    model, tokens = tiny_gpt(attn_doc_mask=True), stream(300, seed=3)
    before = model_checksum(model)
    result = evaluate(model, tokens, byte_counts(tokens), cfg(), bos_id=BOS)
    assert model_checksum(model) == before  # the global phase's changes are undone at the end
    text = result.ledger.to_jsonl()
    assert not check_ledger(text).problems
    docs = document_segments(tokens, BOS)
    starts = set(docs[:, 0].tolist())
    entries = result.ledger.entries
    for i, e in enumerate(entries):
        assert e.start in starts or not e.partial_reset
        assert e.partial_reset == (i > 0 and e.start in starts)  # every later document starts with one
        doc = docs[np.searchsorted(docs[:, 0], e.start, side="right") - 1]
        if e.end < doc[1]:  # one step per chunk but a document's last, on the window that scored it
            assert len(e.steps) == 1 and e.steps[0].spans == ((max(int(doc[0]), e.end - 16), e.end),)
        elif e.end == docs[1][1]:  # the second document ends the prefix: the global pass over [0, end)
            assert e.steps and all(0 <= a < b <= e.end for s in e.steps for a, b in s.spans)
            assert {a for s in e.steps for a, _ in s.spans} == set(range(0, 32 * ((e.end - 1) // 32), 16))
        else:
            assert not e.steps and e.adapt in ("last", "none")
    adapted = evaluate(model, tokens, byte_counts(tokens), cfg(prefix_docs=0), bos_id=BOS)
    plain = evaluate(model, tokens, byte_counts(tokens), EvalConfig(mode="sliding", seq_len=16, chunk_tokens=8,
                                                                    doc_windows=True, chunk_windows=True,
                                                                    time_budget_s=0), bos_id=BOS)
    first = docs[0][1]  # the first document is scored alike with and without the global phase
    assert [e.nll_sum for e in result.ledger.entries if e.end <= first] == \
        [e.nll_sum for e in adapted.ledger.entries if e.end <= first]
    assert result.val_loss != adapted.val_loss != plain.val_loss
    # the first chunk of the stream comes from the loaded weights (B = 0): the plain score
    assert entries[0].nll_sum == pytest.approx(plain.ledger.entries[0].nll_sum, abs=1e-5)


def test_factors_follow_the_virtual_layers_and_only_the_chosen_ones_exist():
    model = tiny_gpt(layers=3, recur_layers=(1,), recur_loops=1)
    model.set_recurrence(True)
    order = model.layer_order()
    lora = DocumentLoRA(model, ("q", "k", "mlp"), 2, 4.0, torch.Generator().manual_seed(0))
    assert set(lora.slots) == {"q", "k", "mlp"} and lora.head is None and len(lora.slots["q"]) == len(order) == 4
    x = torch.from_numpy(stream(20)[None])
    base = model(x)
    with torch.no_grad():
        lora.slots["mlp"][2].B.normal_()  # the second pass over layer 1 only
    changed = model(x)
    assert not torch.equal(base, changed)
    with torch.no_grad():
        lora.slots["mlp"][2].B.zero_()
        lora.slots["mlp"][1].B.normal_()  # the first pass over layer 1
    assert not torch.equal(model(x), changed)
    lora.enabled = False
    torch.testing.assert_close(model(x), base)
    lora.remove()
    torch.testing.assert_close(model(x), base)


def test_warm_start_keeps_a_across_documents():
    model, tokens = tiny_gpt(), stream(200, seed=5)
    hashes = {}
    for warm in (True, False):
        evaluate(model, tokens, byte_counts(tokens), cfg(warm_start_a=warm, prefix_docs=0), bos_id=BOS,
                 on_chunk=lambda e, w=warm: hashes.setdefault(w, []).append(e.params_before))
    assert hashes[True][0] == hashes[False][0] and hashes[True] != hashes[False]


def test_global_pass_on_the_caps_moves_only_the_caps():
    from pgolf.eval.lora_ttt import PhasedLoRAAdapter

    model, tokens = tiny_gpt(asym_softcap=True), stream(300, seed=3)
    seen = {}
    real = PhasedLoRAAdapter.global_pass

    def spy(self, view, end):
        before = {n: p.detach().clone() for n, p in self.model.named_parameters()}
        real(self, view, end)
        seen["moved"] = {n for n, p in self.model.named_parameters() if not torch.equal(p, before[n])}

    PhasedLoRAAdapter.global_pass = spy  # type: ignore[method-assign]
    try:
        evaluate(model, tokens, byte_counts(tokens), cfg(global_params="caps", global_lr=0.5), bos_id=BOS)
    finally:
        PhasedLoRAAdapter.global_pass = real  # type: ignore[method-assign]
    assert seen["moved"] == {"softcap_pos", "softcap_neg"}


def test_config_errors():
    with pytest.raises(ConfigError, match="doc_windows"):
        EvalConfig(mode="ttt", ttt=TTTConfig(method="phased_lora"))
    with pytest.raises(ConfigError, match="doc_independent false"):
        EvalConfig(mode="ttt", doc_windows=True, doc_independent=True, ttt=TTTConfig(method="phased_lora"))
    with pytest.raises(ConfigError, match="lora_layers"):
        TTTConfig(lora_layers=("q", "x"))
    with pytest.raises(ConfigError, match="chunk_tokens"):
        EvalConfig(seq_len=16, chunk_tokens=32, chunk_windows=True)
    with pytest.raises(ConfigError, match="num_phases"):
        TTTConfig(num_phases=0)
    with pytest.raises(ConfigError, match="phased_lora"):  # not a pgolf GPT: one line naming the fix
        tokens = stream(100)
        evaluate(ConvLM(), tokens, byte_counts(tokens), cfg(), bos_id=BOS)
    with pytest.raises(ConfigError, match="caps"):
        tokens = stream(300, seed=3)
        evaluate(tiny_gpt(), tokens, byte_counts(tokens), cfg(global_params="caps"), bos_id=BOS)
