"""pgolf's phased score-first LoRA TTT (`ttt.method = "phased_lora"`) against PR #2135's own code
(reference/pr2135/train_gpt.py, imported with its launch's variables; stubs as in test_pr2135.py).

- the LoRA factors: #2135's BatchedTTTLoRA with the launch's K off, O and MLP on (q, v and the head
  always), loop on and off: the same set, the same shapes (its batch dimension of one document), the
  same scale alpha / rank and, from the same seed, the same initial A factors;
- the whole evaluation: #2135's `eval_val_ttt_phased` (one document per batch, documents in order of
  decreasing length so that its order is the stream's) against `evaluate(mode="ttt")` with
  method phased_lora on the same weights and stream: every chunk's scored NLL, then the total, with
  and without the global phase over a one-document prefix (where its prefix tokens equal the stream's).
"""

from __future__ import annotations

import types
from pathlib import Path

import numpy as np
import pytest
import torch

from pgolf.eval import EvalConfig, TTTConfig, evaluate
from pgolf.eval.lora_ttt import DocumentLoRA

from . import cases
from .test_pr2135 import CASE

RANK, CHUNK, WINDOW = 4, 16, 64
LAUNCH_LAYERS = ("q", "v", "o", "mlp", "head")  # TTT_K_LORA=0 TTT_O_LORA=1 TTT_MLP_LORA=1


@pytest.fixture
def pair(reference_dir, monkeypatch):
    monkeypatch.setenv("SMEAR_GATE_BOS_FIX", "0")  # the launch's (read by its forward at every call)
    mod, cfg, rec, model = cases.built_pair(CASE, reference_dir)
    assert cfg.model.attn_doc_mask and cfg.model.asym_softcap
    return mod, cfg, rec.float().eval(), model.float().eval()


def record_lora(mod, rec, gen_seed: int):
    torch.manual_seed(gen_seed)
    return mod.BatchedTTTLoRA(1, rec, RANK, k_lora=False, mlp_lora=True, o_lora=True)


@pytest.mark.parametrize("looping", [False, True])
def test_lora_factors_are_the_records(pair, looping):
    mod, _, rec, model = pair
    rec.looping_active = looping
    model.set_recurrence(looping)
    theirs = record_lora(mod, rec, 7)
    ours = DocumentLoRA(model, LAUNCH_LAYERS, RANK, float(mod.BatchedLinearLoRA._ALPHA), torch.Generator().manual_seed(7))
    names = {"head": "lm_head_lora", "q": "q_loras", "v": "v_loras", "k": "k_loras", "o": "o_loras",
             "mlp": "mlp_loras"}
    expected = [("lm_head_lora", theirs.lm_head_lora)]
    for kind in ("q_loras", "v_loras", "mlp_loras", "o_loras"):  # its creation order (k off)
        expected += [(f"{kind}.{i}", m) for i, m in enumerate(getattr(theirs, kind))]
    got = ours.factors()
    assert [n.replace(n.split(".")[0], names[n.split(".")[0]], 1) for n, _ in got] == [n for n, _ in expected]
    assert len(ours.slots["q"]) == len(model.layer_order()) == (17 if looping else 11)
    for (_, f), (_, g) in zip(got, expected):
        assert f.A.shape == g.A.shape[1:] and f.B.shape == g.B.shape[1:] and g.A.shape[0] == 1
        assert f.scale == g._scale == 144 / RANK
        torch.testing.assert_close(f.A, g.A[0], rtol=0, atol=0)  # the same draws from the same seed
        assert not f.B.any() and not g.B.any()
    ours.remove()


def record_h(mod, prefix_docs: int):
    h = cases.small_args(CASE, mod)
    h.ttt_lora_rank, h.ttt_chunk_size, h.ttt_eval_seq_len, h.eval_seq_len = RANK, CHUNK, WINDOW, WINDOW
    h.ttt_batch_size, h.phased_ttt_prefix_docs, h.phased_ttt_num_phases = 1, prefix_docs, 1
    h.ttt_lora_lr = 3e-3  # large enough that the steps move the scores visibly
    h.global_ttt_chunk_tokens, h.global_ttt_batch_seqs, h.global_ttt_lr = 2 * WINDOW, 1, 0.01
    h.ngram_tilt_enabled, h.run_id = False, f"pgolf_reference_{id(h)}"
    h.rank, h.world_size, h.logfile = 0, 1, None
    return h


def launch_ttt(h, seed: int) -> TTTConfig:
    """The record's phased LoRA settings as pgolf keys (its launch's beta1 0, beta2 0.99, wd 2.0, eps 1e-10)."""
    assert (h.ttt_optimizer, h.ttt_beta1, h.ttt_beta2, h.ttt_weight_decay) == ("adam", 0.0, 0.99, 2.0)
    assert not h.ttt_k_lora and h.ttt_o_lora and h.ttt_mlp_lora and h.global_ttt_optimizer == "sgd"
    return TTTConfig(method="phased_lora", optimizer="adamw", lr=h.ttt_lora_lr, momentum=h.ttt_beta1,
                     beta2=h.ttt_beta2, weight_decay=h.ttt_weight_decay, adam_eps=1e-10, lora_rank=h.ttt_lora_rank,
                     lora_layers=LAUNCH_LAYERS, warm_start_a=True, prefix_docs=h.phased_ttt_prefix_docs,
                     num_phases=h.phased_ttt_num_phases, global_lr=h.global_ttt_lr,
                     global_momentum=h.global_ttt_momentum, global_epochs=h.global_ttt_epochs,
                     global_chunk_tokens=h.global_ttt_chunk_tokens, global_batch_seqs=h.global_ttt_batch_seqs,
                     global_grad_clip=h.global_ttt_grad_clip, seed=seed)


