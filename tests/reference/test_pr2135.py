"""The `sota` preset against PR #2135's own train_gpt.py (reference/pr2135), imported with the variables
of the training command in its README set (what its launch ran).

The record imports triton and FlashAttention 3 unconditionally. From outside, for its own import
statements only (refimport's extra_stubs; sys.modules never holds them):
- `triton`, `triton.language`, `triton.tools.tensor_descriptor` are stubs whose `jit` returns the
  function unchanged; its Triton kernels (the fused softcapped cross-entropy, the fused LeakyReLU^2
  MLP) are never called: FUSED_CE_ENABLED=0 selects its own eager cross-entropy ("matches stock
  numerics exactly", its comment) and each block's `mlp.use_fused = False` its own eager MLP;
- `flash_attn_interface` is a stub whose `flash_attn_func` / `flash_attn_varlen_func` are causal GQA
  softmax attention (the varlen one per cu_seqlens segment) written with SDPA in this file: the same
  attention, on the CPU.
Its Newton-Schulz is `@torch.compile`d; the tests call the function it wraps (`__wrapped__`).
Its block matrices live in banks (qo_bank: Q then out-projections, kv_bank: K then V, mlp_up_bank,
mlp_down_bank); pgolf keeps per-layer matrices and the name map slices the banks.
"""

from __future__ import annotations

import math
import types
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch
import torch.nn.functional as F

from pgolf.model import GPT
from pgolf.optim.groups import build_optimizers
from pgolf.optim.schedules import lr_multiplier, muon_momentum, switched_on, training_progress

from . import cases
from .refimport import batch_with_bos, preset, readme_env, sources

LAYERS = 11  # the launch's: the recurrence (3-5) and the lanes (8+) need them
ATOL, RTOL = 2e-5, 1e-5


# ----------------------------------------------------------------------------- stubs of GPU-only imports


def _attention(q_BTHE: torch.Tensor, k_BTKE: torch.Tensor, v_BTKE: torch.Tensor) -> torch.Tensor:
    """Causal GQA softmax attention in FlashAttention's (B, T, heads, E) layout."""
    group = q_BTHE.size(2) // k_BTKE.size(2)
    q, k, v = (t.transpose(1, 2) for t in (q_BTHE, k_BTKE.repeat_interleave(group, 2), v_BTKE.repeat_interleave(group, 2)))
    return F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2)


def _flash_attn_func(q, k, v, causal=True, **_):
    assert causal
    return _attention(q, k, v)


def _flash_attn_varlen_func(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, causal=True,
                            window_size=(-1, -1)):
    """Causal attention inside each [cu[i], cu[i+1]) segment of the packed (tokens, heads, E) inputs."""
    assert causal and window_size == (-1, -1) and torch.equal(cu_seqlens_q, cu_seqlens_k)
    bounds = torch.unique(cu_seqlens_q).tolist()
    parts = [_attention(q[None, a:b], k[None, a:b], v[None, a:b])[0] for a, b in zip(bounds, bounds[1:])]
    return torch.cat(parts, dim=0)


