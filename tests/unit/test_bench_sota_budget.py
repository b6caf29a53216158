"""bench/sota_budget.py's pure pieces (the full-size run is a benchmark, not a test: docs/benchmarks.md)."""

import importlib.util
from pathlib import Path

import pytest
import torch

from pgolf.errors import ConfigError

_PATH = Path(__file__).resolve().parents[2] / "bench" / "sota_budget.py"
_spec = importlib.util.spec_from_file_location("sota_budget", _PATH)
assert _spec is not None and _spec.loader is not None
sb = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sb)


def test_the_recipe_is_the_records_closest_and_takes_any_key():
    q = sb.quantize_config()
    assert (q.scheme, q.clip, q.sdclip_k, q.sdclip_k_embed, q.embed_bits, q.gptq) == ("int6", "sdclip", 12.85, 14.0,
                                                                                       7, False)
    assert sb.quantize_config(["sdclip_k=11.5"], {"embed_bits": 8}).sdclip_k == 11.5
    assert sb.quantize_config([], {"embed_bits": 8}).embed_bits == 8
    with pytest.raises(ConfigError, match="sdclip_kk"):
        sb.quantize_config(["sdclip_kk=1"])
    p = sb.pack_config(["layout=auto"])
    assert (p.layout, p.minifier) == ("auto", "python-minifier")
    assert sb.check_codecs(["rans", "zstd"], p) == ["rans", "zstd"]
    with pytest.raises(ConfigError, match="codec"):
        sb.check_codecs(["pergroupx"], p)


def test_densify_draws_only_the_zero_matrices():
    state = {"a.weight": torch.randn(8, 16) * 0.1, "a.proj": torch.zeros(16, 8), "b.proj": torch.zeros(8, 16),
             "gain": torch.zeros(16), "codes": torch.zeros(4, 4, dtype=torch.int8)}
    out, drawn = sb.densify(state, seed=3)
    assert sb.densify(state, seed=3, min_numel=128)[1] == []  # only matrices the recipe quantizes
    assert drawn == ["a.proj", "b.proj"]
    assert torch.equal(out["a.weight"], state["a.weight"]) and not out["gain"].any() and not out["codes"].any()
    for name in drawn:
        w = out[name].double()
        small = w.T @ w if w.shape[0] >= w.shape[1] else w @ w.T  # orthogonal up to one scale
        assert torch.allclose(small / small[0, 0], torch.eye(min(w.shape), dtype=torch.float64), atol=1e-5)
        assert abs(float(w.std()) - float(state["a.weight"].std())) < 1e-4  # scaled like the live matrices
    again, _ = sb.densify(state, seed=3)
    assert all(torch.equal(again[k], out[k]) for k in out)


def test_budget_rows_and_the_table():
    rows = sb.budget_rows(sb.SOTA_PARAMS, {"dense": {"rans": 15_910_335, "zstd": 16_100_000}}, 37_155)
    assert rows[0] == {"init": "dense", "codec": "rans", "model_bytes": 15_910_335, "code_bytes": 37_155,
                       "total_bytes": 15_947_490, "margin_bytes": 52_510, "fits": True,
                       "bits_per_param": 8 * 15_910_335 / sb.SOTA_PARAMS}
    assert rows[1]["fits"] is False and rows[1]["margin_bytes"] == 16_000_000 - 16_137_155
    text = sb.render(rows, sb.SOTA_PARAMS, record=sb.RECORD)
    assert "| dense | rans | 15,910,335 | 3.541 | 37,155 | 15,947,490 | 52,510 | yes |" in text
    assert "| dense | zstd-22 | 16,100,000 |" in text and text.count("| NO |") == 1
    assert text.splitlines()[-1].startswith("| PR #2135, trained (its log) | per-group")
    assert "15,947,490 | 52,510 | yes |" in text.splitlines()[-1]


def test_code_stats_by_class():
    codes = {"tok_emb.weight.q": torch.tensor([0, 1, -1, 0], dtype=torch.int8),
             "blocks.0.mlp.fc.weight.q": torch.zeros(4, dtype=torch.int8), "blocks.0.attn.c_q.weight.scale":
             torch.ones(2, dtype=torch.float16)}
    st = sb.code_stats(codes)
    assert st["codes"] == 8 and st["by_class"] == {"embedding": 1.5, "mlp": 0.0}
    assert st["bits_per_code"] == 0.75 and st["entropy_bytes"] == 1
