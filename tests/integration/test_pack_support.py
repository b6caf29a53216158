"""Shared fixtures and helpers of the pack and submission tests (no tests here).

A tiny trained model (conftest's `tiny_train`) is quantized by `pgolf quantize` and packed by
`pgolf pack` once per session; the evaluation settings recorded in the pack are scaled down so the
submission file scores a short validation slice in a second or two.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from pgolf import artifacts
from pgolf.cli import app

runner = CliRunner()
# The evaluation train_gpt.py runs by default (recorded in model.bin): short windows and chunks.
SMALL_EVAL = ["eval.seq_len=64", "stride=32", "chunk_tokens=1024", "eval.batch_seqs=16", "time_budget_s=0"]
VAL_TOKENS = 3073  # the validation slice the submission tests score (3,072 targets)


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def pack_cli(quant: Path, out: Path, *extra: object):
    return invoke("pack", quant, "--out", out, *[x for kv in SMALL_EVAL for x in ("--set", kv)], *extra)


@pytest.fixture(scope="session")
def quant_dir(tmp_path_factory, tiny_train) -> Path:
    """`pgolf quantize` (int6, round to nearest) of the session's tiny trained model."""
    from pgolf.stages import quantize

    out = tmp_path_factory.mktemp("packq") / "quant"
    quantize.run(quantize.load_config(tiny_train, scheme="int6"), tiny_train, out)
    return out


@pytest.fixture(scope="session")
def pack_dir(quant_dir) -> Path:
    """`pgolf pack` of `quant_dir` with the default codec (rans) and SMALL_EVAL; exits 0."""
    out = quant_dir.parent / "pack"
    result = pack_cli(quant_dir, out, "--json")
    assert result.exit_code == 0, result.output
    return out


def write_val_slice(data: Path, out: Path, num_tokens: int = VAL_TOKENS, sidecar: bool = True) -> Path:
    """A directory of challenge shards holding the first `num_tokens` val tokens of a pgolf data dir
    (and their byte sidecar, or the tokenizer instead): no manifest, like the challenge's own data."""
    from pgolf.artifacts import data as datadir
    from pgolf.data import shards

    out.mkdir(parents=True)
    tokens = datadir.load_val_tokens(data)[:num_tokens]
    (out / "fineweb_val_000000.bin").write_bytes(shards.shard_bytes(tokens))
    if sidecar:
        side = datadir.load_val_bytes(data)[:num_tokens]
        (out / "bytes_val_000000.bin").write_bytes(shards.sidecar_bytes(side))
    shutil.copy(data / "tokenizer.model", out.parent / f"{out.name}.model")
    return out


def val_arrays(directory: Path) -> tuple[np.ndarray, np.ndarray]:
    from pgolf.artifacts import data as datadir

    return datadir.load_val_tokens(directory), datadir.load_val_bytes(directory)


def rehash_file(directory: Path, name: str) -> None:
    """Make the manifest vouch for the file as it is now (as a cheater would): only the damage remains."""
    m = artifacts.read_manifest(directory)
    m.files = [artifacts.file_entry(directory, f["path"], f["format"], f["format_version"]) if f["path"] == name
               else f for f in m.files]
    artifacts.write_manifest(directory, m)


def flip_byte(path: Path, offset: int, mask: int = 0x01) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= mask
    path.write_bytes(bytes(data))


def result_line(stdout: str) -> dict:
    """The `pgolf_result {...}` line of the submission's output."""
    line = next(x for x in stdout.splitlines() if x.startswith("pgolf_result "))
    return json.loads(line.split(" ", 1)[1])


__all__ = ["SMALL_EVAL", "VAL_TOKENS", "flip_byte", "invoke", "pack_cli", "pack_dir", "quant_dir",
           "rehash_file", "result_line", "val_arrays", "write_val_slice"]