def _stubs() -> dict[str, types.ModuleType]:
    triton = types.ModuleType("triton")
    language = types.ModuleType("triton.language")
    tools = types.ModuleType("triton.tools")
    descriptor = types.ModuleType("triton.tools.tensor_descriptor")
    triton.jit = lambda fn=None, **_: fn if fn is not None else (lambda f: f)  # type: ignore[attr-defined]
    triton.cdiv = lambda a, b: -(-a // b)  # type: ignore[attr-defined]
    language.constexpr = object  # type: ignore[attr-defined]  # only read in kernel annotations
    descriptor.TensorDescriptor = object  # type: ignore[attr-defined]
    triton.language, triton.tools, tools.tensor_descriptor = language, tools, descriptor  # type: ignore[attr-defined]
    flash = types.ModuleType("flash_attn_interface")
    flash.flash_attn_func = _flash_attn_func  # type: ignore[attr-defined]
    flash.flash_attn_varlen_func = _flash_attn_varlen_func  # type: ignore[attr-defined]
    return {"triton": triton, "triton.language": language, "triton.tools": tools,
            "triton.tools.tensor_descriptor": descriptor, "flash_attn_interface": flash}


# ----------------------------------------------------------------------------- the record


def record_env(folder) -> dict[str, str]:
    """The training command in the record's README (SEED=$SEED left out), with FUSED_CE_ENABLED=0: its
    Triton cross-entropy cannot run here; its eager path is the same loss."""
    return {**readme_env(folder / "README.md", "Training command"), "FUSED_CE_ENABLED": "0"}


def record_gpt(mod, args):
    """GPT(h) as train_model() builds it (before its bf16 cast, which the tests do not do), with each
    block's eager MLP (its fused one is a Triton kernel)."""
    model = mod.GPT(args)
    for block in model.blocks:
        block.mlp.use_fused = False
    return model


def name_map(name: str):
    bank = cases.bank_source(name, LAYERS)
    if bank is not None:
        return bank
    return {"smear.window_gate": "smear_gate.weight", "smear.lam": "smear_lambda"}.get(name, name), None


def far_apart_caps(_cfg, record, _model):
    with torch.no_grad():  # caps far apart, so the AsymLogit rescale shows in the logits
        record.softcap_pos.fill_(4.0)
        record.softcap_neg.fill_(9.0)


CASE = cases.RecordCase(
    folder="pr2135", preset="sota", params=35_945_673,  # params: its logs' model_params
    small=("model_dim=64", "num_heads=4", "num_kv_heads=2", "vocab_size=256"),
    small_args={"model_dim": 64, "num_heads": 4, "num_kv_heads": 2, "vocab_size": 256},
    record_gpt=record_gpt, record_optimizers=lambda mod, args, m: mod.Optimizers(args, m), name_map=name_map,
    rename={**cases.BANK_RENAME, "smear_gate": "smear", "smear_lambda": "smear"},
    launch_env=record_env, extra_stubs=_stubs, prepare=far_apart_caps,
)


def assert_same_training_step(mod, rec, model, x, y, **record_kwargs) -> None:
    """Equal loss, equal gradients of every trained parameter (training mode, float32), and equal
    evaluation logits (its forward_logits, with the learned caps)."""
    rec.float().train()
    model.float().train()
    rec.zero_grad(set_to_none=True)
    model.zero_grad(set_to_none=True)
    ref_loss = rec(x, y, **record_kwargs)
    loss = model.loss(x, y)
    torch.testing.assert_close(loss, ref_loss, atol=ATOL, rtol=RTOL)
    ref_loss.backward()
    loss.backward()
    rec_params = dict(rec.named_parameters())
    for name, p in model.named_parameters():
        (src, index), = sources(name_map, name)
        ref_grad = rec_params[src].grad
        if not p.requires_grad:  # the AsymLogit caps: the record's training loss does not reach them either
            assert ref_grad is None and name in ("softcap_pos", "softcap_neg"), name
            continue
        assert p.grad is not None and ref_grad is not None, name
        ref_grad = ref_grad if index is None else ref_grad[index]
        torch.testing.assert_close(p.grad, ref_grad.reshape(p.shape), atol=ATOL, rtol=RTOL,
                                   msg=lambda m, n=name: f"{n}: {m}")
    with torch.no_grad():
        ref_logits = rec.forward_logits(x, **record_kwargs)
        logits = model(x)
    torch.testing.assert_close(logits, ref_logits.float(), atol=ATOL, rtol=RTOL)


# ----------------------------------------------------------------------------- model


@pytest.mark.parametrize("looping", [False, True])
def test_model_logits_and_gradients_match_the_record(reference_dir, monkeypatch, looping):
    """Layers 3-5 looped twice more (encoder 0,1,2,3,4,5,3,4 / decoder 5,3,4,5,6..10) or not; two lanes
    from layer 8; sparse attention gate; window SmearGate across BOS (SMEAR_GATE_BOS_FIX=0, the
    launch's); AsymLogit caps. Plain causal attention on both sides (attn_doc_mask is tested below)."""
    monkeypatch.setenv("SMEAR_GATE_BOS_FIX", "0")
    mod, cfg, rec, model = cases.built_pair(CASE, reference_dir, "attn_doc_mask=false")
    assert cfg.model.bos_reset is False
    rec.looping_active = looping
    model.set_recurrence(looping)
    assert list(model.layer_order()) == (rec.encoder_indices + rec.decoder_indices if looping else list(range(LAYERS)))
    x, y = batch_with_bos(cfg.model.vocab_size, 3, 24)
    assert_same_training_step(mod, rec, model, x, y)
    # the learned caps matter: the symmetric cap would give other evaluation logits
    with torch.no_grad():
        assert (model(x) - model._softcap(model._head(x), learned=False)).abs().max() > 1e-3


def test_bos_fixed_smear_is_the_records_smear_gate_bos_fix(reference_dir, monkeypatch):
    """pgolf's bos_reset = true is the record's SMEAR_GATE_BOS_FIX=1 (read at every forward); the
    launch's 0 is bos_reset = false, and the two differ at BOS positions."""
    monkeypatch.setenv("SMEAR_GATE_BOS_FIX", "1")
    mod, cfg, rec, model = cases.built_pair(CASE, reference_dir, "attn_doc_mask=false", "bos_reset=true")
    monkeypatch.setattr(mod, "BOS_ID", cfg.model.bos_id)  # its data loaders set the global to 1
    x, y = batch_with_bos(cfg.model.vocab_size, 3, 24)
    assert_same_training_step(mod, rec, model, x, y)
    unfixed = GPT(preset(CASE.preset, *CASE.small, "attn_doc_mask=false").model)
    unfixed.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert (unfixed.embed(x) - model.embed(x)).abs().max() > 1e-3


def test_document_isolated_attention_is_the_records_varlen_path(reference_dir, monkeypatch):
    """The record trains and evaluates with FlashAttention varlen over segments starting at each BOS
    (its _build_cu_seqlens, one packed row): pgolf's attn_doc_mask = true, the preset's setting."""
    monkeypatch.setenv("SMEAR_GATE_BOS_FIX", "0")
    mod, cfg, rec, model = cases.built_pair(CASE, reference_dir)
    assert cfg.model.attn_doc_mask
    x, y = batch_with_bos(cfg.model.vocab_size, 1, 40)
    bos = (x[0] == cfg.model.bos_id).nonzero().flatten().tolist()
    cu, max_len = mod._build_cu_seqlens(bos, x.size(1), x.device, 0, 64)
    assert len(bos) >= 2
    rec.looping_active = True
    model.set_recurrence(True)
    assert_same_training_step(mod, rec, model, x, y, cu_seqlens=cu, max_seqlen=max_len)


def test_parameter_count_at_the_launch_shape(reference_dir):
    cases.check_parameter_count(CASE, reference_dir)


# ----------------------------------------------------------------------------- optimizers


def test_optimizer_groups_match_the_record(reference_dir):
    """Its Optimizers(h, model): tok_emb -> AdamW at TIED_EMBED_LR with EMBED_WD; the four banks ->
    Muon at MATRIX_LR with MUON_WD; every block scalar / control tensor, skip weights and gates, the
    lane lambdas and the SmearGate -> AdamW at SCALAR_LR with ADAM_WD; betas (0.9, BETA2); the AsymLogit
    caps in none."""
    tables = cases.optimizer_tables(CASE, reference_dir)
    cfg, opts, theirs = tables.cfg, tables.record_optimizers, tables.theirs
    assert tables.ours == theirs
    assert "softcap_pos" not in theirs and len(theirs) == sum(p.requires_grad for p in tables.model.parameters())
    muon = opts.optimizer_muon.param_groups[0]
    assert (muon["nesterov"], muon["row_normalize"], muon["backend_steps"]) == (True, True, cfg.muon_backend_steps)
    assert (cfg.muon_variant, cfg.ns_coefficients) == ("eq_r", "polar_express_pr1344")
    assert not muon["huber_wd"]


@contextmanager
def _record_arithmetic_in_float64(mod, monkeypatch) -> Iterator[None]:
    """Run its Muon step in float64: its `.bfloat16()` (gradient, momentum, Newton-Schulz input) and
    `.float()` (row norms) casts become `.double()`, and the compiled Newton-Schulz its Python body."""
    with monkeypatch.context() as mp:
        mp.setattr(torch.Tensor, "bfloat16", lambda self, *a, **k: self.double())
        mp.setattr(torch.Tensor, "float", lambda self, *a, **k: self.double())
        mp.setattr(mod, "zeropower_via_newtonschulz5", mod.zeropower_via_newtonschulz5.__wrapped__)
        yield


def test_muon_steps_match_the_record_in_float64(reference_dir, monkeypatch):
    """Three steps of its Muon (Nesterov, row normalization, Polar Express normalized by ||U|| + 1e-7,
    sqrt(max(1, rows/cols)) scale, decoupled wd) on two banks, against pgolf's matrix optimizer on the
    same matrices and gradients, momentum and lr changing between steps as its loop changes them."""
    mod = cases.load(CASE, reference_dir)
    cfg = preset(CASE.preset)
    g = torch.Generator().manual_seed(0)
    banks = [torch.randn(2, 24, 16, generator=g, dtype=torch.float64),
             torch.randn(2, 16, 40, generator=g, dtype=torch.float64)]
    theirs = [torch.nn.Parameter(b.clone()) for b in banks]
    ours = torch.nn.ParameterList([torch.nn.Parameter(b[i].clone()) for b in banks for i in range(2)])
    rec_opt = mod.Muon(theirs, lr=cfg.matrix_lr, momentum=cfg.muon_momentum, backend_steps=cfg.muon_backend_steps,
                       weight_decay=cfg.muon_wd, row_normalize=True)
    holder = torch.nn.Module()
    holder.blocks = ours  # 2-D parameters outside the control patterns: pgolf's matrix group
    opts = build_optimizers(holder, cfg.optim_settings(), True, ns_dtype=torch.float64)
    assert list(opts.optimizers) == ["matrix"]
    for step, (lr_mult, momentum) in enumerate([(1.0, 0.92), (0.9, 0.95), (0.5, 0.97)]):
        grads = [torch.randn(b.shape, generator=g, dtype=torch.float64) for b in banks]
        for p, gr in zip(theirs, grads):
            p.grad = gr.clone()
        for j, p in enumerate(ours):
            p.grad = grads[j // 2][j % 2].clone()
        for group in rec_opt.param_groups:
            group["lr"], group["momentum"] = cfg.matrix_lr * lr_mult, momentum
        opts.set_lr_multiplier(lr_mult)
        opts.set_muon_momentum(momentum)
        with _record_arithmetic_in_float64(mod, monkeypatch):
            rec_opt.step()
        opts.step()
        for j, p in enumerate(ours):
            torch.testing.assert_close(p.detach(), theirs[j // 2].detach()[j % 2], atol=1e-12, rtol=1e-12,
                                       msg=lambda m, s=step, j=j: f"step {s}, matrix {j}: {m}")
    assert (ours[0] - banks[0][0]).abs().max() > 1e-3  # the steps moved the weights


# ----------------------------------------------------------------------------- schedule


def _nested(mod, outer, name: str, **cells):
    """A function defined inside `outer` (its train_model), rebuilt from its code object with the
    given values for the variables it closes over."""
    code = next(c for c in outer.__code__.co_consts if isinstance(c, types.CodeType) and c.co_name == name)
    return types.FunctionType(code, mod.__dict__, name, None, tuple(types.CellType(cells[v]) for v in code.co_freevars))


def test_lr_schedule_and_switches_match_the_record(reference_dir):
    """Its train_model's training_frac and lr_mul (rebuilt from its code) against pgolf's schedule:
    progress = elapsed / (600 s - 0.5 s GPTQ reserve), lr multiplier max((1 - p) / 0.85, 0.1) in the
    last 85%; looping from progress 0.35; Muon momentum 0.92 -> 0.97 over 1500 steps."""
    mod = cases.load(CASE, reference_dir)
    h = mod.Hyperparameters()
    cap_ms = 1e3 * h.max_wallclock_seconds - h.gptq_reserve_seconds * 1e3  # train_model's two lines
    frac_of = _nested(mod, mod.train_model, "training_frac", h=h, max_wallclock_ms=cap_ms)
    lr_mul = _nested(mod, mod.train_model, "lr_mul", h=h)
    cfg = preset(CASE.preset)
    for elapsed in (0.0, 30.0, 89.0, 89.925, 120.0, 209.825, 300.0, 450.0, 540.0, 590.0, 599.0, 599.5):
        step = int(elapsed * 8.33)  # its runs: about 4,994 steps in 599.5 s
        frac = frac_of(step, 1e3 * elapsed)
        progress = training_progress(step, elapsed, cfg.iterations, cfg.max_seconds)
        assert progress == pytest.approx(frac, abs=1e-12)
        ours = lr_multiplier(step, elapsed, iterations=cfg.iterations, max_seconds=cfg.max_seconds,
                             warmdown_iters=cfg.warmdown_iters, warmdown_frac=cfg.warmdown_frac,
                             min_lr_frac=cfg.min_lr_frac)
        assert ours == pytest.approx(lr_mul(frac), abs=1e-12), elapsed
        assert switched_on(cfg.recur_start_frac, progress) == (frac >= h.enable_looping_at)
    assert lr_mul(frac_of(4994, 599_000.0)) == h.min_lr == cfg.min_lr_frac  # the floor binds at the end
    for step in (0, 750, 1500, 3000):  # its step_fn: (1 - f) start + f target, f = min(step / 1500, 1)
        f = min(step / h.muon_momentum_warmup_steps, 1.0)
        expected = (1 - f) * h.muon_momentum_warmup_start + f * h.muon_momentum
        assert muon_momentum(step, cfg.muon_momentum, cfg.muon_momentum_warmup_start,
                             cfg.muon_momentum_warmup_steps) == pytest.approx(expected, abs=1e-15)


def test_training_hyperparameters_are_the_launchs(reference_dir):
    h = cases.load(CASE, reference_dir).Hyperparameters()
    cfg = preset(CASE.preset)
    cases.assert_launch_pairs(cfg, h, {
        **cases.LAUNCH_PAIRS, "warmdown_frac": "warmdown_frac", "min_lr_frac": "min_lr", "beta1": "beta1",
        "beta2": "beta2", "adam_eps": "adam_eps", "adam_wd": "adam_wd", "embed_wd": "embed_wd",
        "muon_backend_steps": "muon_backend_steps", "muon_wd": "muon_wd", "ema_decay": "ema_decay",
        "recur_start_frac": "enable_looping_at"})
    assert cfg.max_seconds == h.max_wallclock_seconds - h.gptq_reserve_seconds
    assert cfg.ema_start_step == 0  # its EMA starts from the weights after the warm-up reset
    assert h.muon_row_normalize and not h.muon_huber_wd and not h.rope_yarn and not h.qk_gain_schedule
    m = cfg.model
    model_pairs = {"vocab_size": "vocab_size", "num_layers": "num_layers", "model_dim": "model_dim",
                   "num_heads": "num_heads", "num_kv_heads": "num_kv_heads", "mlp_mult": "mlp_mult",
                   "tie_embeddings": "tie_embeddings", "logit_softcap": "logit_softcap",
                   "asym_softcap": "asym_logit_rescale", "tied_embed_init_std": "tied_embed_init_std",
                   "rope_base": "rope_base", "rope_dims": "rope_dims", "qk_gain_init": "qk_gain_init",
                   "xsa_last_n": "xsa_last_n", "ln_scale": "ln_scale", "skip_gates": "skip_gates_enabled",
                   "sparse_attn_gate": "sparse_attn_gate_enabled", "sparse_attn_gate_scale": "sparse_attn_gate_scale",
                   "gate_window": "gate_window", "smear_gate": "smear_gate_enabled",
                   "parallel_lanes_from": "parallel_start_layer", "parallel_lane_out": "parallel_final_lane",
                   "recur_loops": "num_loops"}
    cases.assert_launch_pairs(m, h, model_pairs)
    assert list(m.recur_layers) == list(range(h.loop_start, h.loop_end + 1)) and m.recur_placement == "in_place"
    assert m.smear_kind == "window" and m.rope_ref_len == 0 and h.sparse_attn_gate_init_std == 0.0
    assert math.isclose(m.leaky_slope, 0.5) and m.activation == "leaky_relu2"
