"""`pgolf run`: the whole pipeline from one config; unchanged stages reused; --from; an interrupted
run resumed; a seed sweep verified together; bad input; the demo config."""

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pgolf import artifacts
from pgolf.cli import app
from pgolf.runtime.metrics import read_metrics
from pgolf.stages import run as run_stage
from pgolf.stages import train as train_stage

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]
STAGE_DIRS = ("data", "train", "quant", "pack", "eval", "verify", "report")

# Two validation documents (about 2,900 tokens) and six training steps: every stage in seconds.
CONFIG = """
[data]
val_docs = 2

[train]
preset = "tiny"
iterations = 6
warmdown_iters = 3
val_every = 0
checkpoint_every_s = 0.0
max_seconds = 0.0

[quantize]
scheme = "int5mlp"
eval_tokens = 1000

[pack]
codec = "rans"
limit_bytes = 1_000_000

[eval]
mode = "plain"

[verify]
max_bytes = 1_000_000
max_train_seconds = 600.0
max_eval_seconds = 600.0
"""


def _invoke(*args):
    return runner.invoke(app, ["run", *map(str, args)])


def _statuses(doc):
    return {(s["stage"], s.get("seed")): s["status"] for s in doc["stages"]}


def _snapshot(run_dir: Path):
    """Every artifact file (run.json aside) with its modification time and sha256."""
    return {p.relative_to(run_dir): (p.stat().st_mtime_ns, artifacts.sha256_file(p))
            for p in sorted(run_dir.rglob("*")) if p.is_file() and p.name != run_stage.RUN_FILE}


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("config") / "pipeline.toml"
    path.write_text(CONFIG)
    return path


@pytest.fixture(scope="module")
def first_run(tmp_path_factory, config):
    out = tmp_path_factory.mktemp("run") / "r1"
    result = _invoke(config, "--out", out, "--json")
    assert result.exit_code == 0, result.output
    return out, json.loads(result.stdout)


def _copy(first_run, tmp_path) -> Path:
    dest = tmp_path / "copy"
    shutil.copytree(first_run[0], dest)  # keeps modification times; lineage paths are relative
    return dest


def test_end_to_end_writes_every_artifact(first_run):
    out, doc = first_run
    assert set(run_stage.JSON_KEYS) <= set(doc)
    assert [(s["stage"], s["status"]) for s in doc["stages"]] == [
        (s, "ran") for s in ("data", "train", "quantize", "pack", "eval", "verify", "report")]
    for name in STAGE_DIRS:
        manifest = artifacts.read_manifest(out / name, name)
        artifacts.check_files(out / name, manifest)
    ev, pack, train = (artifacts.read_manifest(out / k, k) for k in ("eval", "pack", "train"))
    assert doc["val_bpb"] == ev.metrics["val_bpb"] and doc["total_bytes"] == pack.metrics["total_bytes"]
    assert doc["verify_ok"] is True and Path(doc["report"]) == out / "report" / "report.md"
    assert train.metrics["steps"] == 6 and train.seed == 1337
    assert artifacts.read_manifest(out / "quant", "quant").metrics["scheme"] == "int5mlp"
    assert ev.metrics["mode"] == "plain" and pack.config["codec"] == "rans"
    # The lineage is relative, so the run directory can move.
    assert artifacts.read_manifest(out / "quant").input("train")["path"] == "../train/manifest.json"
    assert train.input("data")["path"] == "../data/manifest.json"

    record = json.loads((out / run_stage.RUN_FILE).read_text())
    assert record["format"] == "pgolf.run" and set(record["stages"]) == set(STAGE_DIRS)
    for rel, rec in record["stages"].items():
        assert rec["manifest_sha256"] == artifacts.sha256_file(out / rel / "manifest.json")
    [launch] = record["launches"]
    assert launch["seed"] == 1337 and launch["resume"] is False and launch["run_dir"] == "."
    assert launch["config_sha256"] == run_stage.launch_config_sha256(train.config)
    assert record["stages"]["train"]["launch_run_id"] == launch["run_id"]
    assert record["stages"]["train"]["run_id"] == train.run_id

    text = (out / "report" / "report.md").read_text()
    assert "## Byte budget" in text and "int5mlp" in text and "**OK**" in text
    for png in ("loss.png", "bpb.png", "budget.png"):
        assert (out / "report" / png).read_bytes().startswith(b"\x89PNG")
    assert json.loads((out / "verify" / "report.json").read_text())["ok"] is True


