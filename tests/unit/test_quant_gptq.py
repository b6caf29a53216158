"""Full-Hessian GPTQ, Hessian collection and self-generated calibration."""

import pytest
import torch
from torch import nn

from pgolf.errors import ConfigError, DataError
from pgolf.model import GPT, ModelConfig
from pgolf.quant import (
    ClipSpec,
    HessianCollector,
    QuantizeConfig,
    collect_hessians,
    dequantize_state,
    generate_calibration,
    gptq_quantize,
    quantize_state,
    rtn_quantize,
)
from pgolf.quant.matrix import GPTQFailure, gptq_codes

EXACT = {"rtol": 0, "atol": 0}


def correlated_inputs(tokens=2048, cols=96, seed=0):
    """Activations X [tokens, cols] with strongly correlated, unequal-variance features (like LM hiddens)."""
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(cols, cols, generator=g) / cols**0.5 + torch.eye(cols)
    scale = torch.logspace(0, 1, cols)
    return (torch.randn(tokens, cols, generator=g) * scale) @ mix


def output_error(x, w, w_hat):
    return (x @ w.T - x @ w_hat.T).norm().item()


@pytest.mark.parametrize("bits", [4, 5, 6])
def test_gptq_lowers_the_output_error_against_rtn(bits):
    torch.manual_seed(0)
    x = correlated_inputs()
    w = torch.randn(48, 96) * 0.05
    h = x.T @ x
    rtn = output_error(x, w, rtn_quantize(w, bits).dequantize())
    gptq = gptq_quantize(w, h, bits, ClipSpec(method="rowmax"))
    assert gptq.info["method"] == "gptq" and gptq.codes.abs().max() <= 2 ** (bits - 1) - 1
    assert output_error(x, w, gptq.dequantize()) < 0.9 * rtn
    # Same with the clip search inside GPTQ (one sweep per candidate, best by output error).
    searched = gptq_quantize(w, h, bits, ClipSpec(method="search"))
    assert output_error(x, w, searched.dequantize()) <= output_error(x, w, gptq.dequantize()) * 1.0001
    per_row = gptq_quantize(w, h, bits, ClipSpec(method="search", granularity="row"))
    assert output_error(x, w, per_row.dequantize()) <= output_error(x, w, searched.dequantize()) * 1.0001


def test_gptq_with_act_order_and_small_blocks_agree_in_quality():
    torch.manual_seed(1)
    x = correlated_inputs(cols=64)
    w = torch.randn(32, 64)
    h = x.T @ x
    rtn = output_error(x, w, rtn_quantize(w, 5).dequantize())
    for act_order in (True, False):
        for block in (1, 16, 128):
            rq = gptq_quantize(w, h, 5, ClipSpec(method="rowmax"), act_order=act_order, block_size=block)
            assert output_error(x, w, rq.dequantize()) < rtn


def test_block_size_does_not_change_the_result():
    # Lazy batch updates are an exact rearrangement of the column-by-column sweep (up to fp rounding).
    torch.manual_seed(2)
    x = correlated_inputs(cols=64)
    w = torch.randn(16, 64)
    s = rtn_quantize(w, 6).scale
    a = gptq_codes(w, x.T @ x, s, 6, block_size=64)
    b = gptq_codes(w, x.T @ x, s, 6, block_size=8)
    assert (a != b).float().mean() < 0.01


def test_identity_hessian_reduces_to_round_to_nearest():
    # With H = I the inverse factor is diagonal: no error is propagated, so GPTQ rounds like RTN.
    torch.manual_seed(3)
    w = torch.randn(8, 40)
    rq = gptq_quantize(w, torch.eye(40), 6, ClipSpec(method="rowmax"))
    ref = rtn_quantize(w, 6)
    torch.testing.assert_close(rq.codes, ref.codes, **EXACT)
    torch.testing.assert_close(rq.scale, ref.scale, **EXACT)


def test_dead_inputs_get_zero_weights():
    torch.manual_seed(4)
    x = correlated_inputs(cols=32)
    x[:, 5] = 0.0  # an input that never fires
    w = torch.randn(8, 32)
    rq = gptq_quantize(w, x.T @ x, 6, ClipSpec(method="rowmax"))
    assert rq.info["dead_inputs"] == 1
    assert (rq.codes[:, 5] == 0).all()


def test_pruned_entries_stay_zero_under_gptq():
    torch.manual_seed(5)
    x = correlated_inputs(cols=32)
    w = torch.randn(8, 32)
    keep_zero = torch.rand(8, 32) < 0.2
    w = w.masked_fill(keep_zero, 0.0)
    rq = gptq_quantize(w, x.T @ x, 5, ClipSpec(method="rowmax"), keep_zero=keep_zero)
    assert (rq.codes[keep_zero] == 0).all()
    assert (rq.codes[~keep_zero] != 0).any()


