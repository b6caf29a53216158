"""`pgolf verify` on run directories on disk: a legal tiny run passes; tampered copies fail with the
right check and exit 3; the submission folder is written only for a compliant run."""

import json
import shutil
import sys
import types

import numpy as np
import pytest
from test_verify_support import (
    HAVE_STAGES,
    build_run,
    copy_run,
    edit_manifest,
    ledger_lines,
    packed_model,
    rehash,
    write_ledger,
)
from typer.testing import CliRunner

from pgolf import artifacts
from pgolf.artifacts import data as datadir
from pgolf.cli import app
from pgolf.verify.codescan import scan_code

pytestmark = pytest.mark.slow  # one legal tiny run (train -> quantize -> pack -> ttt-eval) per module
runner = CliRunner()
SUBMIT = ["--author", "Ada L", "--github-id", "ada", "--name", "Tiny run", "--blurb", "A tiny legal run.",
          "--date", "2026-05-02"]


@pytest.fixture(scope="module")
def legal_run(tmp_path_factory, embedded_data, tiny_train):
    return build_run(tmp_path_factory.mktemp("verify") / "run", embedded_data, tiny_train)


@pytest.fixture
def run(legal_run, tmp_path):
    """A private copy of the legal run to tamper with."""
    return copy_run(legal_run, tmp_path / "run")


def verify(*args):
    result = runner.invoke(app, ["verify", *map(str, args), "--json"])
    doc = json.loads(result.stdout) if result.stdout.strip().startswith("{") else None
    return result, doc


def failing(doc) -> set[str]:
    return {c["id"] for c in doc["checks"] if c["verdict"] == "FAIL"}


def verdicts(doc, rule_id) -> set[str]:
    return {c["verdict"] for c in doc["checks"] if c["id"] == rule_id}


# ============================================================================ the legal run


def test_legal_tiny_run_passes(legal_run, tmp_path):
    result, doc = verify(legal_run, "--out", tmp_path / "v")
    assert result.exit_code == 0, result.output
    assert doc["ok"] is True and not failing(doc)
    assert {"ok", "checks", "total_bytes", "val_bpb"} <= set(doc) and "stats" not in doc
    pack = artifacts.read_manifest(legal_run / "pack")
    assert doc["total_bytes"] == pack.metrics["code_bytes"] + pack.metrics["model_bytes"]
    assert doc["val_bpb"] == pytest.approx(artifacts.read_manifest(legal_run / "eval").metrics["val_bpb"], abs=1e-9)
    assert {c["id"] for c in doc["checks"]} >= {"LINEAGE", "SIZE-1", "MET-1", "MET-4", "TTT-2", "DATA-2", "FMT-1"}
    for rule in ("LINEAGE", "SIZE-1", "SIZE-5", "DATA-1", "MET-1", "MET-2", "MET-4", "TTT-1", "TTT-2", "DATA-4"):
        assert "PASS" in verdicts(doc, rule), rule
    assert verdicts(doc, "TIME-4") == {"WARN"}  # a CPU run is a development run
    m = artifacts.read_manifest(tmp_path / "v", "verify")
    assert m.metrics["ok"] is True and json.loads((tmp_path / "v" / "report.json").read_text())["ok"] is True


def test_default_report_goes_to_the_run_directory(run):
    result, doc = verify(run / "eval")
    assert result.exit_code == 0 and doc["out"] == str(run / "verify")
    assert artifacts.read_manifest(run / "verify", "verify").inputs[0]["kind"] == "eval"
    again, _ = verify(run)  # a second verify replaces its own report
    assert again.exit_code == 0
    (run / "other").mkdir()
    (run / "other" / "x").write_text("keep me")
    refused, _ = verify(run, "--out", run / "other")
    assert refused.exit_code == 1 and (run / "other" / "x").exists()