def test_rerun_reuses_every_stage_and_rewrites_nothing(first_run, config, tmp_path):
    out = _copy(first_run, tmp_path)
    before = _snapshot(out)
    result = _invoke(config, "--out", out, "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert set(_statuses(doc).values()) == {"reused"} and len(doc["stages"]) == 7
    assert _snapshot(out) == before
    assert doc["val_bpb"] == first_run[1]["val_bpb"] and doc["verify_ok"] is True


def test_changed_quantize_table_reruns_from_quantize(first_run, config, tmp_path):
    out = _copy(first_run, tmp_path)
    before = _snapshot(out)
    result = _invoke(config, "--out", out, "--set", "quantize.scheme=int6", "--json")
    assert result.exit_code == 0, result.output
    assert _statuses(json.loads(result.stdout)) == {
        ("data", None): "reused", ("train", None): "reused", ("quantize", None): "ran", ("pack", None): "ran",
        ("eval", None): "ran", ("verify", None): "ran", ("report", None): "ran"}
    assert artifacts.read_manifest(out / "quant").metrics["scheme"] == "int6"
    after = _snapshot(out)
    assert all(after[p] == v for p, v in before.items() if p.parts[0] in ("data", "train"))
    assert len(json.loads((out / run_stage.RUN_FILE).read_text())["launches"]) == 1  # no new training


def test_from_quantize_reruns_the_rest_only(first_run, config, tmp_path):
    out = _copy(first_run, tmp_path)
    train_sha = artifacts.sha256_file(out / "train" / "manifest.json")
    result = _invoke(config, "--out", out, "--from", "quantize", "--json")
    assert result.exit_code == 0, result.output
    statuses = _statuses(json.loads(result.stdout))
    assert statuses[("data", None)] == statuses[("train", None)] == "reused"
    assert {statuses[(s, None)] for s in ("quantize", "pack", "eval", "verify", "report")} == {"ran"}
    assert artifacts.sha256_file(out / "train" / "manifest.json") == train_sha


def test_damaged_artifact_is_rebuilt(first_run, config, tmp_path):
    out = _copy(first_run, tmp_path)
    (out / "pack" / "model.bin").write_bytes(b"garbage")
    result = _invoke(config, "--out", out, "--json")
    assert result.exit_code == 0, result.output
    statuses = _statuses(json.loads(result.stdout))
    assert statuses[("quantize", None)] == "reused" and statuses[("pack", None)] == "ran"


@pytest.mark.slow
def test_interrupted_run_resumes_training_from_its_checkpoint(config, first_run, tmp_path, monkeypatch):
    out = tmp_path / "r"
    args = [config, "--out", out, "--set", "train.checkpoint_every_s=1e-6", "--json"]
    checkpoint = train_stage._Recorder.checkpoint
    saved = []

    def checkpoint_then_interrupt(self, state):  # Ctrl-C right after the third checkpoint is on disk
        checkpoint(self, state)
        saved.append(state)
        if len(saved) % 3 == 0:
            raise KeyboardInterrupt

    monkeypatch.setattr(train_stage._Recorder, "checkpoint", checkpoint_then_interrupt)
    result = _invoke(*args)
    assert result.exit_code == 130, result.output
    assert (out / "data" / "manifest.json").is_file() and not (out / "train").exists()
    assert (train_stage.work_dir(out / "train") / train_stage.CHECKPOINT_FILE).is_file()
    # Another training config does not resume that checkpoint: it trains from the start (interrupted again).
    result = _invoke(*args, "--set", "train.iterations=7")
    assert result.exit_code == 130 and "resuming" not in result.output, result.output
    monkeypatch.undo()

    result = _invoke(*args, "--set", "train.iterations=7")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    train = next(s for s in doc["stages"] if s["stage"] == "train")
    assert _statuses(doc)[("data", None)] == "reused" and train["status"] == "ran" and train["resumed"] is True
    events = read_metrics(out / "train" / "metrics.jsonl")
    assert [e["step"] for e in events if e["event"] == "resume"] == [3]
    assert [e["step"] for e in events if e["event"] == "step"] == [1, 2, 3, 4, 5, 6, 7]
    launches = json.loads((out / run_stage.RUN_FILE).read_text())["launches"]
    assert [x["resume"] for x in launches] == [False, False, True] and {x["seed"] for x in launches} == {1337}
    assert launches[1]["config_sha256"] == launches[2]["config_sha256"] != launches[0]["config_sha256"]


@pytest.fixture(scope="module")
def sweep(first_run, config, tmp_path_factory):
    """`--seeds 7,8` on the first run's data: (run directory, the CLI result)."""
    out = tmp_path_factory.mktemp("sweep") / "sweep"
    return out, _invoke(config, "--out", out, "--data", first_run[0] / "data", "--seeds", "7,8", "--json")


@pytest.mark.slow
def test_seed_sweep_runs_each_seed_and_verifies_them_together(sweep):
    out, result = sweep
    doc = json.loads(result.stdout)
    # Several seeds are a record claim, which needs three: STAT-1 FAILs, and a completed run that
    # verify FAILs exits 3.
    assert result.exit_code == 3, result.output
    assert doc["verify_ok"] is False and "STAT-1" in result.output
    statuses = _statuses(doc)
    assert ("data", None) not in statuses  # --data: nothing to build
    assert all(statuses[(s, seed)] == "ran" for s in ("train", "quantize", "pack", "eval") for seed in (7, 8))
    evals = [artifacts.read_manifest(out / f"seed-{s}" / "eval", "eval") for s in (7, 8)]
    assert doc["val_bpb"] == pytest.approx(sum(m.metrics["val_bpb"] for m in evals) / 2)
    assert [artifacts.read_manifest(out / f"seed-{s}" / "train").seed for s in (7, 8)] == [7, 8]
    stats = json.loads((out / "verify" / "report.json").read_text())["stats"]
    assert stats["n"] == 2 and sorted(stats["seeds"]) == [7, 8] and stats["mean_bpb"] == pytest.approx(doc["val_bpb"])
    launches = json.loads((out / run_stage.RUN_FILE).read_text())["launches"]
    assert [x["seed"] for x in launches] == [7, 8] and len({x["config_sha256"] for x in launches}) == 1
    assert [x["run_dir"] for x in launches] == ["seed-7", "seed-8"]
    assert (out / "report" / "compare.png").is_file() and "seed-8" in (out / "report" / "report.md").read_text()
    # verify read the launch ledger: one config, one data
    checks = json.loads((out / "verify" / "report.json").read_text())["checks"]
    assert any(c["id"] == "STAT-1" and c["verdict"] == "PASS" and "launch ledger records seed 7, seed 8" in c["detail"]
               for c in checks)
    ledger = (out / run_stage.RUN_FILE).resolve()
    assert [(c["verdict"], c["detail"]) for c in checks if c["id"] == "STAT-3"] == [
        ("PASS", f"every seed the launch ledger ({ledger}) records as launched with this config (7, 8) is among the "
                 "runs verified")]
    # the seed is no part of the submission file: one train_gpt.py serves every seed (SEED picks one)
    assert (out / "seed-7" / "pack" / "train_gpt.py").read_bytes() == (out / "seed-8" / "pack" / "train_gpt.py").read_bytes()


@pytest.mark.slow
def test_three_seeds_make_one_submission_and_the_ledger_guards_the_config(sweep, config, first_run, tmp_path):
    out = shutil.copytree(sweep[0], tmp_path / "sweep")
    result = _invoke(config, "--out", out, "--data", first_run[0] / "data", "--seeds", "7,8,9", "--json")
    assert result.exit_code == 0, result.output  # three seeds of one config: STAT-1 passes
    assert _statuses(json.loads(result.stdout))[("train", 8)] == "reused"
    folder = tmp_path / "records" / "2026-05-02_Sweep"
    submitted = runner.invoke(app, ["verify", str(out), "--track", "non_record_16mb", "--submission", str(folder),
                                    "--author", "Ada L", "--github-id", "ada", "--name", "Sweep", "--blurb", "Three.",
                                    "--out", str(tmp_path / "v")])
    assert submitted.exit_code == 0, submitted.output
    assert sorted(p.name for p in folder.glob("train_seed*.log")) == [f"train_seed{n}.log" for n in (7, 8, 9)]
    assert (folder / "train_gpt.py").read_bytes() == (out / "seed-9" / "pack" / "train_gpt.py").read_bytes()

    # a seed left out of the runs verified is a hidden seed: STAT-3 names it
    partial = runner.invoke(app, ["verify", str(out / "seed-7"), str(out / "seed-8"), "--out", str(tmp_path / "v"),
                                  "--json"])
    stat3 = [c for c in json.loads(partial.stdout)["checks"] if c["id"] == "STAT-3"]
    assert [c["verdict"] for c in stat3] == ["FAIL"] and "seed(s) 9 launched with this config" in stat3[0]["detail"]

    ledger = (out / run_stage.RUN_FILE).read_text()

    def stat1_after(change):
        record = json.loads(ledger)
        change(next(x for x in record["launches"] if x["seed"] == 9))
        (out / run_stage.RUN_FILE).write_text(json.dumps(record))
        checked = runner.invoke(app, ["verify", str(out), "--out", str(tmp_path / "v"), "--json"])
        assert checked.exit_code == 3, checked.output
        return [c["detail"] for c in json.loads(checked.stdout)["checks"] if c["id"] == "STAT-1" and c["verdict"] == "FAIL"]

    assert any("seed 9 was launched on other data than seed 7" in d for d in stat1_after(
        lambda x: x.update(data_sha256="0" * 64)))
    fails = stat1_after(lambda x: x.update(config_sha256="1" * 64))
    assert any("seed 9 was launched with another config than seed 7" in d for d in fails)
    assert any("seed 9: its launch record" in d and "another config than its train manifest" in d for d in fails)

    (out / run_stage.RUN_FILE).write_text("{not json")  # an unreadable ledger is no ledger: the manifests judge
    checked = runner.invoke(app, ["verify", str(out), "--out", str(tmp_path / "v"), "--json"])
    assert checked.exit_code == 0, checked.output
    stat = {(c["id"], c["verdict"]): c["detail"] for c in json.loads(checked.stdout)["checks"]
            if c["id"] in ("STAT-1", "STAT-3")}
    assert list(stat) == [("STAT-1", "PASS"), ("STAT-3", "WARN")] and "no launch ledger" in stat[("STAT-3", "WARN")]


@pytest.mark.parametrize("text, args, message", [
    (None, [], "does not exist"),
    ("[optim]\nlr = 1\n", [], "unknown table [optim]; valid tables: [data], [train], [quantize], [pack], [eval], "
                              "[verify]"),
    ('[train]\npreset = "tiny"\niteratons = 5\n', [], "unknown key 'iteratons' in [train]; did you mean 'iterations'?"),
    ("[train.model]\nnum_layer = 2\n", [], "did you mean 'num_layers'?"),
    ('[quantize]\nschme = "int6"\n', [], "did you mean 'scheme'?"),
    ('[quantize]\nscheme = "int3"\n', [], "unknown scheme 'int3'"),
    ('[train]\npreset = "huge"\n', [], "unknown preset 'huge'"),
    ('[train]\npreset = "tinny"\n', [], "unknown preset 'tinny'; did you mean 'tiny'?"),
    ("[eval]\nmode = 'fast'\n", [], "config key 'eval.mode' must be one of"),
    ('[data]\ndir = "somewhere"\nval_docs = 3\n', [], "either name an existing data directory"),
    ("", ["--from", "quantise"], "--from 'quantise' is not a stage; valid stages: data, train, quantize, pack, eval, "
                                 "verify"),
    ("", ["--seeds", "1,x"], "'x' is not an integer"),
    ("", ["--seeds", "4,4"], "repeats a seed"),
    ("", ["--set", "train.no_such_key=1"], "unknown key 'no_such_key' in [train]"),
    ("", ["--set", "iterations=1"], "must start with its table"),
])
def test_bad_input_is_one_clear_line_and_writes_nothing(tmp_path, text, args, message):
    cfg = tmp_path / "pipeline.toml"
    if text is not None:
        cfg.write_text(text)
    out = tmp_path / "out"
    result = _invoke(cfg, "--out", out, *args)
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], result.output
    assert not out.exists()


