"""`pgolf ttt-eval` with PR #2135's evaluation (the n-gram tilt and the phased score-first LoRA TTT) on a tiny
packed model, then `pgolf verify --probe` on the run: the probes run on the tilted distribution and pass
(0 FAIL); a planted tilt that peeks at the target FAILs MET-7 (target independence), exit 3."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from test_verify_support import EVAL_SET, build_run
from typer.testing import CliRunner

from pgolf.artifacts.evaluation import read_ledger
from pgolf.cli import app
from pgolf.eval import ngram_tilt as nt
from pgolf.eval import parse_ledger

pytestmark = pytest.mark.slow  # one tiny run (quantize -> pack -> ttt-eval) per module
runner = CliRunner()
# A low order and threshold so the n-gram fires on the small embedded val set (and inside probe windows).
TILT_SET = ["tilt=ngram", "tilt_order=3", "tilt_threshold=0.5", "tilt_boost=2.0"]
# #2135's phased LoRA TTT at the tiny model's window (128): per-document chunks scored by one window each,
# one AdamW step per chunk, a global pass after the first document.
TTT_SET = ["seq_len=128", "chunk_tokens=128", "doc_windows=true", "chunk_windows=true", "ttt.method=phased_lora",
           "ttt.optimizer=adamw", "ttt.lr=0.001", "ttt.momentum=0", "ttt.beta2=0.99", "ttt.weight_decay=2.0",
           "ttt.adam_eps=1e-10", "ttt.lora_rank=4", "ttt.prefix_docs=1", "ttt.global_batch_seqs=4",
           "ttt.global_chunk_tokens=1024"]


def sets(*kv: str) -> list[str]:
    return [x for item in (*EVAL_SET, *kv) for x in ("--set", item)]


@pytest.fixture(scope="module")
def tilted_run(tmp_path_factory, embedded_data, tiny_train) -> Path:
    """A legal tiny run whose eval/ is replaced by a tilted phased LoRA TTT eval; the untilted sliding eval the
    run was built with is kept beside it (eval-untilted/report.json)."""
    from pgolf.data.config import DataConfig
    from pgolf.stages import data

    root = tmp_path_factory.mktemp("tilt")
    # 3 val documents: the per-document chunks of the phased TTT stay few (a few seconds on a CPU)
    data.build(DataConfig(tokenizer=str(embedded_data / "tokenizer.model"), val_docs=3), root / "data")
    run = build_run(root / "run", root / "data", tiny_train)
    (run / "eval-untilted").mkdir()
    shutil.copy(run / "eval" / "report.json", run / "eval-untilted" / "report.json")
    result = runner.invoke(app, ["ttt-eval", str(run / "pack"), "--data", str(run / "data"), "--out",
                                 str(run / "eval"), "--force", "--mode", "ttt", *sets(*TILT_SET, *TTT_SET), "--json"])
    assert result.exit_code == 0, result.output
    return run


def verify(run: Path, out: Path):
    result = runner.invoke(app, ["verify", str(run), "--probe", "--probe-positions", "64", "--out", str(out),
                                 "--json"])
    return result, json.loads(result.stdout)


def verdicts(doc, rule_id) -> set[str]:
    return {c["verdict"] for c in doc["checks"] if c["id"] == rule_id}


def test_the_tilt_is_recorded_and_lowers_the_score(tilted_run):
    report = json.loads((tilted_run / "eval" / "report.json").read_text())
    assert report["tilt"] == "ngram" and report["timing"]["tilt_s"] >= 0
    header, entries, _ = parse_ledger(read_ledger(tilted_run / "eval"))
    assert header["config"]["tilt"] == "ngram" and header["tilt"]["gated_positions"] > 0
    assert any(e.steps for e in entries) and any(e.partial_reset for e in entries)  # LoRA steps, new documents
    assert header["config"]["ttt"]["method"] == "phased_lora"
    first_doc_end = next(i for i, e in enumerate(entries) if e.partial_reset) - 1
    assert entries[first_doc_end].steps  # the global pass after the one-document prefix
    untilted = json.loads((tilted_run / "eval-untilted" / "report.json").read_text())
    assert report["val_bpb"] < untilted["val_bpb"]


def test_verify_probes_the_tilted_distribution_and_passes(tilted_run, tmp_path):
    result, doc = verify(tilted_run, tmp_path / "v")
    assert result.exit_code == 0, [c for c in doc["checks"] if c["verdict"] == "FAIL"]
    probes = {p["name"]: p for p in next(iter(doc["probes"].values()))}
    assert {"P-norm", "P-tgt", "P-pre", "P-mut", "R-replay"} <= set(probes)
    assert all(p["violations"] == 0 for p in probes.values()), probes
    assert "tilted" in probes["R-replay"]["detail"] and probes["R-replay"]["positions"] >= 1
    for rule in ("MET-5", "MET-6", "MET-7", "TTT-1", "TTT-3", "TTT-8"):
        assert "PASS" in verdicts(doc, rule) and "FAIL" not in verdicts(doc, rule), rule


def test_a_planted_tilt_that_peeks_at_the_target_fails(tilted_run, tmp_path, monkeypatch):
    """The eval's scorer as a forger would write it: the hint of position t is the token it scores."""

    def peek(self, idx_BT):
        hint = torch.cat([idx_BT[:, 1:], idx_BT[:, -1:]], dim=1).long()
        return hint, torch.ones_like(hint, dtype=torch.bool), torch.full(hint.shape, float(self.cfg.boost))

    monkeypatch.setattr(nt.TiltedScorer, "hints", peek)
    run = Path(shutil.copytree(tilted_run, tmp_path / "run"))
    result, doc = verify(run, tmp_path / "v")
    assert result.exit_code == 3
    assert "FAIL" in verdicts(doc, "MET-7")
    assert "FAIL" not in verdicts(doc, "MET-5")  # still a distribution: normalization alone cannot catch it


def test_the_submission_file_embeds_the_tilt_and_the_lora_only_when_its_evaluation_uses_them(tilted_run, tmp_path):
    from pgolf.artifacts.packed import read_report

    plain = read_report(tilted_run / "pack")["modules"]  # packed with the default evaluation
    assert "pgolf.eval.loop" in plain and "pgolf.eval.ngram_tilt" not in plain and "pgolf.eval.lora_ttt" not in plain
    out = tmp_path / "pack"
    result = runner.invoke(app, ["pack", str(tilted_run / "quant"), "--out", str(out), "--set", "eval.mode=ttt",
                                 "--set", "eval.tilt=ngram", "--set", "eval.doc_windows=true",
                                 "--set", "eval.ttt.method=phased_lora"])
    assert result.exit_code == 0, result.output
    used = read_report(out)["modules"]
    assert "pgolf.eval.ngram_tilt" in used and "pgolf.eval.lora_ttt" in used
