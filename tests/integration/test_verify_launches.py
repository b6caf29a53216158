"""STAT-3 and pgolf's local launch log: every `pgolf train` / `pgolf run` launch is appended to
`<cache dir>/launches.jsonl` ($PGOLF_LAUNCH_LOG), so a seed launched into its own run directory (one
`pgolf run --seeds N` per seed) and left out of the runs verified is caught, although no run.json of the
runs verified records it."""

import json

import pytest
from typer.testing import CliRunner

from pgolf import artifacts
from pgolf.artifacts.run_record import LAUNCH_FORMAT, launch_config_sha256
from pgolf.cli import app

pytestmark = pytest.mark.slow
runner = CliRunner()
SEEDS = (1, 2, 3, 4)

# Four steps of the tiny preset and a plain eval: each seed's whole pipeline in seconds.
CONFIG = """
[train]
preset = "tiny"
iterations = 4
warmdown_iters = 2
val_every = 0
checkpoint_every_s = 0.0
max_seconds = 0.0

[quantize]
scheme = "int8"
eval_tokens = 1000

[pack]
codec = "zstd"

[eval]
mode = "plain"
seq_len = 256

[verify]
max_train_seconds = 600.0
max_eval_seconds = 600.0
"""


@pytest.fixture(scope="module")
def launched(tmp_path_factory, embedded_data):
    """One `pgolf run --seeds N` per seed, each into its own directory, with a launch log: (runs by seed, log)."""
    root = tmp_path_factory.mktemp("launches")
    log = root / "launches.jsonl"
    config = root / "pipeline.toml"
    config.write_text(CONFIG)
    runs = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PGOLF_LAUNCH_LOG", str(log))
        for seed in SEEDS:
            out = root / f"run{seed}"
            result = runner.invoke(app, ["run", str(config), "--data", str(embedded_data), "--out", str(out),
                                         "--seeds", str(seed), "--json"])
            assert result.exit_code in (0, 3), result.output  # one seed alone is no claim; verify may FAIL STAT-1
            runs[seed] = out / f"seed-{seed}"
    return runs, log


def verify(*args):
    result = runner.invoke(app, ["verify", *map(str, args), "--json"])
    doc = json.loads(result.stdout) if result.stdout.strip().startswith("{") else None
    return result, doc


def stat3(doc):
    return [c for c in doc["checks"] if c["id"] == "STAT-3"]


def test_every_launch_is_in_the_launch_log(launched):
    runs, log = launched
    entries = [json.loads(x) for x in log.read_text().splitlines()]
    assert [x["seed"] for x in entries] == list(SEEDS) and {x["format"] for x in entries} == {LAUNCH_FORMAT}
    train = artifacts.read_manifest(runs[1] / "train", "train")
    assert {x["config_sha256"] for x in entries} == {launch_config_sha256(train.config)}
    assert entries[0]["run_id"] == train.run_id and entries[0]["out"] == str((runs[1] / "train").resolve())
    assert all(x["host"] and x["started_utc"] and x["resume"] is False for x in entries)


def test_the_worst_seed_left_out_is_caught(launched, tmp_path, monkeypatch):
    runs, log = launched
    bpb = {s: artifacts.read_manifest(runs[s] / "eval", "eval").metrics["val_bpb"] for s in SEEDS}
    worst = max(bpb, key=bpb.__getitem__)
    best3 = [runs[s] for s in SEEDS if s != worst]

    monkeypatch.setenv("PGOLF_LAUNCH_LOG", "")  # without the log, each run.json knows only its own seed
    result, doc = verify(*best3, "--out", tmp_path / "v0")
    assert "FAIL" not in [c["verdict"] for c in stat3(doc)], stat3(doc)

    monkeypatch.setenv("PGOLF_LAUNCH_LOG", str(log))
    result, doc = verify(*best3, "--out", tmp_path / "v1")
    assert result.exit_code == 3, result.output
    fails = [c for c in stat3(doc) if c["verdict"] == "FAIL"]
    print(fails)
    assert len(fails) == 1 and f"seed(s) {worst} launched with this config" in fails[0]["detail"]
    assert str(log) in fails[0]["detail"] and str((runs[worst] / "train").resolve()) in fails[0]["detail"]
    assert {c["id"] for c in doc["checks"] if c["verdict"] == "FAIL"} == {"STAT-3"}

    result, doc = verify(*runs.values(), "--out", tmp_path / "v2")  # every launched seed reported
    assert [c["verdict"] for c in stat3(doc)] == ["PASS"], stat3(doc)

    result, doc = verify(runs[1], "--out", tmp_path / "v3")  # one run, no claim: the others are named, no FAIL
    assert [c["verdict"] for c in stat3(doc)] == ["INFO"] and "seed(s) 2, 3, 4 launched" in stat3(doc)[0]["detail"]
    result, doc = verify(runs[1], "--track", "non_record_16mb", "--out", tmp_path / "v4")  # claimed for a track
    assert "FAIL" in [c["verdict"] for c in stat3(doc)]


def test_junk_lines_and_other_configs_in_the_log_are_ignored(launched, tmp_path, monkeypatch):
    runs, log = launched
    other = tmp_path / "launches.jsonl"
    lines = log.read_text().splitlines()
    foreign = {**json.loads(lines[0]), "seed": 99, "config_sha256": "0" * 64}  # another config's seed 99
    other.write_text("\n".join(["{not json", "[]", json.dumps(foreign), *lines]) + "\n")
    monkeypatch.setenv("PGOLF_LAUNCH_LOG", str(other))
    result, doc = verify(*runs.values(), "--out", tmp_path / "v")
    assert [c["verdict"] for c in stat3(doc)] == ["PASS"] and "99" not in stat3(doc)[0]["detail"]


def test_an_unreadable_launch_log_is_a_warning(launched, tmp_path, monkeypatch):
    runs, _ = launched
    (tmp_path / "log").mkdir()  # a directory where the log should be
    monkeypatch.setenv("PGOLF_LAUNCH_LOG", str(tmp_path / "log"))
    result, doc = verify(*runs.values(), "--out", tmp_path / "v")
    assert [(c["verdict"], "is not a file" in c["detail"]) for c in stat3(doc)][0] == ("WARN", True), stat3(doc)
    assert "PASS" in [c["verdict"] for c in stat3(doc)]  # the run.json ledgers still judge


def test_a_seed_launched_twice_is_a_warning_on_a_claim(launched, tmp_path, monkeypatch):
    """Best of two launches of one seed is selection: the log shows the second launch (a resume is none)."""
    runs, log = launched
    lines = log.read_text().splitlines()
    again = {**json.loads(lines[0]), "out": str(tmp_path / "rerun" / "train"), "started_utc": "2099-01-01T00:00:00Z"}
    resumed = {**json.loads(lines[1]), "resume": True}
    twice = tmp_path / "launches.jsonl"
    twice.write_text("\n".join([*lines, json.dumps(again), json.dumps(resumed)]) + "\n")
    monkeypatch.setenv("PGOLF_LAUNCH_LOG", str(twice))
    result, doc = verify(*runs.values(), "--out", tmp_path / "v")
    warns = [c for c in stat3(doc) if c["verdict"] == "WARN"]
    assert len(warns) == 1 and "seed 1: 2 launches" in warns[0]["detail"], stat3(doc)
    assert str(tmp_path / "rerun" / "train") in warns[0]["detail"] and "seed 2:" not in warns[0]["detail"]
    assert "FAIL" not in [c["verdict"] for c in stat3(doc)]