def test_human_output_is_a_table_of_checks(legal_run, tmp_path):
    result = runner.invoke(app, ["verify", str(legal_run), "--out", str(tmp_path / "v")])
    assert result.exit_code == 0
    assert "SIZE-1" in result.output and "PASS" in result.output and "OK" in result.output


@pytest.fixture
def packed_loader(monkeypatch):
    """pgolf.artifacts.packed.load_packed_model, or the contract's decoder while pack is not in pgolf yet."""
    if not HAVE_STAGES:
        fake = types.ModuleType("pgolf.stages.pack")
        fake.load_packed_model = packed_model
        monkeypatch.setitem(sys.modules, "pgolf.stages.pack", fake)


def test_probes_on_the_packed_model(legal_run, tmp_path, packed_loader):
    result, doc = verify(legal_run, "--probe", "--probe-positions", "64", "--out", tmp_path / "v")
    assert result.exit_code == 0, result.output
    probes = {p["name"]: p for p in next(iter(doc["probes"].values()))}
    assert set(probes) >= {"P-norm", "P-tgt", "P-pre", "P-mut", "R-replay"}
    assert all(p["violations"] == 0 for p in probes.values()), probes
    for rule in ("MET-5", "MET-6", "MET-7", "TTT-7"):
        assert verdicts(doc, rule) == {"PASS"}, rule
    assert "PASS" in verdicts(doc, "TTT-3") and probes["R-replay"]["positions"] >= 1


# ============================================================================ planted violations on disk


def test_over_budget_artifact(legal_run, tmp_path):
    result, doc = verify(legal_run, "--max-bytes", "1000", "--out", tmp_path / "v")
    assert result.exit_code == 3 and failing(doc) == {"SIZE-1"}
    assert "> 1,000" in next(c["detail"] for c in doc["checks"] if c["id"] == "SIZE-1")


def test_truncated_model_bin(run):
    blob = run / "pack" / "model.bin"
    blob.write_bytes(blob.read_bytes()[:-100])
    result, doc = verify(run)
    assert result.exit_code == 3 and {"LINEAGE", "SIZE-5"} <= failing(doc)


def test_model_bin_replaced_after_the_eval(run):
    blob = run / "pack" / "model.bin"
    blob.write_bytes(blob.read_bytes()[:-1] + b"\0")
    rehash(run, ("pack",))  # the pack manifest now vouches for the new blob; the eval scored the old one
    result, doc = verify(run)
    assert result.exit_code == 3 and "SIZE-5" in failing(doc)


def test_eval_over_the_time_limit(legal_run, tmp_path):
    result, doc = verify(legal_run, "--max-eval-seconds", "0.001", "--out", tmp_path / "v")
    assert result.exit_code == 3 and failing(doc) == {"TIME-3"}


def test_val_documents_in_the_training_shards(run):
    val = datadir.load_val_tokens(run / "data")
    train_path = datadir.list_shards(run / "data", "train")[0]
    train = np.asarray(datadir.open_shard(train_path))
    datadir.write_shard(train_path, np.concatenate([train, val]))  # every val document trained on
    rehash(run)
    result, doc = verify(run)
    assert result.exit_code == 3 and "DATA-2" in failing(doc)
    assert "val documents occur verbatim" in next(c["detail"] for c in doc["checks"] if c["id"] == "DATA-2"
                                                  and c["verdict"] == "FAIL")


def test_adaptation_before_scoring_in_the_ledger(run):
    lines = ledger_lines(run)
    chunk = next(x for x in lines if x["kind"] == "chunk")
    chunk["steps"] = [{"spans": [[chunk["start"], chunk["end"] + 50]], "epoch": 0, "lr": 0.01,
                       "committed": chunk["end"]}]
    write_ledger(run, lines)
    result, doc = verify(run)
    assert result.exit_code == 3 and "TTT-1" in failing(doc)


def test_rescored_token(run):
    lines = ledger_lines(run)
    chunks = [x for x in lines if x["kind"] == "chunk"]
    chunks[1]["start"] -= 1
    chunks[1]["count"] += 1
    write_ledger(run, lines)
    result, doc = verify(run)
    assert result.exit_code == 3 and {"TTT-4", "TTT-2"} <= failing(doc)


