import json
import shutil

import pytest
import torch

from pgolf import artifacts as A
from pgolf.errors import ArtifactError


def _make(tmp_path, name="stage"):
    out = tmp_path / name
    with A.stage_dir(out, "train") as work:
        (work / "payload.bin").write_bytes(b"hello")
        m = A.Manifest(kind="train", config={"a": 1}, files=[A.file_entry(work, "payload.bin", "raw")])
        A.write_manifest(work, m)
    return out


def test_manifest_round_trip(tmp_path):
    out = _make(tmp_path)
    m = A.read_manifest(out, "train")
    assert m.kind == "train" and m.config == {"a": 1} and m.schema_version == A.SCHEMA_VERSION
    assert m.file("payload.bin")["bytes"] == 5
    assert A.Manifest.from_dict(json.loads(m.to_json())) == m
    A.check_files(out, m)


def test_stage_dir_leaves_nothing_on_error(tmp_path):
    with pytest.raises(RuntimeError):
        with A.stage_dir(tmp_path / "s", "train") as work:
            (work / "x").write_text("half")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_existing_output_needs_force(tmp_path):
    out = _make(tmp_path)
    with pytest.raises(ArtifactError, match="already holds a train artifact.*--force"):
        _make(tmp_path)
    with A.stage_dir(out, "train", force=True) as work:
        A.write_manifest(work, A.Manifest(kind="train"))
    assert A.read_manifest(out).files == []


@pytest.mark.parametrize("damage, message", [
    (lambda p: p.write_bytes(b"hellO"), "does not match its sha256"),
    (lambda p: p.write_bytes(b"hell"), "truncated or modified"),
    (lambda p: p.unlink(), "is missing"),
])
def test_check_files_detects_damage(tmp_path, damage, message):
    out = _make(tmp_path)
    damage(out / "payload.bin")
    with pytest.raises(ArtifactError, match=message):
        A.check_files(out, A.read_manifest(out))


def test_missing_and_wrong_kind_and_bad_json(tmp_path):
    with pytest.raises(ArtifactError, match="does not exist.*pgolf quantize"):
        A.read_manifest(tmp_path / "nope", "quant")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ArtifactError, match="no manifest.json"):
        A.read_manifest(tmp_path / "empty", "train")
    out = _make(tmp_path)
    with pytest.raises(ArtifactError, match="holds a 'train' artifact, expected pack"):
        A.read_manifest(out, "pack")
    (out / "manifest.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        A.read_manifest(out)


def test_newer_schema_refused_and_migrations_applied(tmp_path, monkeypatch):
    out = _make(tmp_path)
    raw = json.loads((out / "manifest.json").read_text())
    raw["schema_version"] = A.SCHEMA_VERSION + 1
    (out / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(ArtifactError, match="newer than this pgolf.*upgrade pgolf"):
        A.read_manifest(out)
    # A future schema v2 with a migration from v1: old manifests are upgraded on read.
    monkeypatch.setattr(A, "SCHEMA_VERSION", A.SCHEMA_VERSION + 1)
    monkeypatch.setitem(A.MIGRATIONS, 1, lambda m: {**m, "metrics": {**m["metrics"], "migrated": True}})
    raw["schema_version"] = 1
    (out / "manifest.json").write_text(json.dumps(raw))
    m = A.read_manifest(out)
    assert m.metrics["migrated"] is True and m.schema_version == 2
    raw["schema_version"] = 0
    (out / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(ArtifactError, match="cannot migrate"):
        A.read_manifest(out)


def test_inputs_are_relative_so_runs_can_move(tmp_path):
    run = tmp_path / "run"
    src = _make(run, "train")
    with A.stage_dir(run / "quant", "quant") as work:
        entry = A.input_entry("train", src / "manifest.json", run / "quant")
        A.write_manifest(work, A.Manifest(kind="quant", inputs=[entry]))
    assert A.read_manifest(run / "quant").inputs[0]["path"] == "../train/manifest.json"
    moved = tmp_path / "elsewhere"
    shutil.move(run, moved)
    m = A.read_manifest(moved / "quant")
    assert A.check_input(moved / "quant", m.input("train")) == (moved / "train" / "manifest.json").resolve()
    (moved / "train" / "manifest.json").write_text((moved / "train" / "manifest.json").read_text() + " ")
    with pytest.raises(ArtifactError, match="changed since"):
        A.check_input(moved / "quant", m.input("train"))


def test_safetensors_round_trip_and_corruption(tmp_path):
    path = tmp_path / "t.safetensors"
    tensors = {"b": torch.arange(6, dtype=torch.int8).reshape(2, 3), "a": torch.ones(3, dtype=torch.float16)}
    A.save_safetensors(path, tensors, {"pgolf.format": "x/1", "pgolf.config": {"n": [1, 2]}})
    got, meta = A.load_safetensors(path)
    assert meta == {"pgolf.format": "x/1", "pgolf.config": {"n": [1, 2]}}
    for k in tensors:
        torch.testing.assert_close(got[k], tensors[k], rtol=0, atol=0)
    first = path.read_bytes()
    A.save_safetensors(path, dict(reversed(tensors.items())), {"pgolf.format": "x/1", "pgolf.config": {"n": [1, 2]}})
    assert path.read_bytes() == first  # deterministic, independent of key order
    path.write_bytes(first[: len(first) - 7])
    with pytest.raises(ArtifactError, match="corrupt or truncated"):
        A.load_safetensors(path)
    with pytest.raises(ValueError, match="must start with 'pgolf.'"):
        A.save_safetensors(path, tensors, {"bad": "x"})


def test_atomic_writes_get_the_usual_file_mode(tmp_path):
    import os
    import stat

    path = tmp_path / "f.bin"
    A.atomic_write_bytes(path, b"x")
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask
