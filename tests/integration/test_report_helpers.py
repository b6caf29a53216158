"""The report's pure helpers on hand-made data: the byte budget by class, loss curves, stage points,
figures and markdown (no run directory needed)."""

import math

import pytest

from pgolf.report import figures
from pgolf.report.budget import class_budget
from pgolf.report.markdown import render
from pgolf.report.summary import Curves, RunSummary, loss_curves, stage_bpb

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _tensor(cls, method, bits, numel, rows):
    payload = bits * numel if method == "passthrough" else bits * numel + 16 * rows
    return {"class": cls, "method": method, "bits": bits, "numel": numel, "payload_bits": payload}


QUANT = {
    "tok_emb.weight": _tensor("embed", "rtn", 8, 1000, 10),
    "blocks.0.attn.c_q.weight": _tensor("attn", "rtn", 6, 400, 20),
    "blocks.0.mlp.fc.weight": _tensor("mlp", "rtn", 5, 600, 30),
    "skip_weights": _tensor("control", "passthrough", 32, 50, 0),
}
ENTROPY = {"tok_emb.weight.q": {"entropy_bytes": 600.0}, "blocks.0.attn.c_q.weight.q": {"entropy_bytes": 200.0},
           "blocks.0.mlp.fc.weight.q": {"entropy_bytes": 200.0}}
SECTIONS = [{"kind": "index", "stored_bytes": 100}, {"kind": "codes", "stored_bytes": 500},
            {"kind": "rans_model", "stored_bytes": 40}, {"kind": "data_shuffled", "stored_bytes": 200}]


def test_budget_splits_each_section_by_what_its_tensors_put_in_it():
    b = class_budget(code_bytes=3000, model_bytes=860, sections=SECTIONS, quant_tensors=QUANT, code_entropy=ENTROPY)
    # codes (500 bytes) by entropy 600:200:200; data (200 bytes) by raw size: scales 20, 40, 60 bytes + 200 fp32 bytes
    assert b.classes["embed"] == pytest.approx(500 * 0.6 + 200 * 20 / 320)
    assert b.classes["attn"] == pytest.approx(500 * 0.2 + 200 * 40 / 320)
    assert b.classes["mlp"] == pytest.approx(500 * 0.2 + 200 * 60 / 320)
    assert b.classes["control"] == pytest.approx(200 * 200 / 320)
    assert b.overhead == pytest.approx(100 + 40 + 20)  # index + coder tables + the 20 header bytes
    assert math.isclose(sum(v for _, v in b.parts()), 3860) and b.total_bytes == 3860
    assert [n for n, _ in b.parts()] == ["code", "embed", "attn", "mlp", "control", "overhead"]
    assert b.params == {"embed": 1000, "attn": 400, "mlp": 600, "control": 50}


def test_budget_without_entropy_falls_back_to_the_code_widths():
    b = class_budget(0, 500, [{"kind": "codes_packed", "stored_bytes": 500}], QUANT, None)
    widths = {"embed": 8 * 1000, "attn": 6 * 400, "mlp": 5 * 600}
    for cls, w in widths.items():
        assert b.classes[cls] == pytest.approx(500 * w / sum(widths.values()))
    assert b.classes["control"] == 0 and b.overhead == pytest.approx(0)


EVENTS = [{"event": "start"}, {"event": "val", "step": 0, "val_loss": 6.9, "val_bpb": 4.0, "weights": "live"},
          {"event": "step", "step": 1, "train_loss": 6.8}, {"event": "step", "step": 2, "train_loss": 6.1},
          {"event": "checkpoint", "step": 2}, {"event": "val", "step": 2, "val_loss": 6.0, "val_bpb": 3.5,
                                                "weights": "ema"}, {"event": "end"}]


def test_loss_curves_and_stage_points():
    c = loss_curves(EVENTS)
    assert c.train == ((1, 6.8), (2, 6.1)) and c.val == ((0, 6.9, 4.0), (2, 6.0, 3.5)) and c.final_weights == "ema"
    run = RunSummary(label="r", path="/r", train={"val_bpb": 3.5, "val_tokens": 896},
                     quant={"val_bpb_quant": 3.6, "val_bpb_float": 3.55, "eval_tokens": 500},
                     eval={"val_bpb": 3.4, "mode": "sliding", "val_tokens": 900})
    points = stage_bpb(run)
    assert [(p.stage, p.val_bpb, p.float_bpb) for p in points] == [("float", 3.5, None), ("quantized", 3.6, 3.55),
                                                                    ("sliding", 3.4, None)]
    assert "896 val targets" in points[0].detail and "500 val targets" in points[1].detail
    assert "all 900 val targets, sliding" in points[2].detail
    assert stage_bpb(RunSummary(label="empty", path="/e")) == []
    ttt = RunSummary(label="t", path="/t", eval={"val_bpb": 3.3, "mode": "ttt", "plain_val_bpb": 3.4, "val_tokens": 9})
    assert [(p.stage, p.val_bpb) for p in stage_bpb(ttt)] == [("no TTT", 3.4), ("ttt", 3.3)]


def _run(label, bpb, total):
    budget = class_budget(total - 860, 860, SECTIONS, QUANT, ENTROPY)
    curves = Curves(((1, 6.0), (2, 5.0)), ((2, 5.2, bpb + 0.1),))
    return RunSummary(label=label, path=f"/{label}", seed=1, curves=curves,
                      train={"val_bpb": bpb + 0.1, "steps": 2}, eval={"val_bpb": bpb, "mode": "plain"},
                      pack={"total_bytes": total, "limit_bytes": 16_000_000, "fits": True}, budget=budget)


def test_figures_are_pngs_and_absent_without_data():
    runs = [_run("a", 3.0, 5000), _run("b", 2.9, 6000)]
    for make in (figures.loss_png, figures.bpb_png, figures.budget_png, figures.compare_png):
        png = make(runs)
        assert png is not None and png.startswith(PNG_MAGIC) and len(png) > 5000
    assert figures.compare_png(runs[:1]) is None  # a comparison needs two runs
    empty = [RunSummary(label="e", path="/e")]
    assert all(make(empty) is None for make in (figures.loss_png, figures.bpb_png, figures.budget_png))


def test_markdown_names_every_run_plot_and_class():
    runs = [_run("a", 3.0, 5000), _run("b", 2.9, 6000)]
    text = render(runs, {"ok": False, "counts": {"PASS": 1, "FAIL": 1}, "ruleset": "x", "track": "t",
                         "checks": [{"verdict": "FAIL", "id": "STAT-1", "detail": "2 seed(s) | more"}],
                         "stats": {"n": 2, "seeds": [1, 2], "val_bpb": [3.0, 2.9], "mean_bpb": 2.95, "std_bpb": 0.07}},
                  {"loss": "loss.png", "compare": "compare.png"}, "2026-01-01T00:00:00Z")
    assert text.startswith("# pgolf report") and "`a`" in text and "`b`" in text
    assert "![Training and validation loss](loss.png)" in text and "(compare.png)" in text and "bpb.png" not in text
    assert "| mlp |" in text and "| **total** | **5,000** | **6,000** |" in text
    assert "NOT COMPLIANT" in text and "2 seed(s) \\| more" in text and "mean val_bpb 2.95000" in text