def test_dropped_tail(run):
    lines = ledger_lines(run)
    chunks = [x for x in lines if x["kind"] == "chunk"]
    last = chunks[-1]
    lines.remove(last)
    summary = lines[-1]
    nll = sum(c["nll_sum"] for c in chunks[:-1])
    count = sum(c["count"] for c in chunks[:-1])
    nbytes = sum(c["byte_sum"] for c in chunks[:-1])
    summary.update(val_loss=nll / count, val_bpb=nll / (np.log(2) * nbytes), val_tokens=count, val_bytes=nbytes)
    write_ledger(run, lines, {"val_loss": summary["val_loss"], "val_bpb": summary["val_bpb"],
                              "val_tokens": count, "val_bytes": nbytes})
    result, doc = verify(run)
    assert result.exit_code == 3 and "MET-4" in failing(doc)
    assert "dropped tail" in " ".join(c["detail"] for c in doc["checks"] if c["id"] == "MET-4")


def test_raw_byte_denominator(run):
    raw = artifacts.read_manifest(run / "data").metrics["val_bytes_raw"]
    lines = ledger_lines(run)
    chunks = [x for x in lines if x["kind"] == "chunk"]
    chunks[-1]["byte_sum"] += raw - sum(c["byte_sum"] for c in chunks)
    nll = sum(c["nll_sum"] for c in chunks)
    lines[-1].update(val_bpb=nll / (np.log(2) * raw), val_bytes=raw)
    write_ledger(run, lines, {"val_bpb": lines[-1]["val_bpb"], "val_bytes": raw})
    result, doc = verify(run)
    assert result.exit_code == 3 and "MET-1" in failing(doc)
    assert "raw UTF-8 bytes" in " ".join(c["detail"] for c in doc["checks"] if c["id"] == "MET-1")


def test_calibration_on_validation_data(run):
    edit_manifest(run / "quant", lambda m: m["config"].update(gptq=True, calib="val"))
    rehash(run, ("quant", "pack", "eval"))
    result, doc = verify(run)
    assert result.exit_code == 3 and "DATA-7" in failing(doc)


def test_an_edited_training_clock_disagrees_with_the_runs_logs(run):
    """train_time_s lowered in the manifest (re-hashed downstream) while metrics.jsonl and log.txt
    keep the real clock: TIME-1 names the disagreement."""
    edit_manifest(run / "train", lambda m: m["timing"].update(train_time_s=m["timing"]["train_time_s"] / 4 - 1))
    rehash(run, ("train", "quant", "pack", "eval"))
    result, doc = verify(run)
    assert result.exit_code == 3 and "TIME-1" in failing(doc)
    assert "records disagree" in " ".join(c["detail"] for c in doc["checks"] if c["id"] == "TIME-1")


def test_an_env_claiming_a_gpu_beside_a_cpu_torch(run):
    def claim_h100(m):  # the torch field stays what a CPU machine records
        m["env"].update(device="cuda", gpu="NVIDIA H100 80GB HBM3", gpu_count=8, world_size=8, torch="2.13.0+cpu")
    edit_manifest(run / "train", claim_h100)
    rehash(run, ("train", "quant", "pack", "eval"))
    result, doc = verify(run)
    assert result.exit_code == 3 and "TIME-4" in failing(doc)
    assert "torch is a CPU build" in " ".join(c["detail"] for c in doc["checks"] if c["id"] == "TIME-4")


def _reseed(run, seed):
    def set_seed(m):
        m["seed"] = seed
        m["config"]["seed"] = seed
    edit_manifest(run / "train", set_seed)
    for kind in ("quant", "pack", "eval"):
        edit_manifest(run / kind, lambda m: m.update(seed=seed))
    rehash(run, ("train", "quant", "pack", "eval"))


