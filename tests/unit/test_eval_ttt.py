"""Score-first TTT: it adapts only on committed spans, and planted cheats are stopped."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from test_eval_support import BOS, VOCAB, ConvLM, byte_counts, stream, tiny_gpt

from pgolf.errors import ConfigError, LegalityError
from pgolf.eval import ChunkInfo, CommittedView, EvalConfig, GradientAdapter, TTTConfig, check_ledger, evaluate
from pgolf.model import param_class


def ttt_cfg(**kw) -> EvalConfig:
    ttt = TTTConfig(**{"seq_len": 10, "epochs": 2, "lr": 0.05, "batch_seqs": 3, **kw.pop("ttt", {})})
    base = {"mode": "ttt", "seq_len": 16, "stride": 4, "chunk_tokens": 40, "batch_seqs": 4, "time_budget_s": 0}
    return EvalConfig(**{**base, **kw}, ttt=ttt)


def run(model, tokens, cfg=None, **kw):
    return evaluate(model, tokens, byte_counts(tokens), cfg or ttt_cfg(), bos_id=BOS, **kw)


def assert_ledger_ok(result, tokens):
    check = check_ledger(result.ledger.to_jsonl(), num_positions=len(tokens) - 1,
                         val_bytes=int(byte_counts(tokens)[1:].sum()), reported_bpb=result.val_bpb)
    assert check.ok, check.problems


# ----------------------------------------------------------------------------- the honest recipe


@pytest.mark.parametrize("n", [161, 147])  # P = 160 (a multiple of the 40-token chunk) and 146
def test_ttt_scores_every_target_once_and_adapts_after_scoring(n):
    tokens = stream(n, seed=1)
    result = run(tiny_gpt(), tokens)
    entries = result.ledger.entries
    assert [(e.start, e.end) for e in entries][-1][1] == n - 1
    assert all(e.steps for e in entries[:-1]) and entries[-1].adapt == "last" and not entries[-1].steps
    for e in entries:
        for step in e.steps:
            assert step.committed == e.end and all(b <= e.end for _, b in step.spans)
            # the records' recipe: full sequences of the chunk just scored
            assert all(e.start <= a and b - a == 10 for a, b in step.spans)
    # 2 epochs x ceil(4 sequences / 3 per batch) = 4 steps per adapted chunk
    assert len(entries[0].steps) == 4 and [s.epoch for s in entries[0].steps] == [0, 0, 1, 1]
    # lr decays by a cosine over the chunks
    lrs = [e.steps[0].lr for e in entries[:-1]]
    assert lrs[0] == pytest.approx(0.05) and all(a > b for a, b in zip(lrs, lrs[1:]))
    assert_ledger_ok(result, tokens)


def test_ttt_changes_parameters_between_chunks_only_and_restores_the_model():
    model = tiny_gpt()
    model.blocks[0].attn_scale.requires_grad_(False)
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = run(model, stream(130, seed=2))
    e = result.ledger.entries
    assert e[0].params_before == result.ledger.params_initial
    assert e[1].params_before != e[0].params_after  # adapted in between
    # afterwards the model is as it was given: weights, requires_grad, eval mode
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags
    assert not model.training and all(p.grad is None for p in model.parameters())


def test_ttt_prefix_entries_do_not_depend_on_later_tokens():
    tokens = stream(200, seed=3)
    base = run(tiny_gpt(), tokens)
    changed = tokens.copy()
    changed[121:] = (changed[121:] + 5) % VOCAB  # targets of chunk 3 (positions [120, 160)) onward
    other = run(tiny_gpt(), changed)
    assert [e.to_dict() for e in base.ledger.entries[:3]] == [e.to_dict() for e in other.ledger.entries[:3]]
    assert base.ledger.entries[3].loss_sha256 != other.ledger.entries[3].loss_sha256


def test_epochs_zero_is_the_sliding_score():
    tokens = stream(150, seed=4)
    sliding = evaluate(tiny_gpt(), tokens, byte_counts(tokens), ttt_cfg(mode="sliding"), bos_id=BOS)
    frozen = run(tiny_gpt(), tokens, ttt_cfg(ttt={"epochs": 0}))
    assert frozen.val_bpb == sliding.val_bpb
    assert [e.loss_sha256 for e in frozen.ledger.entries] == [e.loss_sha256 for e in sliding.ledger.entries]


@pytest.mark.parametrize("params", ["all", "mlp", "lora"])
def test_parameter_subsets(params):
    model = tiny_gpt(layers=3)
    cfg = ttt_cfg(ttt={"params": params, "freeze_blocks": 1, "lora_rank": 2})
    adapter = GradientAdapter(model, cfg.ttt, cfg.ttt_seq_len)
    names = [n for n, _ in adapter.named_params]
    assert names and not any(n.startswith("blocks.0.") for n in names)  # frozen block
    if params == "all":
        assert "tok_emb.weight" in names and "blocks.2.attn.c_q.weight" in names
    if params == "mlp":
        assert all(param_class(n) == "mlp" for n in names)
    if params == "lora":
        assert names == [f"blocks.{i}.attn.{p}.{f}" for i in (1, 2) for p in ("c_q", "c_v") for f in "AB"]
        assert [a.shape[0] for n, a in adapter.state().items() if n.endswith("A")] == [2, 2, 2, 2]
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if n not in names}
    trained = {}
    model.tok_emb.register_forward_pre_hook(lambda m, a: trained.update(
        {n: not torch.equal(p, frozen[n]) for n, p in model.named_parameters() if n in frozen}))
    tokens = stream(130, seed=5)
    result = evaluate(model, tokens, byte_counts(tokens), cfg, bos_id=BOS, adapter=adapter)
    assert trained and not any(trained.values())  # nothing outside the chosen set ever moved
    assert result.ledger.entries[1].params_before != result.ledger.entries[0].params_after
    assert all(not m._forward_hooks for m in model.modules())  # LoRA hooks are gone
    assert_ledger_ok(result, tokens)


def test_adamw_and_block_lr_decay_and_constant_schedule():
    tokens = stream(130, seed=6)
    result = run(tiny_gpt(), tokens, ttt_cfg(ttt={"optimizer": "adamw", "lr": 0.01, "block_lr_decay": 0.5,
                                                 "schedule": "constant"}))
    assert {s.lr for e in result.ledger.entries for s in e.steps} == {0.01}
    assert_ledger_ok(result, tokens)


def test_no_parameter_to_adapt_is_a_config_error():
    with pytest.raises(ConfigError, match="no parameter"):
        run(tiny_gpt(), stream(100), ttt_cfg(ttt={"freeze_blocks": 5, "params": "mlp"}))
    with pytest.raises(ConfigError, match="match no Linear"):
        run(tiny_gpt(), stream(100), ttt_cfg(ttt={"params": "lora", "lora_targets": ("nope",)}))


def test_document_independent_ttt_resets_at_every_document():
    model = tiny_gpt()
    tokens = stream(160, seed=7, doc_len=60)
    cfg = ttt_cfg(doc_independent=True, chunk_tokens=20)
    result = run(model, tokens, cfg)
    entries = result.ledger.entries
    assert any(e.reset for e in entries)
    for e in entries:
        if e.reset:
            assert e.params_before == result.ledger.params_initial
    assert_ledger_ok(result, tokens)
    # a document's scores do not depend on the documents before it (rules MET-8, TTT-8)
    first_doc_end = int(np.flatnonzero(tokens[1:] == BOS)[0]) + 1
    changed = tokens.copy()
    changed[1:first_doc_end] = (changed[1:first_doc_end] + 3) % (VOCAB - 2) + 2
    other = run(tiny_gpt(), changed, cfg)
    later = [(e.start, e.loss_sha256) for e in entries if e.start >= first_doc_end]
    assert later == [(e.start, e.loss_sha256) for e in other.ledger.entries if e.start >= first_doc_end]


# ----------------------------------------------------------------------------- planted cheats


class PeekingAdapter:
    """Trains on the chunk after the one just scored: reads unscored tokens through the view."""

    def state(self):
        return {}

    def adapt(self, view: CommittedView, chunk: ChunkInfo):
        view.take([(chunk.end, chunk.end + 5)])

    def reset(self):
        pass

    def warmup(self, vocab_size):
        pass

    def close(self):
        pass


class ScoringTimeAdapter(PeekingAdapter):
    """Keeps the view and trains while the next chunk is scored, through a forward pre-hook."""

    def __init__(self, model):
        self.model = model
        self.view = None
        self.hook = next(model.children()).register_forward_pre_hook(self._train_now)

    def _train_now(self, module, args):
        if self.view is not None:
            self.view.take([(0, 5)])

    def adapt(self, view, chunk):
        self.view = view

    def close(self):
        self.hook.remove()


class MutatingAdapter(PeekingAdapter):
    """Changes a weight during every scoring forward (an update inside the scorer)."""

    def __init__(self, model):
        self.hook = next(model.children()).register_forward_hook(self._mutate)
        self.model = model

    def _mutate(self, module, args, output):
        with torch.inference_mode():
            next(self.model.parameters()).add_(1e-3)

    def adapt(self, view, chunk):
        pass

    def close(self):
        self.hook.remove()


class SilentAdapter(PeekingAdapter):
    """Changes parameters without reading anything through its view (from data it kept elsewhere)."""

    def __init__(self, model):
        self.model = model

    def adapt(self, view, chunk):
        with torch.no_grad():
            next(self.model.parameters()).add_(1e-3)


class PrivateReadAdapter(PeekingAdapter):
    """Reaches past the public API: records what the view's private token buffer holds beyond the
    committed prefix (the next, unscored chunk)."""

    def __init__(self):
        self.seen: list[torch.Tensor] = []

    def adapt(self, view, chunk):
        held = view._CommittedView__tokens  # name-mangled private attribute
        self.seen.append(held[chunk.end + 1 : chunk.end + 41].clone())
        view.take([(0, 5)])  # a legal read, so the run goes on


def test_no_object_the_adapter_reaches_holds_unscored_tokens():
    tokens = stream(130)
    spy = PrivateReadAdapter()
    run(ConvLM(), tokens, adapter=spy)
    assert spy.seen, "the adapter was never called"
    for held in spy.seen:  # zeros where the stream has the unscored chunk's tokens
        assert not held.any(), held
    assert torch.as_tensor(tokens[41:81]).any()


def test_reading_an_unscored_token_is_stopped():
    with pytest.raises(LegalityError, match=r"only \[0, 40\) are scored"):
        run(ConvLM(), stream(130), adapter=PeekingAdapter())


def test_adapting_while_the_next_chunk_is_scored_is_stopped():
    model = ConvLM()
    with pytest.raises(LegalityError, match="outside its adaptation phase"):
        run(model, stream(130), adapter=ScoringTimeAdapter(model))


def test_mutating_parameters_during_scoring_is_stopped():
    model = ConvLM()
    with pytest.raises(LegalityError, match=r"parameters changed while chunk 0 \(positions \[0, 40\)\) was scored"):
        run(model, stream(130), adapter=MutatingAdapter(model))


def test_changing_parameters_without_committed_spans_is_stopped():
    model = ConvLM()
    with pytest.raises(LegalityError, match="without reading committed spans"):
        run(model, stream(130), adapter=SilentAdapter(model))


def test_view_refuses_spans_before_its_floor_and_after_close():
    from pgolf.eval import ScoreLedger

    led = ScoreLedger(20, "x")
    led.commit(0, 10, np.ones(10, dtype=np.float32), np.ones(10), "x", "x")
    view = CommittedView(torch.arange(21), led, torch.device("cpu"), floor=4)
    x, y = view.take([(4, 8), (6, 10)])
    assert x.tolist() == [[4, 5, 6, 7], [6, 7, 8, 9]] and y.tolist() == [[5, 6, 7, 8], [7, 8, 9, 10]]
    view.step(epoch=0, lr=0.1)
    with pytest.raises(LegalityError, match="document's start"):
        view.take([(2, 6)])
    with pytest.raises(LegalityError, match="not allowed"):
        view.take([(8, 11)])
    view.close()
    with pytest.raises(LegalityError, match="outside its adaptation phase"):
        view.take([(4, 8)])
    assert led.entries[0].steps[0].spans == ((4, 8), (6, 10))


def test_adapter_in_a_non_ttt_mode_is_refused():
    with pytest.raises(ConfigError, match="adapter"):
        run(ConvLM(), stream(60), ttt_cfg(mode="sliding"), adapter=PeekingAdapter())


# ----------------------------------------------------------------------------- the clock (rules TIME-3)


class SlowAdapter(PeekingAdapter):
    """Reads its chunk and takes one step that costs one second of a fake clock."""

    def __init__(self, clock):
        self.clock = clock

    def adapt(self, view, chunk):
        view.take([(chunk.start, chunk.end)])
        view.step(epoch=0, lr=0.0)
        self.clock.now += 1.0


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_near_the_deadline_adaptation_stops_and_scoring_goes_on():
    clock = FakeClock()
    tokens = stream(1001, seed=8)
    cfg = ttt_cfg(chunk_tokens=20, deadline_margin_s=2.0)  # 50 chunks, 1 s of adaptation each
    result = evaluate(ConvLM(), tokens, byte_counts(tokens), cfg, bos_id=BOS, adapter=SlowAdapter(clock),
                      clock=clock, deadline=30.0)
    entries = result.ledger.entries
    adapted = [e.index for e in entries if e.steps]
    # chunk k may adapt while now (k s) + the longest adaptation so far (1 s) + the margin (2 s) <= 30
    assert adapted == list(range(28))
    assert result.adapt_stopped_at == 28
    assert all(e.adapt == "deadline" for e in entries[28:-1]) and entries[-1].adapt == "last"
    assert clock.now <= 30.0
    assert result.summary()["val_tokens"] == 1000  # every target still scored (MET-4)
    assert_ledger_ok(result, tokens)


def test_time_budget_from_config_uses_the_clock():
    clock = FakeClock()
    tokens = stream(401, seed=9)
    cfg = ttt_cfg(chunk_tokens=20, time_budget_s=5.0, deadline_margin_s=0.0)
    result = evaluate(ConvLM(), tokens, byte_counts(tokens), cfg, bos_id=BOS, adapter=SlowAdapter(clock), clock=clock)
    assert result.adapt_stopped_at == 5 and result.summary()["val_tokens"] == 400


# ----------------------------------------------------------------------------- warm-up (rules TTT-6)


def test_warmup_uses_synthetic_tokens_only(monkeypatch):
    import pgolf.eval.loop as loop

    model = tiny_gpt()
    tokens = stream(90, seed=10)
    seen = []
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: fn)  # eager stand-in, same code path
    real = loop.synthetic_warmup

    def spy(forward, cfg, vocab_size, device, adapter):
        def recording(x, y):
            seen.append(x.clone())
            return forward(x, y)
        return real(recording, cfg, vocab_size, device, adapter)

    monkeypatch.setattr(loop, "synthetic_warmup", spy)
    result = run(model, tokens, ttt_cfg(compile=True))
    assert seen and seen[0].shape == (4, 16)
    windows = torch.as_tensor(tokens[:16])
    assert not any(torch.equal(row, windows) for row in seen[0])
    assert result.warmup_time_s >= 0 and result.ledger.entries[0].params_before == result.ledger.params_initial
    assert_ledger_ok(result, tokens)


# ----------------------------------------------------------------------------- real text


@pytest.mark.slow
def test_ttt_lowers_bpb_of_a_trained_model_on_real_text(shared_dir, sp1024_path, webtext_path):
    """A small GPT trained on web text, evaluated on a WikiText article: a shift of domain that
    score-first TTT should adapt to (measured: sliding 3.34 -> TTT 2.94 bpb)."""
    import json

    import sentencepiece as spm
    import zstandard

    from pgolf.data import bpb
    from pgolf.model import GPT, ModelConfig

    sp = spm.SentencePieceProcessor(model_file=str(sp1024_path))

    def documents(path):
        with open(path, "rb") as f:
            lines = zstandard.ZstdDecompressor().stream_reader(f).read().decode().splitlines()
        return [json.loads(line)["text"] for line in lines]

    def encode(texts):
        return np.concatenate([np.concatenate(([1], ids)) for ids in sp.encode(texts)]).astype(np.int64)

    train = encode(documents(webtext_path)[1100:1500])
    val = encode(documents(shared_dir / "corpus" / "wikitext2_raw_test.jsonl.zst")[:1])[:6000]
    val_bytes = bpb.lut_stream_bytes(bpb.build_byte_tables(sp), val)

    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=1024, num_layers=1, model_dim=64, num_heads=2, num_kv_heads=1))
    opt = torch.optim.Adam(model.parameters(), lr=4e-3)
    rng = np.random.default_rng(0)
    stream_t = torch.from_numpy(train)
    for _ in range(150):
        ix = rng.integers(0, len(train) - 65, 16)
        x = torch.stack([stream_t[i : i + 64] for i in ix])
        y = torch.stack([stream_t[i + 1 : i + 65] for i in ix])
        loss = model.loss(x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 5.5  # it learned something (uniform is 6.93)

    base = {"seq_len": 64, "stride": 16, "chunk_tokens": 256, "time_budget_s": 0}
    sliding = evaluate(model, val, val_bytes, EvalConfig(mode="sliding", **base))
    ttt = evaluate(model, val, val_bytes, EvalConfig(mode="ttt", **base, ttt=TTTConfig(lr=0.05, epochs=3)))
    assert math.isfinite(sliding.val_bpb)
    assert ttt.val_bpb < sliding.val_bpb - 0.1, (sliding.val_bpb, ttt.val_bpb)
    assert ttt.summary()["val_tokens"] == sliding.summary()["val_tokens"] == len(val) - 1
    # evaluation leaves the model as it found it: scoring again gives the same bits
    again = evaluate(model, val, val_bytes, EvalConfig(mode="sliding", **base))
    assert [e.loss_sha256 for e in again.ledger.entries] == [e.loss_sha256 for e in sliding.ledger.entries]
