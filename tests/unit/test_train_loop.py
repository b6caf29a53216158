"""The training loop on small CPU models: clock, switches, averages, determinism, interrupt + resume."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pgolf import config as cfgmod
from pgolf.artifacts import load_safetensors, save_safetensors
from pgolf.data.stream import TokenBatches, TokenStream
from pgolf.model import GPT
from pgolf.train import Hooks, TrainConfig, TrainingInterrupted, ValData, log_line, train
from pgolf.train.checkpoint import decode_state, encode_state

VOCAB = 32


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class Toy(nn.Module):
    """A stand-in with GPT's interface; each training forward takes `step_s` fake seconds, each
    validation forward `val_s`, and the QAT / recurrence calls are recorded with the step count."""

    def __init__(self, clock=None, step_s=0.0, val_s=0.0):
        super().__init__()
        self.tok_emb = nn.Embedding(VOCAB, 8)
        self.blocks = nn.ModuleList([nn.Linear(8, 8, bias=False)])
        self.attn_scale = nn.Parameter(torch.ones(8))
        self.clock, self.step_s, self.val_s = clock, step_s, val_s
        self.forwards = 0
        self.qat_calls: list[tuple[int, object]] = []
        self.recur_calls: list[tuple[int, bool]] = []
        self.recurrence_active = False

    def token_nll(self, x, y):
        if self.clock is not None and not torch.is_grad_enabled():
            self.clock.now += self.val_s
        h = self.blocks[0](self.tok_emb(x)) * self.attn_scale
        logits = h @ self.tok_emb.weight.T
        return F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view_as(y)

    def loss(self, x, y):
        if self.clock is not None:
            self.clock.now += self.step_s
        self.forwards += 1
        return self.token_nll(x, y).mean()

    def set_qat(self, bits):
        self.qat_calls.append((self.forwards, bits))

    def set_recurrence(self, active):
        self.recurrence_active = active
        self.recur_calls.append((self.forwards, active))


def _cfg(*overrides, **model):
    model = {"num_layers": 2, "model_dim": 32, "num_heads": 4, "num_kv_heads": 2, "vocab_size": VOCAB, **model}
    base = ["seq_len=16", "batch_tokens=64", "grad_accum_base=2", "iterations=20", "max_seconds=0", "warmup_steps=0",
            "warmdown_iters=5", "log_every=1", "checkpoint_every_s=0", "val_batch_tokens=64", "matrix_lr=0.02"]
    return cfgmod.build(TrainConfig, {"model": model}, base + list(overrides))


def _data(n=4000, seed=0):
    # A learnable stream: a fixed random permutation walked with occasional jumps.
    rng = np.random.default_rng(seed)
    perm = rng.permutation(VOCAB)
    idx = np.cumsum(rng.random(n) < 0.9) % VOCAB
    return [perm[idx].astype(np.uint16)]


def _val():
    tokens = _data(600, seed=1)[0]
    return ValData(tokens, np.full(len(tokens), 2, dtype=np.int64))


def _batches(shards=None):
    return TokenBatches(TokenStream(shards or _data()))


def _events():
    events = []
    return events, Hooks(on_event=events.append)


def test_wallclock_cap_stops_within_one_step_and_excludes_validation():
    clock = FakeClock()
    model = Toy(clock, step_s=1.0, val_s=100.0)
    events, hooks = _events()
    cfg = _cfg("iterations=1000", "max_seconds=5.5", "val_every=2", "grad_accum_base=1")
    result = train(model, cfg, _batches(), val=_val(), hooks=hooks, clock=clock)
    assert result.stop_reason == "wallclock" and result.steps == 6
    assert 5.5 <= result.train_time_s < 6.5  # the last step overshoots by less than one step
    assert [e["step"] for e in events if e["event"] == "val" and e["weights"] == "live"] == [0, 2, 4]
    assert any(e["event"] == "stop" for e in events)
    assert "stopping_early: wallclock_cap" in log_line(next(e for e in events if e["event"] == "stop"))


def test_qat_and_recurrence_switch_on_at_their_fractions():
    model = Toy()
    cfg = _cfg("qat_start_frac=0.5", "recur_start_frac=0.25", "grad_accum_base=1", "qat_bits.mlp=5",
               recur_layers=[0])
    events, hooks = _events()
    result = train(model, cfg, _batches(), hooks=hooks)
    assert model.qat_calls == [(10, {"attn": 6, "mlp": 5})]  # before step 11 of 20: progress 0.5
    assert model.recur_calls == [(5, True)]
    assert result.switches == {"qat": 10, "recurrence": 5}
    assert [e["event"] for e in events if e["event"] in ("qat", "recurrence")] == ["recurrence", "qat"]


def test_ema_is_what_gets_saved():
    torch.manual_seed(0)
    model = Toy()
    shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}
    seen = []

    def on_event(e):
        if e["event"] == "step":  # after each optimizer step, mirror the EMA by hand
            for k, v in model.state_dict().items():
                shadow[k].mul_(0.9).add_(v.detach(), alpha=0.1)
            seen.append(e["step"])

    result = train(model, _cfg("ema_decay=0.9", "iterations=6"), _batches(), hooks=Hooks(on_event=on_event))
    assert result.weights == "ema" and seen == list(range(1, 7))
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, shadow[k], rtol=1e-5, atol=1e-6)


def test_swa_averages_the_warmdown_snapshots():
    torch.manual_seed(0)
    model = Toy()
    snaps = []

    def on_event(e):
        if e["event"] == "step" and e["step"] in (16, 18, 20):
            snaps.append({k: v.detach().clone() for k, v in model.state_dict().items()})

    events = []
    result = train(model, _cfg("swa_every=2", "swa_start_frac=0.9", "iterations=20", "warmdown_iters=5"), _batches(),
                   hooks=Hooks(on_event=lambda e: (events.append(e), on_event(e))))
    # lr multiplier before step s (0-based) is (20 - s) / 5 < 0.9 from s = 16: snapshots after steps 18 and 20
    assert result.weights == "swa" and result.swa_count == 2
    assert next(e for e in events if e["event"] == "swa_start")["step"] == 18
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, (snaps[1][k] + snaps[2][k]) / 2, rtol=1e-6, atol=1e-7)


def test_every_switch_on_a_tiny_gpt():
    cfg = _cfg("qat_start_frac=0.3", "recur_start_frac=0.5", "ema_decay=0.9", "swa_every=1", "swa_start_frac=1.0",
               "grad_clip=0.3", "muon_variant=eq_r", "ns_coefficients=polar_express", "warmdown_frac=0.5",
               "min_lr_frac=0.1", "muon_wd=0.04", "adam_wd=0.04", "warmup_steps=2", "iterations=6", "val_every=3",
               smear_gate=True, bigram_buckets=16, bigram_dim=8, value_embed_layers=[1], value_embed_dim=8,
               recur_layers=[1], xsa_last_n=2, rope_dims=4, ln_scale=True, skip_gates=True, tie_embeddings=False,
               backout=True, activation="swiglu", init="ortho", parallel_resid_from=1)
    torch.manual_seed(0)
    model = GPT(cfg.model)
    events, hooks = _events()
    result = train(model, cfg, _batches(), val=_val(), hooks=hooks)
    losses = [e["train_loss"] for e in events if e["event"] == "step"]
    assert len(losses) == 6 and all(np.isfinite(losses))
    assert result.weights == "swa" and result.swa_count >= 1 and model.recurrence_active
    assert set(result.switches) == {"qat", "recurrence"}
    assert np.isfinite(result.val.loss) and result.val.bpb == pytest.approx(result.val.loss / np.log(2) / 2)


def _gpt_run(cfg, resume=None, hooks=None):
    torch.manual_seed(cfg.seed)
    model = GPT(cfg.model)
    train(model, cfg, _batches(), hooks=hooks, resume=resume)
    return model.state_dict()


def _same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)


def test_same_seed_same_bits_and_warmup_resets_everything():
    cfg = _cfg("iterations=5", "ema_decay=0.5")
    _same(_gpt_run(cfg), _gpt_run(cfg))
    _same(_gpt_run(cfg), _gpt_run(cfg.__class__(**{**cfg.__dict__, "warmup_steps": 3})))


@pytest.mark.parametrize("ema_start", [0, 7])  # 7: the EMA starts after the interrupt (PR #366's start step)
def test_interrupt_checkpoints_and_resume_is_bit_identical(tmp_path, ema_start):
    cfg = _cfg("iterations=8", "ema_decay=0.8", "swa_every=1", "swa_start_frac=0.9", "qat_start_frac=0.25",
               f"ema_start_step={ema_start}")
    straight = _gpt_run(cfg)

    saved = []
    calls = iter(range(100))
    hooks = Hooks(on_checkpoint=saved.append, interrupted=lambda: next(calls) == 4)  # at step 5
    with pytest.raises(TrainingInterrupted):
        _gpt_run(cfg, hooks=hooks)
    assert [s.step for s in saved] == [5] and saved[0].qat_on and saved[0].swa_count >= 1
    # through the on-disk form (safetensors + JSON) and back
    tensors, meta = encode_state(saved[0], {"metrics_offset": 7})
    save_safetensors(tmp_path / "ckpt.safetensors", tensors, {"pgolf.checkpoint": meta})
    loaded, raw_meta = load_safetensors(tmp_path / "ckpt.safetensors")
    state, extra = decode_state(loaded, raw_meta["pgolf.checkpoint"])
    assert extra == {"metrics_offset": 7} and state.stream == saved[0].stream
    _same(_gpt_run(cfg, resume=state), straight)


def test_ddp_wrapper_uses_no_deprecated_argument(tmp_path):
    """torch 2.13 deprecates DDP's broadcast_buffers with a FutureWarning; the wrapper asks for the same
    behaviour (no buffer sync before each forward) by whichever name this torch knows."""
    import warnings

    import torch.distributed as dist

    from pgolf.train.loop import wrap_ddp

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", FutureWarning)
            wrapped = wrap_ddp(nn.Linear(4, 2), torch.device("cpu"))
        assert wrapped(torch.ones(3, 4)).shape == (3, 2)
        assert getattr(wrapped, "forward_sync_buffers", getattr(wrapped, "broadcast_buffers", None)) is False
    finally:
        dist.destroy_process_group()


class _NoCompiler(RuntimeError):
    """What a backend raises on a machine without a C++ compiler (its type lives under torch)."""


_NoCompiler.__module__ = "torch._inductor.exc"


def _failing_compile(error):
    def compile_(module, **_):
        class Broken(nn.Module):
            def forward(self, *args):
                raise error

        return Broken()

    return compile_


def test_a_machine_that_cannot_compile_trains_eagerly(monkeypatch):
    monkeypatch.setattr(torch, "compile", _failing_compile(_NoCompiler("InvalidCxxCompiler: no working C++ compiler")))
    events, hooks = _events()
    cfg = _cfg("iterations=4", "warmup_steps=2", "compile=true")
    result = train(Toy(), cfg, _batches(), hooks=hooks)
    assert result.steps == 4
    warning = next(e for e in events if e["event"] == "warning")
    assert "torch.compile failed" in warning["message"] and "no working C++ compiler" in warning["message"]
    # the same bits as an eager run: the failed attempt changed nothing
    torch.manual_seed(0)
    eager = Toy()
    torch.manual_seed(0)
    fell_back = Toy()
    train(eager, _cfg("iterations=4", "warmup_steps=2"), _batches())
    train(fell_back, cfg, _batches())
    _same(eager.state_dict(), fell_back.state_dict())


def test_a_bug_is_not_mistaken_for_a_compile_failure(monkeypatch):
    monkeypatch.setattr(torch, "compile", _failing_compile(ValueError("a bug in the model")))
    with pytest.raises(ValueError, match="a bug in the model"):
        train(Toy(), _cfg("iterations=2", "warmup_steps=1", "compile=true"), _batches())


def test_ema_starts_at_ema_start_step_as_a_copy():
    """PR #366: the EMA is the weights after step N, then averaged after every later step."""
    torch.manual_seed(0)
    model = Toy()
    shadow: dict = {}

    def on_event(e):
        if e["event"] == "step":
            if e["step"] == 3:
                shadow.update({k: v.detach().clone() for k, v in model.state_dict().items()})
            elif e["step"] > 3:
                for k, v in model.state_dict().items():
                    shadow[k].mul_(0.9).add_(v.detach(), alpha=0.1)

    result = train(model, _cfg("ema_decay=0.9", "ema_start_step=3", "iterations=6"), _batches(),
                   hooks=Hooks(on_event=on_event))
    assert result.weights == "ema"
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, shadow[k], rtol=1e-5, atol=1e-6)