def test_refuses_a_directory_that_is_not_a_run(tmp_path, config):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    result = _invoke(config, "--out", out)
    assert result.exit_code == 1 and "not a pgolf run directory" in result.output and "--force" in result.output
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_verify_judges_the_bytes_against_the_pack_limit(tmp_path, monkeypatch):
    import io

    from rich.console import Console

    from pgolf.runtime import console

    said = io.StringIO()
    monkeypatch.setattr(console, "console", Console(file=said, width=300))
    cfg = tmp_path / "pipeline.toml"
    base = '[train]\npreset = "tiny"\n'
    cfg.write_text(base)
    assert run_stage.load_pipeline(cfg).verify.max_bytes is None  # no limit anywhere: the track's
    cfg.write_text(base + "[pack]\nlimit_bytes = 500_000\n")
    assert run_stage.load_pipeline(cfg).verify.max_bytes == 500_000  # only the pack's: verify uses it
    assert not said.getvalue()
    cfg.write_text(base + "[pack]\nlimit_bytes = 500_000\n[verify]\nmax_bytes = 400_000\n")
    assert run_stage.load_pipeline(cfg).verify.max_bytes == 400_000  # both: verify's, with one warning line
    lines = said.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning:") and "500,000" in lines[0] and "400,000" in lines[0]


