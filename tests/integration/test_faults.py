"""Fault injection against the stage contract (pgolf.stages.runner) and the artifact readers.

Each case is what a careless or hostile user does: an --out over the stage's own input, two writers
into one directory, a full disk, a forged manifest, a corrupt or oversized input. Each must end in one
clear line and exit 1 (or a verify FAIL), with the inputs unchanged and nothing half-written.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import zstandard
from typer.testing import CliRunner

from pgolf import artifacts
from pgolf.artifacts import data as datadir
from pgolf.cli import app
from pgolf.data import shards
from pgolf.errors import ArtifactError, DataError
from pgolf.stages import runner as stage_runner

pytestmark = pytest.mark.slow
cli = CliRunner()


def fails(args, *needles) -> str:
    """The command exits 1 with one error line holding every needle, and no traceback."""
    result = cli.invoke(app, [str(a) for a in args])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error:"), result.output
    text = " ".join(result.output.split())
    for needle in needles:
        assert needle in text, result.output
    return text


def intact(directory: Path) -> None:
    artifacts.check_files(directory, artifacts.read_manifest(directory))


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if ".tmp-" in p.name or p.name.endswith(".partial"))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_train) -> Path:
    """RUN/{train,quant,pack}: a copy of the session's tiny model, quantized and packed into one run."""
    from pgolf.stages import quantize

    run = tmp_path_factory.mktemp("faults") / "run"
    shutil.copytree(tiny_train, run / "train")
    quantize.run(quantize.load_config(run / "train", scheme="int6"), run / "train", run / "quant")
    result = cli.invoke(app, ["pack", str(run / "quant"), "--out", str(run / "pack"), "--codec", "zstd"])
    assert result.exit_code == 0, result.output
    return run


@pytest.fixture()
def data_copy(tmp_path, embedded_data) -> Path:
    out = tmp_path / "data"
    shutil.copytree(embedded_data, out)
    return out


# ----------------------------------------------------------------------------- inputs are never outputs


def test_pack_force_over_its_own_run_or_input_is_refused(run_dir):
    for out in (run_dir, run_dir / "quant", run_dir / "train", run_dir / "train" / "sub"):
        fails(["pack", run_dir / "quant", "--out", out, "--force"], "input of this stage")
    for stage in ("train", "quant", "pack"):
        intact(run_dir / stage)
    assert (run_dir / "train" / "sub").exists() is False


def test_train_force_over_its_data_is_refused(data_copy):
    for out in (data_copy, data_copy.parent):
        fails(["train", "--preset", "tiny", "--data", data_copy, "--out", out, "--force"], "input of this stage")
    intact(data_copy)
    assert leftovers(data_copy.parent) == []


def test_data_build_never_deletes_its_corpus(tmp_path, monkeypatch):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps({"text": f"document {i} " * 20}) + "\n" for i in range(40)))
    before = corpus.read_bytes()
    fails(["data", "build", "--corpus", corpus, "--out", tmp_path, "--force", "--val-docs", "5"],
          "input of this stage")
    monkeypatch.chdir(tmp_path)
    fails(["data", "build", "--corpus", "c.jsonl", "--out", ".", "--force", "--val-docs", "5"],
          "is the working directory")
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.chdir(empty)  # even an empty working directory is never swapped out from under the shell
    fails(["data", "build", "--out", ".", "--val-docs", "5"], "is the working directory")
    assert corpus.read_bytes() == before