@pytest.fixture
def three_seeds(legal_run, tmp_path):
    runs = []
    for seed in (11, 12, 13):
        r = copy_run(legal_run, tmp_path / f"seed{seed}")
        _reseed(r, seed)
        runs.append(r)
    return runs


def test_three_seeds_stats_and_reference(three_seeds, tmp_path):
    result, doc = verify(*three_seeds, "--reference-bpb", "9.0,9.1", "--reference-bpb", "9.05")
    assert result.exit_code == 0, result.output
    assert verdicts(doc, "STAT-1") == {"PASS"} and verdicts(doc, "STAT-2") == {"PASS"}
    stats = doc["stats"]
    assert stats["n"] == 3 and stats["seeds"] == [11, 12, 13] and stats["kind"] == "welch"
    assert stats["tests"]["readme"]["nats"]["p"] < 0.01 and doc["out"] == str(tmp_path / "verify")


def test_fewer_than_three_seeds_or_another_config(three_seeds):
    result, doc = verify(*three_seeds[:2])
    assert result.exit_code == 3 and failing(doc) == {"STAT-1"}
    edit_manifest(three_seeds[2] / "eval", lambda m: m["config"].update(stride=64))
    rehash(three_seeds[2], ("eval",))
    result, doc = verify(*three_seeds)
    assert result.exit_code == 3 and failing(doc) == {"STAT-1"}
    assert "eval.stride" in " ".join(c["detail"] for c in doc["checks"] if c["id"] == "STAT-1")


def test_a_directory_of_seed_runs(three_seeds, tmp_path, monkeypatch):
    result, doc = verify(tmp_path)
    assert result.exit_code == 0 and len(doc["seeds"]) == 3 and "stats" in doc
    # `out` is as given, like every path pgolf prints: relative DIRs, a relative report directory
    monkeypatch.chdir(tmp_path)
    result, doc = verify(*(p.name for p in three_seeds))
    assert result.exit_code == 0 and doc["out"] == "verify" and (tmp_path / "verify" / "report.json").is_file()


def test_a_run_directory_is_one_run_and_an_extra_eval_is_no_seed(run):
    shutil.copytree(run / "eval", run / "eval-ttt")  # an extra evaluation written beside eval/
    result, doc = verify(run)
    assert result.exit_code == 0, result.output
    assert doc["dirs"] == [str(run / "eval")] and "stats" not in doc
    alone, doc = verify(run / "eval-ttt")  # verified by path, it is a run of its own
    assert alone.exit_code == 0 and doc["dirs"] == [str(run / "eval-ttt")]


def test_a_sweep_directory_s_seeds_are_its_seed_dirs(three_seeds, tmp_path):
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    for r in three_seeds:
        shutil.move(r, sweep / r.name.replace("seed", "seed-"))
    shutil.copytree(sweep / "seed-11" / "data", sweep / "data")  # a shared data/ beside them is no run
    (sweep / "notes").mkdir()
    result, doc = verify(sweep)
    assert result.exit_code == 0, result.output
    assert doc["dirs"] == [str(sweep / f"seed-{n}" / "eval") for n in (11, 12, 13)]


# ============================================================================ the submission folder


