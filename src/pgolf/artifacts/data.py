"""Shard files on disk: find, validate, memory-map and write challenge shards and byte sidecars.

Shards are memory-mapped, never read whole: a data directory of many GB costs page cache, not RAM.
Every problem is a `DataError` naming the file and the fix.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import numpy as np

from pgolf.artifacts import MANIFEST, atomic_write_bytes, read_manifest, sha256_file
from pgolf.data import shards
from pgolf.errors import DataError

SPLITS = ("train", "val")
SHARD_RE = re.compile(r"^fineweb_(train|val)_(\d{6})\.bin$")
TOKENIZER_FILE = "tokenizer.model"
# The held-out split (`pgolf data build` sets it aside for `verify --probe`): challenge-format shards whose
# names match neither the challenge loader's `fineweb_*` globs nor evaluation's files, so no stage reads them.
HELDOUT_RE = re.compile(r"^heldout_(\d{6})\.bin$")
# The files of a data directory that evaluation may read (rules DATA-5): val shards, sidecars, tokenizer.
VAL_FILE_RE = re.compile(r"^(fineweb_val_\d{6}\.bin|bytes_val_\d{6}\.bin|tokenizer\.model)$")

# The challenge's own layout; commands default to it when it exists in the working directory.
CHALLENGE_DATA_DIR = Path("data/datasets/fineweb10B_sp1024")
CHALLENGE_TOKENIZER = Path("data/tokenizers/fineweb_1024_bpe.model")


def shard_name(split: str, index: int) -> str:
    return f"fineweb_{split}_{index:06d}.bin"


def sidecar_name(index: int) -> str:
    return f"bytes_val_{index:06d}.bin"


def heldout_name(index: int) -> str:
    return f"heldout_{index:06d}.bin"


def _check_is_dir(path: Path) -> None:
    if path.is_dir():
        return
    if path.exists():
        raise DataError(f"--data {path} is a file, not a data directory",
                        "pass the directory that holds the fineweb_*.bin shards (e.g. its parent)")
    raise DataError(f"data directory {path} does not exist", "build one with `pgolf data build` or fix --data")


def list_shards(directory: str | Path, split: str) -> list[Path]:
    """Sorted `fineweb_{split}_*.bin` files in `directory` (the challenge loader's glob, sorted by name)."""
    directory = Path(directory)
    _check_is_dir(directory)
    paths = sorted(directory.glob(f"fineweb_{split}_*.bin"))
    sidecars = [p.name for p in paths if p.name.startswith(f"fineweb_{split}_bytes_")]
    if sidecars:  # the CaseOps exports' sidecar (PR #1855 / #2135 layout) has a token shard's header: never tokens
        raise DataError(f"{directory / sidecars[0]} is a CaseOps export's byte sidecar, which the challenge's "
                        f"fineweb_{split}_*.bin glob would read as tokens",
                        "build CaseOps data with `pgolf data build --transform caseops` (its sidecar is "
                        "bytes_val_*.bin), or move the fineweb_*_bytes_*.bin files out")
    return paths


def read_header(path: Path) -> int:
    """Validate a token shard's header and size; returns its token count."""
    try:
        with open(path, "rb") as f:
            head = f.read(shards.HEADER_BYTES)
        size = path.stat().st_size
    except OSError as e:
        raise DataError(f"cannot read shard {path}: {e.strerror}") from None
    return shards.parse_shard_header(head, str(path), size)


def open_shard(path: str | Path, vocab_size: int | None = None) -> np.ndarray:
    """Memory-map a validated token shard as uint16; with `vocab_size`, ids are range-checked too."""
    path = Path(path)
    num_tokens = read_header(path)
    tokens = np.memmap(path, dtype=shards.TOKEN_DTYPE, mode="r", offset=shards.HEADER_BYTES, shape=(num_tokens,)) \
        if num_tokens else np.zeros(0, dtype=shards.TOKEN_DTYPE)
    if vocab_size is not None:
        shards.check_token_range(tokens, vocab_size, str(path))
    return tokens


def open_split(directory: str | Path, split: str, vocab_size: int | None = None) -> list[np.ndarray]:
    """Memory-map every shard of a split, in the challenge's order; an empty split is an error."""
    paths = list_shards(directory, split)
    if not paths:
        raise DataError(f"no fineweb_{split}_*.bin shards in {directory}",
                        "build them with `pgolf data build` or pass the right --data directory")
    return [open_shard(p, vocab_size) for p in paths]


def load_val_tokens(directory: str | Path, vocab_size: int | None = None) -> np.ndarray:
    """All validation tokens, concatenated in sorted shard order (int64 would double memory: kept uint16)."""
    parts = open_split(directory, "val", vocab_size)
    return np.concatenate([np.asarray(p) for p in parts]) if len(parts) > 1 else np.array(parts[0])


def open_sidecar(path: str | Path) -> np.ndarray:
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(shards.HEADER_BYTES)
        size = path.stat().st_size
    except OSError as e:
        raise DataError(f"cannot read byte sidecar {path}: {e.strerror}",
                        "rebuild the data directory with `pgolf data build`") from None
    num_tokens, itemsize = shards.parse_sidecar_header(head, str(path), size)
    dtype = "<u1" if itemsize == 1 else "<u2"
    if num_tokens == 0:
        return np.zeros(0, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r", offset=shards.HEADER_BYTES, shape=(num_tokens,))


def load_val_bytes(directory: str | Path) -> np.ndarray | None:
    """The per-token byte sidecar of the val split, concatenated; None when the directory has none.

    Each sidecar must have exactly as many entries as its val shard.
    """
    directory = Path(directory)
    val = list_shards(directory, "val")
    sidecars = sorted(directory.glob("bytes_val_*.bin"))
    if not sidecars:
        return None
    if len(sidecars) != len(val):
        raise DataError(f"{directory} has {len(val)} val shards but {len(sidecars)} byte sidecars",
                        "rebuild the data directory with `pgolf data build`")
    parts = []
    for shard_path, side_path in zip(val, sidecars):
        n = read_header(shard_path)
        side = open_sidecar(side_path)
        if side.shape[0] != n:
            raise DataError(f"{side_path} has {side.shape[0]} entries but {shard_path.name} has {n} tokens",
                            "rebuild the data directory with `pgolf data build`")
        parts.append(np.asarray(side))
    return np.concatenate(parts).astype(np.int32)


def write_shard(path: str | Path, tokens: np.ndarray) -> None:
    atomic_write_bytes(path, shards.shard_bytes(tokens))


def write_sidecar(path: str | Path, byte_counts: np.ndarray) -> None:
    atomic_write_bytes(path, shards.sidecar_bytes(byte_counts))


# ----------------------------------------------------------------------------- data directories


@dataclasses.dataclass
class DataDir:
    """A directory of shards: a pgolf data artifact (with manifest) or official challenge shards."""

    path: Path
    tokenizer_path: Path | None
    manifest: object | None  # artifacts.Manifest when pgolf built it

    @property
    def manifest_path(self) -> Path | None:
        return self.path / MANIFEST if self.manifest is not None else None


def resolve_data_dir(data: str | Path | None, tokenizer: str | Path | None = None) -> DataDir:
    """Find the shards and tokenizer a command should use.

    `data` may be a pgolf data dir (its manifest and `tokenizer.model` are used) or any directory of
    challenge shards (then `tokenizer` names the SentencePiece model, defaulting to the challenge's
    `data/tokenizers/fineweb_1024_bpe.model` when it exists). With no `data`, the challenge's
    `data/datasets/fineweb10B_sp1024/` is used when it exists.
    """
    if data is None:
        if CHALLENGE_DATA_DIR.is_dir():
            data = CHALLENGE_DATA_DIR
        else:
            raise DataError("no data directory given and ./data/datasets/fineweb10B_sp1024 does not exist",
                            "pass --data DIR (build one with `pgolf data build`)")
    path = Path(data)
    _check_is_dir(path)
    manifest = read_manifest(path, "data") if (path / MANIFEST).is_file() else None
    tok: Path | None = Path(tokenizer) if tokenizer is not None else None
    if tok is None and (path / TOKENIZER_FILE).is_file():
        tok = path / TOKENIZER_FILE
    if tok is None and CHALLENGE_TOKENIZER.is_file():
        tok = CHALLENGE_TOKENIZER
    if tok is not None and not tok.is_file():
        raise DataError(f"tokenizer {tok} does not exist", "pass --tokenizer PATH.model")
    if not list_shards(path, "val") and not list_shards(path, "train"):
        raise DataError(f"{path} holds no fineweb_train_*.bin or fineweb_val_*.bin shards",
                        "build them with `pgolf data build`")
    return DataDir(path=path, tokenizer_path=tok, manifest=manifest)


def check_val_files(directory: Path, manifest: Any) -> None:
    """Rules DATA-1: the val shards, sidecars and tokenizer on disk are exactly those the data manifest
    records (same names, sizes and sha256). Training shards are neither opened nor hashed (DATA-5)."""
    listed = {e["path"]: e for e in manifest.files if VAL_FILE_RE.match(str(e.get("path", "")))}
    fix = "rebuild the data directory with `pgolf data build` (or pass the directory the manifest describes)"
    on_disk = {p.name for p in [*list_shards(directory, "val"), *directory.glob("bytes_val_*.bin")]}
    extra = sorted(on_disk - set(listed))
    if extra:
        raise DataError(f"{directory} holds val files its manifest does not list ({', '.join(extra)}): the "
                        "validation set is not the one the manifest describes (rules DATA-1)", fix)
    if not any(name.startswith("fineweb_val_") for name in listed):
        raise DataError(f"the data manifest in {directory} lists no val shard", fix)
    for name, entry in sorted(listed.items()):
        path = directory / name
        if not path.is_file():
            raise DataError(f"{path} is missing (listed in {directory / MANIFEST})", fix)
        if path.stat().st_size != entry["bytes"] or sha256_file(path) != entry["sha256"]:
            raise DataError(f"{path} does not match the data manifest's sha256: modified or stale validation data "
                            "(rules DATA-1)", fix)


def load_heldout_tokens(directory: Path, manifest: Any) -> np.ndarray | None:
    """The held-out split the data manifest lists, each shard re-hashed against it (uint16, concatenated in
    name order); None when the manifest lists none (a data directory built before the split existed)."""
    listed = sorted((e for e in manifest.files if HELDOUT_RE.match(str(e.get("path", "")))), key=lambda e: e["path"])
    if not listed:
        return None
    fix = "rebuild the data directory with `pgolf data build`"
    parts = []
    for entry in listed:
        path = directory / entry["path"]
        if not path.is_file():
            raise DataError(f"{path} is missing (listed in {directory / MANIFEST})", fix)
        if path.stat().st_size != entry["bytes"] or sha256_file(path) != entry["sha256"]:
            raise DataError(f"{path} does not match the data manifest's sha256: the held-out split was modified", fix)
        parts.append(np.asarray(open_shard(path)))
    return np.concatenate(parts)