def test_demo_config_parses_and_make_demo_runs_it():
    pipe = run_stage.load_pipeline(ROOT / "configs" / "demo.toml")
    assert pipe.train == train_stage.load_config("tiny")  # the tiny preset as it is
    assert pipe.data.val_docs == 50 and not pipe.data.corpus  # the embedded corpus
    assert pipe.quantize["scheme"] == "int5mlp" and pipe.pack.codec == "rans" and pipe.eval["mode"] == "sliding"
    assert pipe.pack.eval.mode == "sliding"  # the submission file evaluates as the score was measured
    assert pipe.verify.max_bytes == pipe.pack.limit_bytes == 1_000_000
    assert pipe.verify.max_train_seconds >= pipe.train.max_seconds  # the training cap keeps TIME-1 passing
    assert "pgolf run configs/demo.toml --out $(DEMO_OUT)" in (ROOT / "Makefile").read_text()


@pytest.mark.slow
def test_demo_runs_end_to_end_when_shortened(tmp_path, first_run):
    out = tmp_path / "demo"
    result = _invoke(ROOT / "configs" / "demo.toml", "--out", out, "--set", "data.val_docs=2",
                     "--set", "train.iterations=8", "--set", "train.warmdown_iters=4", "--set", "train.val_every=0",
                     "--set", "quantize.eval_tokens=1000", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["verify_ok"] is True and doc["total_bytes"] < 1_000_000
    assert artifacts.read_manifest(out / "eval").metrics["mode"] == "sliding"
    assert artifacts.read_manifest(out / "train").metrics["steps"] == 8
    assert "pgolf verify" in result.output and f"report: {out / 'report' / 'report.md'}" in result.output