def test_force_never_replaces_a_foreign_directory_or_another_kind(run_dir, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    fails(["pack", run_dir / "quant", "--out", mine, "--force"], "files pgolf did not write", "even with --force")
    assert (mine / "notes.txt").read_text() == "keep"
    other = tmp_path / "train-copy"
    shutil.copytree(run_dir / "train", other)
    fails(["pack", run_dir / "quant", "--out", other, "--force"], "holds a 'train' artifact")
    intact(other)


def test_the_wrong_input_kind_is_named_before_the_output(run_dir):
    # RUN/pack exists: the complaint must be about the input, not "already holds an artifact"
    text = fails(["pack", run_dir / "train"], "holds a 'train' artifact", "expected quant")
    assert "already holds" not in text


# ----------------------------------------------------------------------------- one writer at a time


HOLD = textwrap.dedent("""
    import json, os, sys
    from filelock import FileLock
    lock = FileLock(sys.argv[1], timeout=0)
    lock.acquire()
    open(sys.argv[1], "w").write(json.dumps({"pid": os.getpid(), "host": "here", "command": "pgolf run other"}))
    print("held", flush=True)
    sys.stdin.read()
""")


@pytest.fixture()
def held(tmp_path):
    """hold(path): another process holds pgolf's lock on `path` until the test ends."""
    procs = []

    def hold(out: Path) -> int:
        out.parent.mkdir(parents=True, exist_ok=True)
        proc = subprocess.Popen([sys.executable, "-c", HOLD, str(stage_runner.lock_path(out))],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        assert proc.stdout.readline().strip() == "held"
        return proc.pid

    yield hold
    for proc in procs:
        proc.stdin.close()
        proc.wait(timeout=10)


def test_a_second_writer_gets_one_line_naming_the_first(run_dir, tmp_path, held):
    out = tmp_path / "pack"
    pid = held(out)
    fails(["pack", run_dir / "quant", "--out", out], "is being written by", f"pid {pid}", "pgolf run other")
    assert not out.exists() and leftovers(tmp_path) == []


def test_two_pipeline_runs_into_one_directory(tmp_path, held):
    out = tmp_path / "run"
    pid = held(out)
    fails(["run", "configs/demo.toml", "--out", out], "is being written by", f"pid {pid}")
    assert not (out / "train.partial").exists() and not (out / "train").exists()


def test_the_lock_is_released_after_a_stage(run_dir, tmp_path):
    out = tmp_path / "p"
    for _ in range(2):  # the second run replaces the first: the lock of the first is gone
        result = cli.invoke(app, ["pack", str(run_dir / "quant"), "--out", str(out), "--codec", "zstd", "--force"])
        assert result.exit_code == 0, result.output


# ----------------------------------------------------------------------------- the machine refuses


@pytest.fixture()
def full_disk(monkeypatch):
    """Every durable write fails as on a full disk (every pgolf file goes through fsync)."""
    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)


def test_full_disk_in_pack_and_quantize(run_dir, tmp_path, full_disk):
    fails(["pack", run_dir / "quant", "--out", tmp_path / "p"], "no space left on the device", "free some space")
    fails(["quantize", run_dir / "train", "--out", tmp_path / "q"], "no space left on the device")
    assert list(tmp_path.iterdir()) == [] or all(p.name.endswith(".lock") for p in tmp_path.iterdir())


def test_full_disk_in_data_build_and_train(tmp_path, embedded_data, full_disk):
    fails(["data", "build", "--out", tmp_path / "d", "--val-docs", "5"], "no space left on the device")
    assert not (tmp_path / "d").exists() and leftovers(tmp_path) == []
    fails(["train", "--preset", "tiny", "--data", embedded_data, "--out", tmp_path / "t", "--set",
           "iterations=2"], "no space left on the device")
    assert not (tmp_path / "t").exists()


# ----------------------------------------------------------------------------- forged manifests


def _edit_manifest(directory: Path, edit) -> None:
    raw = json.loads((directory / "manifest.json").read_text())
    edit(raw)
    (directory / "manifest.json").write_text(json.dumps(raw))


def test_a_manifest_of_the_wrong_shape_is_one_line(run_dir, tmp_path):
    quant = tmp_path / "quant"
    shutil.copytree(run_dir / "quant", quant)
    _edit_manifest(quant, lambda m: m.update(files={"quant.safetensors": 1}))
    fails(["pack", quant, "--out", tmp_path / "p"], "'files' is not a list")
    _edit_manifest(quant, lambda m: m.update(files=[{"path": 3}]))
    fails(["pack", quant, "--out", tmp_path / "p"], "files[0] is not an object")


def test_files_and_inputs_must_stay_inside_the_run(run_dir, tmp_path):
    from pgolf.stages.verify import load_stage

    pack = tmp_path / "run" / "pack"
    shutil.copytree(run_dir / "pack", pack)
    hostname = Path("/etc/hostname")
    if hostname.is_file():  # a forger lists a file outside the run, with its true size and sha256
        entry = artifacts.file_entry(Path("/"), "etc/hostname", "x")
        entry["path"] = os.path.relpath(hostname, pack)
        _edit_manifest(pack, lambda m: m["files"].append(entry))
        with pytest.raises(ArtifactError, match="outside its directory"):
            intact(pack)
        assert "outside its directory" in load_stage(pack, "pack").error  # verify FAILs LINEAGE on it
        shutil.rmtree(pack)
        shutil.copytree(run_dir / "pack", pack)
    # an input named by an absolute path
    absolute = str((run_dir / "quant" / "manifest.json").resolve())
    _edit_manifest(pack, lambda m: m["inputs"][0].update(path=absolute))
    with pytest.raises(ArtifactError, match="absolute"):
        artifacts.resolve_input(pack, artifacts.read_manifest(pack).inputs[0])
    assert "absolute" in load_stage(pack, "pack").error
    # an input reached through a symbolic link out of the run
    (tmp_path / "run" / "quant").symlink_to(run_dir / "quant", target_is_directory=True)
    _edit_manifest(pack, lambda m: m["inputs"][0].update(path="../quant/manifest.json"))
    with pytest.raises(ArtifactError, match="symbolic link"):
        artifacts.resolve_input(pack, artifacts.read_manifest(pack).inputs[0])
    # a listed file that is a link
    (pack / "train_gpt.py").unlink()
    (pack / "train_gpt.py").symlink_to(run_dir / "pack" / "train_gpt.py")
    with pytest.raises(ArtifactError, match="symbolic link"):
        intact(pack)


def test_a_train_manifest_without_its_config_is_refused(run_dir, tmp_path):
    train = tmp_path / "train"
    shutil.copytree(run_dir / "train", train)
    _edit_manifest(train, lambda m: m.update(config={}))
    fails(["quantize", train, "--out", tmp_path / "q"], "records no training config")


def test_model_dimensions_are_checked_before_allocating(run_dir, tmp_path):
    """A forged vocab_size of 2**31 in the safetensors metadata, the file and manifest re-hashed."""
    from pgolf.artifacts.model import MODEL_FILE, load_model

    train = tmp_path / "train"
    shutil.copytree(run_dir / "train", train)
    tensors, meta = artifacts.load_safetensors(train / MODEL_FILE)
    meta["pgolf.model_config"]["vocab_size"] = 2 ** 31 - 1
    artifacts.save_safetensors(train / MODEL_FILE, tensors, meta)
    m = artifacts.read_manifest(train)
    m.files = [artifacts.file_entry(train, f["path"], f["format"]) for f in m.files]
    artifacts.write_manifest(train, m)
    tracemalloc.start()
    try:
        with pytest.raises(ArtifactError, match="does not fit its model config"):
            load_model(train)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 256 << 20  # the forged model would take 2**31 * model_dim * 4 bytes


# ----------------------------------------------------------------------------- data


def test_out_of_vocabulary_ids_in_shards_without_a_manifest(tmp_path, embedded_data):
    shards_dir = tmp_path / "shards"
    shards_dir.mkdir()
    tokens = np.asarray(datadir.load_val_tokens(embedded_data))
    shutil.copy(embedded_data / "fineweb_val_000000.bin", shards_dir)
    bad = np.asarray(datadir.open_shard(embedded_data / "fineweb_train_000000.bin")).copy()
    bad[len(bad) // 2] = 4000  # >= every tiny vocabulary
    (shards_dir / "fineweb_train_000000.bin").write_bytes(shards.shard_bytes(bad))
    fails(["train", "--preset", "tiny", "--data", shards_dir, "--tokenizer", embedded_data / "tokenizer.model",
           "--out", tmp_path / "t", "--set", "iterations=2"], "token id 4000", "vocabulary size")
    assert leftovers(tmp_path) == [] and tokens.size


def test_a_sidecar_edited_in_place_is_not_trained_on(tmp_path, data_copy):
    side = data_copy / "bytes_val_000000.bin"
    raw = bytearray(side.read_bytes())
    raw[-1] ^= 1  # same size, other bytes
    side.write_bytes(bytes(raw))
    fails(["train", "--preset", "tiny", "--data", data_copy, "--out", tmp_path / "t", "--set", "iterations=2"],
          "bytes_val_000000.bin", "does not match")


def test_data_naming_a_file_and_a_huge_seq_len(tmp_path, embedded_data):
    fails(["train", "--preset", "tiny", "--data", embedded_data / "fineweb_val_000000.bin", "--out", tmp_path / "t"],
          "is a file, not a data directory")
    text = fails(["train", "--preset", "tiny", "--data", embedded_data, "--out", tmp_path / "t",
                  "--set", "seq_len=100000000", "--set", "batch_tokens=100000000", "--set", "val_tokens=0", "--set", "val_batch_tokens=100000000"], "seq_len 100,000,000", "use a smaller seq_len")
    assert not text.startswith("error: the validation split")


def test_a_corrupt_resume_checkpoint_says_how_to_start_over(tmp_path, embedded_data):
    from pgolf.stages import train

    out = tmp_path / "t"
    work = train.work_dir(out)
    result = cli.invoke(app, ["train", "--preset", "tiny", "--data", str(embedded_data), "--out", str(out),
                              "--set", "iterations=4", "--set", "checkpoint_every_s=0", "--max-seconds", "0"])
    assert result.exit_code == 0, result.output
    shutil.copytree(out, work)  # an interrupted run: its record and a checkpoint
    (work / "manifest.json").unlink()
    stored = {"config": artifacts.read_manifest(out).config, "data": train.TrainData(embedded_data, None, 1024).identity(),
              "run_id": "x"}
    artifacts.write_json(work / train.RESUME_FILE, stored)
    (work / train.CHECKPOINT_FILE).write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage")
    shutil.rmtree(out)
    fails(["train", "--data", embedded_data, "--out", out, "--resume"], "start over with --force")


def test_a_corpus_line_that_never_ends_is_refused_in_bounded_memory(tmp_path):
    """64 KB of zstd that would expand to one 1 GB line."""
    bomb = tmp_path / "bomb.jsonl.zst"
    with open(bomb, "wb") as f, zstandard.ZstdCompressor(level=3).stream_writer(f) as w:
        w.write(b'{"text": "')
        block = b"a" * (1 << 20)
        for _ in range(1024):
            w.write(block)
    assert bomb.stat().st_size < 1 << 20
    from pgolf.artifacts.corpus import iter_file_documents

    tracemalloc.start()
    try:
        with pytest.raises(DataError, match="a line longer than 64 MiB"):
            list(iter_file_documents(bomb))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 400 << 20