def test_ema_restarts_when_qat_starts():
    """PR #1216: the EMA is dropped when QAT switches on and restarts from the weights after that step."""
    torch.manual_seed(0)
    model = Toy()
    shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def on_event(e):
        if e["event"] == "step":
            if e["step"] == 4:  # QAT switched on before step 4 (progress 3/6)
                shadow.update({k: v.detach().clone() for k, v in model.state_dict().items()})
            else:
                for k, v in model.state_dict().items():
                    shadow[k].mul_(0.9).add_(v.detach(), alpha=0.1)

    result = train(model, _cfg("ema_decay=0.9", "ema_restart_at_qat=true", "qat_start_frac=0.5", "iterations=6"),
                   _batches(), hooks=Hooks(on_event=on_event))
    assert result.switches == {"qat": 3} and result.weights == "ema"
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, shadow[k], rtol=1e-5, atol=1e-6)


def test_qat_starts_when_the_lr_multiplier_falls_below_its_threshold():
    """PR #861 / #1406: late QAT at the first step whose lr multiplier is below qat_start_lr_mult."""
    from pgolf.optim.schedules import lr_multiplier

    model = Toy()
    cfg = _cfg("qat_start_lr_mult=0.5", "grad_accum_base=1", "qat_bits.mlp=5")
    result = train(model, cfg, _batches())
    first = next(s for s in range(cfg.iterations) if lr_multiplier(
        s, 0.0, iterations=cfg.iterations, max_seconds=0, warmdown_iters=cfg.warmdown_iters) < 0.5)
    assert first > 10 and model.qat_calls == [(first, {"attn": 6, "mlp": 5})]
    assert result.switches == {"qat": first}
