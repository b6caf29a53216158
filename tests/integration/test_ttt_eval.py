"""`pgolf ttt-eval` on a tiny trained -> quantized -> packed model: the artifact each mode writes, the
rules it enforces while it runs (SIZE-5, DATA-1, DATA-5, DATA-6, TIME-3, MET-1, MET-4), the
--compare-plain diagnostic, and every bad input."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pgolf import artifacts
from pgolf.cli import app
from pgolf.errors import ArtifactError, DataError
from pgolf.eval import check_ledger, parse_ledger
from pgolf.stages import ttt_eval as stage

runner = CliRunner()

# Small enough for 2 busy CPU cores: 2,933 targets (a tail that fills no window), L = 128 (the
# training length, resolved from the pack), chunks of 512 positions, one TTT epoch of 4-sequence batches.
EVAL_SET = ["stride=32", "chunk_tokens=512", "batch_seqs=32", "time_budget_s=0", "ttt.epochs=1", "ttt.batch_seqs=4",
            "ttt.lr=0.01"]
VAL_DOCS = 2


def sets(*extra: str) -> list[str]:
    return [x for kv in (*EVAL_SET, *extra) for x in ("--set", kv)]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, embedded_data, tiny_train) -> Path:
    """data/ (the first 2 documents as val, the tiny model's own tokenizer), quant/ and pack/ by the stages."""
    from pgolf.data.config import DataConfig
    from pgolf.stages import data

    run = tmp_path_factory.mktemp("ttt_eval")
    data.build(DataConfig(tokenizer=str(embedded_data / "tokenizer.model"), val_docs=VAL_DOCS), run / "data")
    for args in (["quantize", str(tiny_train), "--out", str(run / "quant")],
                 ["pack", str(run / "quant"), "--out", str(run / "pack")]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, f"pgolf {' '.join(args)}: {result.output}"
    return run


def ttt_eval(run: Path, out: Path, *args: str):
    """Invoke the CLI on the run's pack and data with --json; returns (result, the JSON document or None)."""
    result = runner.invoke(app, ["ttt-eval", str(run / "pack"), "--data", str(run / "data"), "--out", str(out),
                                 *args, "--json"])
    doc = json.loads(result.stdout) if result.exit_code == 0 else None
    return result, doc


@pytest.fixture(scope="module")
def evals(run_dir):
    """One evaluation per mode, run once per module: mode -> (eval dir, --json document)."""
    done: dict[str, tuple[Path, dict]] = {}

    def get(mode: str) -> tuple[Path, dict]:
        if mode not in done:
            out = run_dir / f"eval-{mode}"
            result, doc = ttt_eval(run_dir, out, "--mode", mode, *sets())
            assert result.exit_code == 0, result.output
            done[mode] = (out, doc)
        return done[mode]

    return get


def data_metrics(run: Path) -> dict:
    return artifacts.read_manifest(run / "data", "data").metrics


# ----------------------------------------------------------------------------- the artifact


@pytest.mark.parametrize("mode", ["plain", "sliding", "ttt"])
def test_each_mode_writes_a_ledger_that_rechecks(run_dir, evals, mode):
    out, doc = evals(mode)
    dm = data_metrics(run_dir)
    assert list(doc) == [*stage.JSON_KEYS, "out"] and doc["mode"] == mode
    assert doc["ledger"] == str(out / stage.LEDGER_FILE) and doc["out"] == str(out)

    manifest = artifacts.read_manifest(out, "eval")
    artifacts.check_files(out, manifest)
    assert {f["path"] for f in manifest.files} == {"report.json", "ledger.jsonl.zst"}

    # every val target exactly once, tail included; bytes = the data manifest's (MET-1, MET-4)
    text = stage.read_ledger(out)
    check = check_ledger(text, num_positions=dm["val_tokens"] - 1, val_bytes=dm["val_bytes"],
                         reported_bpb=doc["val_bpb"])
    assert check.ok, check.problems
    header, entries, summary = parse_ledger(text)
    assert entries[0].start == 0 and entries[-1].end == dm["val_tokens"] - 1
    assert all(a.end == b.start for a, b in zip(entries, entries[1:]))
    assert doc["val_tokens"] == dm["val_tokens"] - 1 == sum(e.count for e in entries)
    assert doc["val_bytes"] == dm["val_bytes"] == check.val_bytes
    # the reported numbers are the ledger's, everywhere
    report = json.loads((out / "report.json").read_text())
    assert doc["val_bpb"] == check.val_bpb == report["val_bpb"] == manifest.metrics["val_bpb"] == summary["val_bpb"]
    assert doc["val_loss"] == check.val_loss == report["val_loss"]
    assert report["ledger"] == stage.LEDGER_FILE and report["mode"] == mode

    # the scored bytes are the measured model.bin (SIZE-5); the data by its manifest (DATA-1)
    pack_sha = artifacts.read_manifest(run_dir / "pack", "pack").file("model.bin")["sha256"]
    assert pack_sha == artifacts.sha256_file(run_dir / "pack" / "model.bin")
    assert [(e["kind"], Path(e["path"]).name) for e in manifest.inputs] == [
        ("pack", "manifest.json"), ("pack", "model.bin"), ("data", "manifest.json")]
    assert manifest.inputs[1]["sha256"] == pack_sha == manifest.metrics["model_sha256"] == header["model_sha256"]
    for entry in manifest.inputs:
        artifacts.check_input(out, entry)

    # the window is the training length, resolved from the pack; the clock covers loading too
    assert manifest.config["seq_len"] == header["seq_len"] == 128
    assert header["stride"] == {"plain": 128, "sliding": 32, "ttt": 32}[mode] == manifest.metrics["stride"]
    t = manifest.timing
    assert doc["eval_time_s"] == t["eval_time_s"] >= t["load_s"] + t["data_s"] + t["score_s"] + t["adapt_s"]
    assert doc["tokens_per_s"] > 0 and manifest.metrics["warmup_source"] == "synthetic"
    adapted = [e for e in entries if e.steps]
    if mode == "ttt":
        assert len(adapted) == len(entries) - 1 and entries[-1].adapt == "last"
        assert all(s.spans and max(b for _, b in s.spans) <= e.end for e in adapted for s in e.steps)
    else:
        assert not adapted and manifest.metrics["adapted_chunks"] == 0


def test_sliding_with_stride_equal_to_the_window_is_plain(run_dir, evals, tmp_path):
    plain_out, plain = evals("plain")
    cfg = stage.load_config(None, [*EVAL_SET, "stride=128"], "sliding")
    manifest = stage.run(cfg, run_dir / "pack", run_dir / "data", tmp_path / "eval")
    assert manifest.metrics["val_bpb"] == plain["val_bpb"] and manifest.metrics["mode"] == "sliding"
    ours = parse_ledger(stage.read_ledger(tmp_path / "eval"))[1]
    theirs = parse_ledger(stage.read_ledger(plain_out))[1]
    assert [(e.start, e.end, e.loss_sha256) for e in ours] == [(e.start, e.end, e.loss_sha256) for e in theirs]


def test_the_evaluation_pack_recorded_is_the_default(run_dir, tmp_path):
    """Defaults <- the pack's recorded evaluation (what its train_gpt.py runs) <- --config <- --set <- --mode."""
    pack = tmp_path / "pack"
    result = runner.invoke(app, ["pack", str(run_dir / "quant"), "--out", str(pack), "--set", "eval.mode=plain",
                                 "--set", "eval.chunk_tokens=512", "--set", "eval.time_budget_s=0"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["ttt-eval", str(pack), "--data", str(run_dir / "data"), "--out", str(tmp_path / "e"),
                                 "--json"])
    assert result.exit_code == 0, result.output
    cfg = artifacts.read_manifest(tmp_path / "e", "eval").config
    assert (cfg["mode"], cfg["chunk_tokens"], cfg["seq_len"], cfg["time_budget_s"]) == ("plain", 512, 128, 0.0)

    toml = tmp_path / "eval.toml"
    toml.write_text('[eval]\nmode = "sliding"\nstride = 16\nbatch_seqs = 8\n\n[eval.ttt]\nepochs = 2\n')
    cfg = stage.load_config(toml, ["stride=32", "mode=ttt"], "plain", pack=pack)
    assert (cfg.mode, cfg.stride, cfg.batch_seqs, cfg.ttt.epochs, cfg.chunk_tokens) == ("plain", 32, 8, 2, 512)
    assert stage.pack_eval_table(tmp_path / "nope") is None  # the stage says what is wrong with it


def test_the_score_is_of_the_packed_weights_not_the_trained_ones(run_dir, evals, tiny_train):
    from pgolf.artifacts import data as datadir
    from pgolf.artifacts.model import load_model
    from pgolf.eval import EvalConfig, evaluate

    _, plain = evals("plain")
    trained, _, _ = load_model(tiny_train)
    tokens = datadir.load_val_tokens(run_dir / "data")
    side = datadir.load_val_bytes(run_dir / "data")
    cfg = EvalConfig(mode="plain", seq_len=128, chunk_tokens=512, time_budget_s=0)
    assert evaluate(trained, tokens, side, cfg).val_bpb != plain["val_bpb"]  # quantization changed the weights
    packed, _ = stage.load_model(run_dir / "pack")
    assert evaluate(packed, tokens, side, cfg).val_bpb == plain["val_bpb"]


def test_a_tampered_model_bin_is_refused(run_dir, tmp_path):
    pack = tmp_path / "pack"
    shutil.copytree(run_dir / "pack", pack)
    blob = bytearray((pack / "model.bin").read_bytes())
    blob[len(blob) // 2] ^= 0x40
    (pack / "model.bin").write_bytes(bytes(blob))
    result = runner.invoke(app, ["ttt-eval", str(pack), "--data", str(run_dir / "data"), "--out", str(tmp_path / "e")])
    assert result.exit_code == 1 and "model.bin" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "e").exists()

    # the same damage with the manifest re-hashed to match: decoding refuses the blob (its crc32s)
    manifest = artifacts.read_manifest(pack, "pack")
    manifest.files = [artifacts.file_entry(pack, f["path"], f["format"]) for f in manifest.files]
    artifacts.write_manifest(pack, manifest)
    with pytest.raises(ArtifactError):
        stage.run(stage.load_config(None, EVAL_SET, "plain"), pack, run_dir / "data", tmp_path / "e")
    assert not (tmp_path / "e").exists()


# ----------------------------------------------------------------------------- the data (DATA-1, MET-1)


@pytest.fixture
def no_scoring(monkeypatch):
    """Fails the test if anything is scored: data problems must stop the stage before the first forward."""
    import pgolf.eval

    def refuse(*args, **kwargs):
        raise AssertionError("scored although the data check should have failed")

    monkeypatch.setattr(pgolf.eval, "evaluate", refuse)


def _copy_data(run: Path, tmp_path: Path) -> Path:
    data = tmp_path / "data"
    shutil.copytree(run / "data", data)
    return data


@pytest.mark.parametrize("name", ["fineweb_val_000000.bin", "bytes_val_000000.bin"])
def test_a_modified_val_file_fails_before_scoring(run_dir, tmp_path, no_scoring, name):
    data = _copy_data(run_dir, tmp_path)
    raw = bytearray((data / name).read_bytes())
    raw[1024 + 2 * 10] ^= 0x01  # one token id (or byte count) changed, the size kept
    (data / name).write_bytes(bytes(raw))
    cfg = stage.load_config(None, EVAL_SET, "plain")
    with pytest.raises(DataError, match=rf"{name} does not match the data manifest.*DATA-1"):
        stage.run(cfg, run_dir / "pack", data, tmp_path / "eval")
    assert not (tmp_path / "eval").exists()


def test_an_extra_val_shard_or_a_wrong_byte_total_fails_before_scoring(run_dir, tmp_path, no_scoring):
    cfg = stage.load_config(None, EVAL_SET, "plain")
    data = _copy_data(run_dir, tmp_path)
    shutil.copy(data / "fineweb_val_000000.bin", data / "fineweb_val_000001.bin")
    with pytest.raises(DataError, match=r"does not list \(fineweb_val_000001.bin\).*DATA-1"):
        stage.run(cfg, run_dir / "pack", data, tmp_path / "eval")

    data = _copy_data(run_dir, tmp_path / "b")
    path = data / "manifest.json"
    raw = json.loads(path.read_text())
    raw["metrics"]["val_bytes"] += 1  # a denominator that is not the sidecar's (MET-1)
    path.write_text(json.dumps(raw))
    with pytest.raises(DataError, match=r"sums to [\d,]+ bytes over the val targets.*MET-1"):
        stage.run(cfg, run_dir / "pack", data, tmp_path / "eval")


def test_official_shards_without_a_manifest(run_dir, evals, tmp_path):
    """The challenge's own layout: val shards and a tokenizer, no pgolf manifest, no sidecar. The bytes
    come from the tokenizer's lookup tables; the shards and tokenizer are recorded by sha256."""
    shards = tmp_path / "shards"
    shards.mkdir()
    shutil.copy(run_dir / "data" / "fineweb_val_000000.bin", shards)
    tok = shutil.copy(run_dir / "data" / "tokenizer.model", tmp_path / "sp.model")
    base = [str(run_dir / "pack"), "--data", str(shards), "--out", str(tmp_path / "e"), "--mode", "plain", *sets()]
    _fails(base, "neither a byte sidecar nor a tokenizer", "--tokenizer")
    result = runner.invoke(app, ["ttt-eval", *base, "--tokenizer", str(tok), "--json"])
    assert result.exit_code == 0, result.output
    assert "no pgolf data manifest" in result.output
    doc = json.loads(result.stdout)
    _, plain = evals("plain")
    assert doc["val_bpb"] == plain["val_bpb"] and doc["val_bytes"] == data_metrics(run_dir)["val_bytes"]
    manifest = artifacts.read_manifest(tmp_path / "e", "eval")
    assert [e["kind"] for e in manifest.inputs] == ["pack", "pack", "val_shard", "tokenizer"]
    assert manifest.metrics["val_bytes_source"] == "lut"
    _fails([str(run_dir / "pack"), "--data", str(run_dir / "data"), "--out", str(tmp_path / "e2"), "--tokenizer",
            str(tok)], "only for shards without a pgolf manifest")


def test_reads_only_the_artifact_and_val_data_and_opens_no_socket(run_dir, tmp_path):
    """DATA-5 / DATA-6: an audit hook sees every file the stage opens and any socket it makes."""
    opened, sockets = _audit(lambda: stage.run(stage.load_config(None, EVAL_SET, "plain"), run_dir / "pack",
                                              run_dir / "data", tmp_path / "eval"))
    data_files = {Path(p).name for p in opened if Path(p).parent == (run_dir / "data")}
    assert data_files and data_files <= {"manifest.json", "tokenizer.model", "fineweb_val_000000.bin",
                                         "bytes_val_000000.bin"}, data_files
    assert not [p for p in opened if "fineweb_train_" in p] and not sockets
    assert any(Path(p) == run_dir / "pack" / "model.bin" for p in opened)


_AUDIT: dict[str, list] | None = None


def _audit(fn) -> tuple[list[str], list[str]]:
    """Run fn() and return (paths opened, socket events) seen by a process-wide audit hook."""
    global _AUDIT
    if not getattr(_audit, "installed", False):
        def hook(event, args):
            if _AUDIT is None:
                return
            if event == "open" and isinstance(args[0], (str, Path)):
                _AUDIT["open"].append(str(Path(args[0]).resolve()))
            elif event.startswith("socket."):
                _AUDIT["socket"].append(event)

        sys.addaudithook(hook)  # cannot be removed: it does nothing outside _audit
        _audit.installed = True
    _AUDIT = {"open": [], "socket": []}
    try:
        fn()
        return _AUDIT["open"], _AUDIT["socket"]
    finally:
        _AUDIT = None


# ----------------------------------------------------------------------------- the clock (TIME-3)


class FakeClock:
    """One second passes at every reading: a slow machine (about 4 s per adapted chunk) on a short budget."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def test_the_ttt_deadline_stops_adaptation_and_keeps_scoring(run_dir, tmp_path):
    # 12 chunks; adapting chunk k is projected to end near 22 + 3k fake seconds: it stops about halfway
    cfg = stage.load_config(None, [*EVAL_SET, "chunk_tokens=256", "time_budget_s=34", "deadline_margin_s=0"], "ttt")
    manifest = stage.run(cfg, run_dir / "pack", run_dir / "data", tmp_path / "eval", clock=FakeClock())
    m = manifest.metrics
    text = stage.read_ledger(tmp_path / "eval")
    dm = data_metrics(run_dir)
    assert check_ledger(text, num_positions=dm["val_tokens"] - 1, val_bytes=dm["val_bytes"]).ok
    entries = parse_ledger(text)[1]
    kinds = [e.adapt for e in entries]
    stopped = m["adapt_stopped_at"]
    assert stopped is not None and 0 < stopped < len(entries) - 1
    assert kinds == ["adapted"] * stopped + ["deadline"] * (len(entries) - 1 - stopped) + ["last"]
    assert m["adapted_chunks"] == stopped and m["val_tokens"] == dm["val_tokens"] - 1  # every target scored
    assert m["within_budget"] is False and manifest.timing["eval_time_s"] > 34  # the clock is judged, not hidden


# ----------------------------------------------------------------------------- --compare-plain


def test_compare_plain_reports_the_ttt_gain_from_a_separate_pass(run_dir, evals, tmp_path):
    _, ttt = evals("ttt")
    _, sliding = evals("sliding")
    out = tmp_path / "eval"
    result, doc = ttt_eval(run_dir, out, "--mode", "ttt", "--compare-plain", *sets())
    assert result.exit_code == 0, result.output
    assert list(doc) == [*stage.JSON_KEYS, *stage.COMPARE_KEYS, "out"]
    # the reported score is the TTT pass, exactly as without the diagnostic pass (TTT-2, TTT-3)
    assert doc["val_bpb"] == ttt["val_bpb"]
    # the diagnostic: the same windows without adaptation, from the artifact's weights
    assert doc["plain_val_bpb"] == sliding["val_bpb"]
    assert doc["ttt_gain_bpb"] == doc["plain_val_bpb"] - doc["val_bpb"]
    dm = data_metrics(run_dir)
    for name, bpb, role in ((stage.LEDGER_FILE, doc["val_bpb"], "reported"),
                            (stage.PLAIN_LEDGER_FILE, doc["plain_val_bpb"], "diagnostic")):
        text = stage.read_ledger(out, name)
        assert check_ledger(text, num_positions=dm["val_tokens"] - 1, val_bytes=dm["val_bytes"], reported_bpb=bpb).ok
        assert parse_ledger(text)[0]["pass"] == role
    manifest = artifacts.read_manifest(out, "eval")
    assert manifest.metrics["val_bpb"] == doc["val_bpb"] and "plain_pass_s" in manifest.timing


# ----------------------------------------------------------------------------- bad inputs


def _fails(args: list[str], *needles: str, code: int = 1) -> None:
    result = runner.invoke(app, ["ttt-eval", *args])
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    if code == 1:  # a user error is one line naming the problem and the fix
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    for needle in needles:
        assert needle in result.output, result.output


def test_missing_or_wrong_pack_directory(run_dir, tmp_path):
    data = ["--data", str(run_dir / "data"), "--out", str(tmp_path / "e")]
    _fails([str(tmp_path / "nope"), *data], "does not exist", "pgolf pack")
    (tmp_path / "empty").mkdir()
    _fails([str(tmp_path / "empty"), *data], "not a pack artifact", "pgolf pack")
    _fails([str(run_dir / "data"), *data], "holds a 'data' artifact, expected pack")
    assert not (tmp_path / "e").exists()


def test_data_of_another_tokenizer_or_vocabulary(run_dir, tmp_path, no_scoring):
    from pgolf.data.config import DataConfig
    from pgolf.stages import data

    # the embedded tokenizer trained without the first 2 documents: another tokenizer, the same vocabulary
    other = tmp_path / "other"
    data.build(DataConfig(val_docs=VAL_DOCS), other)
    _fails([str(run_dir / "pack"), "--data", str(other), "--out", str(tmp_path / "e")],
           "another tokenizer than the model was trained with")
    small = tmp_path / "small"
    data.build(DataConfig(val_docs=VAL_DOCS, vocab_size=512), small)
    _fails([str(run_dir / "pack"), "--data", str(small), "--out", str(tmp_path / "e")],
           "vocabulary of 512 tokens, the model 1024")


def test_usage_and_config_errors(run_dir, tmp_path):
    base = [str(run_dir / "pack"), "--data", str(run_dir / "data"), "--out", str(tmp_path / "e")]
    _fails([*base, "--mode", "best"], "best", code=2)  # not a mode: a usage error
    _fails([*base, "--set", "strid=32"], "unknown config key 'strid'", "did you mean 'stride'")
    toml = tmp_path / "eval.toml"
    toml.write_text("[eval]\nmode = \"ttt\"\n\n[eval.ttt]\nepoch = 2\n")
    _fails([*base, "--config", str(toml)], "unknown config key 'epoch' in [ttt]")
    _fails([*base, "--mode", "sliding", "--compare-plain"], "--compare-plain", "--mode ttt")
    assert not (tmp_path / "e").exists()

    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "keep.txt").write_text("x")
    _fails([*base, "--mode", "plain"], "files pgolf did not write", "choose another --out")
    _fails([*base, "--mode", "plain", "--force"], "files pgolf did not write", "even with --force")
    assert (tmp_path / "e" / "keep.txt").read_text() == "x"  # --force never replaces what pgolf did not write
    (tmp_path / "e" / "keep.txt").unlink()
    result, doc = ttt_eval(run_dir, tmp_path / "e", "--mode", "plain", *sets())
    assert result.exit_code == 0, result.output
    _fails([*base, "--mode", "plain"], "already holds an eval artifact", "--force")


def test_human_output_names_the_next_command(run_dir, tmp_path):
    run = tmp_path / "run"
    for kind in ("pack", "data"):
        shutil.copytree(run_dir / kind, run / kind)
    result = runner.invoke(app, ["ttt-eval", str(run / "pack"), "--data", str(run / "data"), "--mode", "plain",
                                 *sets()])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())  # rich wraps long lines
    assert "final_plain val_loss:" in text and f"Next: pgolf verify {run}" in text
    assert (run / "eval" / "manifest.json").is_file()  # --out defaults to eval/ next to the pack


# ----------------------------------------------------------------------------- torchrun


@pytest.mark.slow
def test_two_ranks_under_torchrun_equal_one_process(run_dir, evals, tmp_path):
    import os
    import subprocess

    _, one = evals("ttt")
    out = tmp_path / "eval"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "pgolf",
           "ttt-eval", str(run_dir / "pack"), "--data", str(run_dir / "data"), "--out", str(out), "--mode", "ttt",
           "--device", "cpu", *sets(), "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(proc.stdout)  # rank 0 alone prints
    manifest = artifacts.read_manifest(out, "eval")
    text = stage.read_ledger(out)
    header, entries, _ = parse_ledger(text)
    assert header["world_size"] == 2 == manifest.metrics["world_size"] == manifest.env["world_size"]
    single = parse_ledger(stage.read_ledger(evals("ttt")[0]))[1]
    assert [(e.start, e.end, e.byte_sum, [s.spans for s in e.steps]) for e in entries] == \
           [(e.start, e.end, e.byte_sum, [s.spans for s in e.steps]) for e in single]
    assert doc["val_bpb"] == pytest.approx(one["val_bpb"], rel=1e-5)
    assert doc["val_tokens"] == one["val_tokens"] and doc["val_bytes"] == one["val_bytes"]