def stream(vocab: int) -> np.ndarray:
    """Three documents, longest first (the record runs its batches in order of decreasing length)."""
    rng = np.random.default_rng(0)
    docs = [np.concatenate([[1], rng.integers(2, vocab, n - 1)]) for n in (170, 100, 41)]
    return np.concatenate(docs).astype(np.int64)


@pytest.mark.parametrize("prefix_docs", [0, 1])
def test_phased_lora_ttt_scores_equal_the_records(pair, prefix_docs, monkeypatch):
    mod, cfg, rec, model = pair
    assert mod.BatchedLinearLoRA._WARM_START_A  # TTT_WARM_START_A=1
    h = record_h(mod, prefix_docs)
    tokens = stream(cfg.model.vocab_size)
    token_bytes = np.random.default_rng(1).integers(1, 4, tokens.shape[0])
    # its per-chunk scores: the loss sum after each call of its accumulator
    sums: list[float] = []
    accumulate = mod._accumulate_bpb

    def spy(ptl, *args, **kwargs):
        accumulate(ptl, *args, **kwargs)
        sums.append(float(args[-3]))  # (..., loss_sum, byte_sum, token_count, y_bytes=...)

    monkeypatch.setattr(mod, "_accumulate_bpb", spy)
    val = types.SimpleNamespace(val_tokens=torch.from_numpy(tokens), caseops_enabled=True,
                                val_bytes=torch.from_numpy(token_bytes).int(), base_bytes_lut=None,
                                has_leading_space_lut=None, is_boundary_token_lut=None)
    before = {n: p.detach().clone() for n, p in rec.named_parameters()}
    torch.manual_seed(11)  # its factors are drawn from the global generator
    try:
        ref_loss, ref_bpb = mod.eval_val_ttt_phased(h, rec, torch.device("cpu"), val, rec.forward_ttt)
    finally:  # its cross-rank counters live in /tmp, named by run_id
        for name in ("ttt_counter", "ttt_prefix_counter", "ttt_pause_flag"):
            Path(f"/tmp/{name}_{h.run_id}").unlink(missing_ok=True)
    moved = {n for n, p in rec.named_parameters() if not torch.equal(p, before[n])}
    # its global pass trains every parameter with its training loss, whose softcap is the fixed one: the
    # AsymLogit caps get no gradient and stay where they were (4 and 9 here); nothing else moves without it
    assert "softcap_pos" not in moved and "softcap_neg" not in moved
    assert (len(moved) > 10) == bool(prefix_docs), sorted(moved)[:5]
    ecfg = EvalConfig(mode="ttt", seq_len=WINDOW, chunk_tokens=CHUNK, doc_windows=True, chunk_windows=True,
                      time_budget_s=0, autocast=False, ttt=launch_ttt(h, seed=11))
    result = evaluate(model, tokens, token_bytes, ecfg, bos_id=1)
    per_chunk = np.diff([0.0, *sums])
    ours = np.array([e.nll_sum for e in result.ledger.entries])
    assert per_chunk.shape == ours.shape == (len(result.ledger.entries),)
    np.testing.assert_allclose(ours, per_chunk, rtol=0, atol=5e-5)  # float32 sums of 16 losses (measured <= 9e-6)
    assert result.val_loss == pytest.approx(ref_loss, abs=1e-6) and result.val_bpb == pytest.approx(ref_bpb, abs=1e-6)
    steps = sum(len(e.steps) for e in result.ledger.entries)
    # one LoRA step per chunk but each document's last (170, 100 and 40 positions: 10 + 6 + 2), and the global
    # pass over the first document: 2 sequences of 64 in its first chunk of 128 (its last chunk is not trained)
    assert steps == 18 + (2 if prefix_docs else 0)
    # the steps changed the scores: the first pass alone (no adaptation) scores otherwise
    plain = evaluate(model, tokens, token_bytes, EvalConfig(mode="sliding", seq_len=WINDOW, chunk_tokens=CHUNK,
                                                            doc_windows=True, chunk_windows=True, time_budget_s=0,
                                                            autocast=False), bos_id=1)
    assert abs(plain.val_loss - result.val_loss) > 1e-4


def test_long_context_logits_at_2560_equal_the_records(pair):
    """EVAL_SEQ_LEN=2560 beyond the 2048 of training: partial RoPE (16 dims) with ROPE_YARN=0 rotates by the
    absolute position at any length, as pgolf's rope_ref_len = 0 does; the loop on, as evaluation runs it."""
    mod, cfg, rec, model = pair
    assert cfg.model.rope_dims == 16 and cfg.model.rope_ref_len == 0 and not mod.Hyperparameters().rope_yarn
    assert mod.Hyperparameters().eval_seq_len == 2560 > cfg.seq_len == 2048
    rec.looping_active = True
    model.set_recurrence(True)
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(2, cfg.model.vocab_size, (1, 2560), generator=gen)
    x[0, 0] = 1  # one document: its BOS first (pgolf's document mask and its plain causal path agree)
    with torch.no_grad():
        ref = rec.forward_logits(x).float()
        ours = model(x)
    assert torch.isfinite(ours).all()
    torch.testing.assert_close(ours, ref, atol=5e-5, rtol=1e-5)
    # the positions past 2048 see their whole context: the last logits change when the first tokens do
    y = x.clone()
    y[0, 1:64] = torch.randint(2, cfg.model.vocab_size, (63,), generator=gen)
    with torch.no_grad():
        assert (model(y)[0, -1] - ours[0, -1]).abs().max() > 1e-4