def test_submission_folder_for_a_compliant_run(legal_run, tmp_path):
    out = tmp_path / "records" / "2026-05-02_Tiny_run"
    result, doc = verify(legal_run, "--track", "non_record_16mb", "--submission", out, *SUBMIT,
                         "--out", tmp_path / "v")
    assert result.exit_code == 0, result.output
    assert doc["submission"] == str(out)
    seed = artifacts.read_manifest(legal_run / "train").seed
    needs = scan_code((legal_run / "pack" / "train_gpt.py").read_text()).third_party()  # beyond upstream's list
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["README.md", "submission.json", "train_gpt.py", f"train_seed{seed}.log"]
        + (["requirements.txt"] if needs else []))
    if needs:
        assert (out / "requirements.txt").read_text().split() == needs
    sub = json.loads((out / "submission.json").read_text())
    assert sub["track"] == "non_record_16mb" and sub["seeds"] == [seed] and sub["author"] == "Ada L"
    assert sub["bytes_total"] == doc["total_bytes"] and sub["val_bpb"] == pytest.approx(doc["val_bpb"], abs=1e-12)
    assert (out / "train_gpt.py").read_bytes() == (legal_run / "pack" / "train_gpt.py").read_bytes()
    assert (out / f"train_seed{seed}.log").read_bytes() == (legal_run / "train" / "log.txt").read_bytes()
    readme = (out / "README.md").read_text()
    assert "Non-record submission" in readme
    _reproduce_configs(readme, legal_run, tmp_path)
    for rule in ("FMT-2", "FMT-4", "STAT-4"):
        assert "PASS" in verdicts(doc, rule) and "FAIL" not in verdicts(doc, rule), rule
    again, _ = verify(legal_run, "--track", "non_record_16mb", "--submission", out, *SUBMIT, "--out", tmp_path / "v")
    assert again.exit_code == 1  # exists: --force replaces it


def _reproduce_configs(readme: str, run, tmp_path) -> None:
    """The README's config files, read by the stages' own loaders, give back the run's configs."""
    import re

    from pgolf.config import to_dict
    from pgolf.stages import train

    blocks = dict(re.findall(r"`([\w.-]+\.toml)`:\n\n```toml\n(.*?)```", readme, re.S))
    assert "train.toml" in blocks
    for name, text in blocks.items():
        (tmp_path / name).write_text(text)
    tm = artifacts.read_manifest(run / "train")
    cfg = to_dict(train.load_config(config=tmp_path / "train.toml", overrides=[f"seed={tm.seed}"]))
    assert cfg == tm.config
    if HAVE_STAGES:
        from pgolf.stages import pack, quantize, ttt_eval

        q = to_dict(quantize.load_config(run / "train", tmp_path / "quantize.toml"))
        assert q == {k: v for k, v in artifacts.read_manifest(run / "quant").config.items() if k != "calibration"}
        assert to_dict(pack.load_config(tmp_path / "pack.toml")) == artifacts.read_manifest(run / "pack").config
        assert to_dict(ttt_eval.load_config(tmp_path / "ttt-eval.toml")) == artifacts.read_manifest(run / "eval").config


def test_submission_is_refused_when_a_check_fails(legal_run, tmp_path):
    out = tmp_path / "2026-05-02_X"
    result, doc = verify(legal_run, "--track", "non_record_16mb", "--max-bytes", "1000", "--submission", out,
                         *SUBMIT, "--out", tmp_path / "v")
    assert result.exit_code == 3 and doc["submission"] is None and not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".2026")]  # no temp folder left


def test_record_track_submission_needs_record_hardware_and_seeds(legal_run, tmp_path):
    out = tmp_path / "2026-05-02_X"
    result, doc = verify(legal_run, "--submission", out, *SUBMIT, "--out", tmp_path / "v")
    assert result.exit_code == 3 and {"TIME-4", "STAT-1"} <= failing(doc) and not out.exists()


def test_submission_needs_its_author_fields(legal_run, tmp_path):
    result = runner.invoke(app, ["verify", str(legal_run), "--track", "non_record_16mb",
                                 "--submission", str(tmp_path / "x"), "--author", "A"])
    assert result.exit_code == 1 and "github_id" in result.output


# ============================================================================ unreadable input


def test_unreadable_input_exits_1(tmp_path):
    result = runner.invoke(app, ["verify", str(tmp_path / "missing")])
    assert result.exit_code == 1 and "does not exist" in result.output
    (tmp_path / "empty").mkdir()
    result = runner.invoke(app, ["verify", str(tmp_path / "empty")])
    assert result.exit_code == 1 and "no pgolf artifact" in result.output
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "manifest.json").write_text("{not json")
    result = runner.invoke(app, ["verify", str(tmp_path / "bad")])
    assert result.exit_code == 1 and "not valid JSON" in result.output