@pytest.mark.parametrize("bad", ["negative", "nan"])
def test_failed_cholesky_falls_back_to_the_clip_search(bad):
    torch.manual_seed(6)
    w = torch.randn(8, 16)
    h = -torch.eye(16) if bad == "negative" else torch.full((16, 16), float("nan"))
    with pytest.raises(GPTQFailure):
        gptq_codes(w, h, rtn_quantize(w, 6).scale, 6)
    rq = gptq_quantize(w, h, 6, ClipSpec(method="rowmax"))
    ref = rtn_quantize(w, 6, ClipSpec(method="search"))
    assert "gptq failed" in rq.info["fallback"] and rq.info["method"] == "rtn"
    torch.testing.assert_close(rq.codes, ref.codes, **EXACT)
    torch.testing.assert_close(rq.scale, ref.scale, **EXACT)


def test_damping_is_applied_once():
    from pgolf.quant.matrix import prepare_hessian

    h = torch.diag(torch.tensor([2.0, 4.0, 0.0]))
    damped, dead = prepare_hessian(h, 0.01)
    assert dead.tolist() == [False, False, True]
    # dead input set to 1, then + 0.01 * mean(2, 4, 1) on the diagonal
    torch.testing.assert_close(torch.diagonal(damped), torch.tensor([2.0, 4.0, 1.0]) + 0.01 * 7 / 3)


# ----------------------------------------------------------------------------- calibration


class TinyLM(nn.Module):
    """Baseline-named layers: attn.c_q/c_k/c_v/proj and mlp.fc/proj (relu^2), a final norm, tied head."""

    def __init__(self, vocab=32, dim=16):
        super().__init__()
        self.tok_emb = nn.Embedding(vocab, dim)
        self.attn = nn.ModuleDict({n: nn.Linear(dim, dim, bias=False) for n in ("c_q", "c_k", "c_v", "proj")})
        self.mlp = nn.ModuleDict({"fc": nn.Linear(dim, 2 * dim, bias=False), "proj": nn.Linear(2 * dim, dim, bias=False)})
        self.final_norm = nn.LayerNorm(dim, elementwise_affine=False)
        self.seen: dict[str, list[torch.Tensor]] = {"attn_in": [], "hidden": [], "head_in": []}

    def forward(self, idx):
        x = self.tok_emb(idx)
        h = torch.tanh(x)
        self.seen["attn_in"].append(h)
        q, k, v = self.attn["c_q"](h), self.attn["c_k"](h), self.attn["c_v"](h)
        x = x + self.attn["proj"](torch.softmax(q @ k.transpose(-1, -2), -1) @ v)
        hid = torch.relu(self.mlp["fc"](x)).square()
        self.seen["hidden"].append(hid)
        x = self.final_norm(x + self.mlp["proj"](hid))
        self.seen["head_in"].append(x)
        return x @ self.tok_emb.weight.T


def mean_xtx(xs):
    x = torch.cat([t.reshape(-1, t.shape[-1]) for t in xs])
    return x.T @ x / x.shape[0]


def test_hessian_collector_accumulates_the_inputs_of_each_linear():
    torch.manual_seed(7)
    model = TinyLM()
    batches = [torch.randint(0, 32, (2, 7)) for _ in range(3)]
    with HessianCollector(model, extra={"tok_emb.weight": ("final_norm", "output")}) as hc:
        with torch.no_grad():
            for idx in batches:
                model(idx)
    hs = hc.hessians()
    assert set(hs) == {f"attn.{n}.weight" for n in ("c_q", "c_k", "c_v", "proj")} | {
        "mlp.fc.weight",
        "mlp.proj.weight",
        "tok_emb.weight",
    }
    expected_attn = mean_xtx(model.seen["attn_in"])
    for n in ("c_q", "c_k", "c_v"):  # q/k/v share the attention input
        torch.testing.assert_close(hs[f"attn.{n}.weight"], expected_attn)
    torch.testing.assert_close(hs["mlp.proj.weight"], mean_xtx(model.seen["hidden"]))  # post-activation
    torch.testing.assert_close(hs["tok_emb.weight"], mean_xtx(model.seen["head_in"]))
    assert hs["mlp.proj.weight"].shape == (32, 32) and hc.num_rows["mlp.fc.weight"] == 3 * 2 * 7
    # Hooks are gone after the block: another forward changes nothing.
    model(batches[0])
    torch.testing.assert_close(hc.hessians()["mlp.fc.weight"], hs["mlp.fc.weight"])


def test_hessian_collector_add_and_name_errors():
    model = TinyLM()
    hc = HessianCollector(model, names=["mlp.fc.weight"])
    x = torch.randn(5, 16)
    hc.add("tok_emb.weight", x)
    torch.testing.assert_close(hc.hessians()["tok_emb.weight"], x.T @ x / 5)
    with pytest.raises(ConfigError, match="no calibration hook for tok_emb.weight"):
        HessianCollector(model, names=["tok_emb.weight"])
    with pytest.raises(ConfigError, match="'final_nrm'"):
        HessianCollector(model, extra={"tok_emb.weight": ("final_nrm", "output")})