def test_unknown_track_is_a_usage_error(legal_run):
    result = runner.invoke(app, ["verify", str(legal_run), "--track", "5min"])
    assert result.exit_code == 1 and "unknown track" in result.output


def test_a_broken_upstream_manifest_is_a_fail_not_a_crash(run):
    (run / "quant" / "manifest.json").write_text("{broken")
    result, doc = verify(run)
    assert result.exit_code == 3 and "LINEAGE" in failing(doc)
    shutil.rmtree(run / "pack")
    result, doc = verify(run)
    assert result.exit_code == 3 and "LINEAGE" in failing(doc)


def test_cpu_golf_track_judges_times_on_this_machine(legal_run, tmp_path):
    result, doc = verify(legal_run, "--track", "cpu-golf", "--out", tmp_path / "v")
    assert (doc["options"]["max_bytes"], doc["options"]["max_train_s"], doc["options"]["max_eval_s"]) == \
        (1_000_000, 60.0, 180.0)
    # judged here, whatever this machine's speed: PASS or FAIL, never "not verifiable"
    assert verdicts(doc, "TIME-1") <= {"PASS", "FAIL", "INFO"} and verdicts(doc, "TIME-3") <= {"PASS", "FAIL"}
    assert verdicts(doc, "TIME-4") == {"INFO"}
    assert "PASS" in verdicts(doc, "SIZE-1") and "FAIL" not in verdicts(doc, "SIZE-1")
    assert result.exit_code == (0 if doc["ok"] else 3)


def test_official_shards_without_a_data_manifest(run):
    """Challenge shards carry no pgolf manifest: the stages name the val shards and tokenizer by sha256."""
    data = run / "data"
    (data / "manifest.json").unlink()
    for side in data.glob("bytes_val_*.bin"):
        side.unlink()  # nor a byte sidecar: the lookup tables are the denominator

    def official(m, stage):
        m["inputs"] = [e for e in m["inputs"] if e["kind"] != "data"] + [
            artifacts.input_entry("val_shard", p, run / stage) for p in datadir.list_shards(data, "val")] + [
            artifacts.input_entry("tokenizer", data / "tokenizer.model", run / stage)]

    for stage in ("train", "eval"):
        edit_manifest(run / stage, lambda m, stage=stage: official(m, stage))
    rehash(run, ("train", "quant", "pack", "eval"))
    result, doc = verify(run)
    assert result.exit_code == 0, [c for c in doc["checks"] if c["verdict"] == "FAIL"]
    assert verdicts(doc, "DATA-1") == {"WARN"} and verdicts(doc, "DATA-2") == {"WARN"}
    assert verdicts(doc, "MET-1") == {"PASS"} and "PASS" in verdicts(doc, "LINEAGE")


@pytest.mark.skipif(not HAVE_STAGES, reason="pgolf.stages.quantize / pack / ttt_eval are not in this tree yet: the "
                                            "legal run is built to the architecture contract from the pure APIs")
def test_real_pipeline_passes_with_probes(legal_run, tmp_path):
    """The run above came from `pgolf quantize`, `pgolf pack` and `pgolf ttt-eval` themselves."""
    result, doc = verify(legal_run, "--probe", "--probe-positions", "64", "--out", tmp_path / "v")
    assert result.exit_code == 0, [c for c in doc["checks"] if c["verdict"] == "FAIL"]
    for rule in ("SIZE-3", "FMT-3", "MET-5", "MET-6", "MET-7", "TTT-1"):
        assert "FAIL" not in verdicts(doc, rule) and "PASS" in verdicts(doc, rule), rule


def test_a_directory_of_two_seed_runs_is_a_claim_with_too_few_seeds(three_seeds, tmp_path):
    shutil.rmtree(three_seeds[2])
    result, doc = verify(tmp_path)
    assert result.exit_code == 3 and failing(doc) == {"STAT-1"}