def test_gptq_on_a_pgolf_gpt_end_to_end():
    torch.manual_seed(8)
    cfg = ModelConfig(vocab_size=64, num_layers=2, model_dim=32, num_heads=2, num_kv_heads=1)
    model = GPT(cfg)
    with torch.no_grad():  # zero-init projections would make GPTQ trivial
        for p in model.parameters():
            if p.ndim == 2:
                p.normal_(0, 0.05)
    calib = generate_calibration(model, num_seqs=2, seq_len=12, seed=1, batch_size=2)
    hessians = collect_hessians(model, calib.split(1))
    state = model.state_dict()
    linear = [n for n in state if n.endswith(".weight") and n != "tok_emb.weight"]
    assert sorted(hessians) == sorted(linear)
    qcfg = QuantizeConfig(scheme="int5mlp", passthrough_numel=0, gptq=True)
    res = quantize_state(state, qcfg, hessians)
    methods = {n: m.get("method") for n, m in res.meta["tensors"].items() if m["scheme"].endswith("_row_v1")}
    assert all(methods[n] == "gptq" for n in linear) and methods["tok_emb.weight"] == "rtn"
    assert res.meta["tensors"]["tok_emb.weight"]["gptq_skipped"] == "no Hessian for this tensor"
    model.load_state_dict(dequantize_state(res.tensors, res.meta))
    assert torch.isfinite(model(calib[:1])).all()


def test_gptq_without_hessians_is_a_config_error():
    with pytest.raises(ConfigError, match="'gptq'"):
        quantize_state({"blocks.0.mlp.fc.weight": torch.zeros(4, 4)}, QuantizeConfig(gptq=True))


class Peaked(nn.Module):
    """Always predicts token (previous + 1) mod V with near certainty."""

    def __init__(self, vocab=11):
        super().__init__()
        self.vocab = vocab
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, idx):
        return 50.0 * nn.functional.one_hot((idx + 1) % self.vocab, self.vocab).float() + self.dummy


def test_generate_calibration_samples_autoregressively():
    out = generate_calibration(Peaked(), num_seqs=5, seq_len=9, seed=3, batch_size=2)
    assert out.shape == (5, 9) and out.dtype == torch.int64
    torch.testing.assert_close(out[:, 1:], (out[:, :-1] + 1) % 11, **EXACT)
    assert torch.equal(out, generate_calibration(Peaked(), num_seqs=5, seq_len=9, seed=3, batch_size=2))


def test_generate_calibration_first_tokens_are_uniform_and_seeded():
    model = TinyLM(vocab=8)
    model.train()
    a = generate_calibration(model, num_seqs=400, seq_len=2, seed=0, batch_size=400)
    assert model.training  # mode restored
    counts = torch.bincount(a[:, 0], minlength=8)
    assert counts.min() > 25 and counts.max() < 75  # 50 expected per token
    b = generate_calibration(model, num_seqs=400, seq_len=2, seed=1, batch_size=400)
    assert not torch.equal(a, b)


def test_pgolf_gpt_calibration_targets_and_hessians():
    """The stage's calibration (shared with the submission file): every integer-width linear weight and
    the tied head, whose input is final_norm's output; H is a mean over rows (a repeated sequence gives
    its own H); the training stream's tokens in order."""
    import numpy as np

    from pgolf.quant.calib import calibration_hessians, calibration_targets, stream_calibration_tokens

    torch.manual_seed(8)
    model = GPT(ModelConfig(vocab_size=64, num_layers=2, model_dim=32, num_heads=2, num_kv_heads=1))
    names, extra = calibration_targets(model, QuantizeConfig(scheme="int6", passthrough_numel=0))
    linear = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    assert sorted(names) == sorted([f"{n}.weight" for n in linear] + ["tok_emb.weight"])
    assert extra == {"tok_emb.weight": ("final_norm", "output")}
    shards = [np.arange(50, dtype=np.uint16) % 64, np.arange(30, dtype=np.uint16)]
    tokens = stream_calibration_tokens(shards, num_seqs=9, seq_len=16, vocab_size=64)
    assert tokens.shape == (5, 16) and tokens.dtype == torch.int64  # 80 tokens: 5 of the 9 sequences asked
    assert torch.equal(tokens.flatten()[48:52], torch.tensor([48, 49, 0, 1]))  # the shards in order
    cpu = torch.device("cpu")
    h = calibration_hessians(model, tokens, names, extra, cpu)
    assert sorted(h) == sorted(names) and h["tok_emb.weight"].shape == (32, 32)
    whole = calibration_hessians(model, tokens[:1].repeat(5, 1), names, extra, cpu)
    one = calibration_hessians(model, tokens[:1], names, extra, cpu)
    torch.testing.assert_close(whole["blocks.0.attn.c_q.weight"], one["blocks.0.attn.c_q.weight"])
    with pytest.raises(DataError, match="fewer than one sequence"):
        stream_calibration_tokens(shards, num_seqs=1, seq_len=81, vocab_size=64)
    with pytest.raises(DataError, match="outside the model's vocabulary"):
        stream_calibration_tokens(shards, num_seqs=1, seq_len=60, vocab_size=40)
