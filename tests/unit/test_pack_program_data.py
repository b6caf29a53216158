"""The packed program's data reading: the CaseOps export's `fineweb_val_bytes_*.bin` (PR #2135's
per-token original bytes, in token-shard format) is the byte sidecar, never val tokens."""
import glob
import os

import numpy as np
import pytest

from pgolf.data import shards
from pgolf.errors import DataError
from pgolf.pack import program


def _io(tmp_path):
    return program.Io(os.environ, lambda p: open(p, "rb").read(), lambda p: np.memmap(p, mode="r"),
                      lambda p, d: open(p, "wb").write(d), os.path.exists, glob.glob, print)


def _export(tmp_path, tokens, byte_counts):
    (tmp_path / "fineweb_val_000000.bin").write_bytes(shards.shard_bytes(np.asarray(tokens, dtype=np.uint16)))
    (tmp_path / "fineweb_val_bytes_000000.bin").write_bytes(
        shards.shard_bytes(np.asarray(byte_counts, dtype=np.uint16)))


def test_the_caseops_exports_byte_arrays_are_the_sidecar_not_tokens(tmp_path):
    tokens, counts = [1, 40, 41, 1, 42], [0, 3, 0, 0, 5]  # BOS and a case-op token charge 0 bytes
    _export(tmp_path, tokens, counts)
    io = _io(tmp_path)
    val = program.load_val_tokens(io, str(tmp_path))
    assert val.tolist() == tokens
    side, source = program.load_token_bytes(io, str(tmp_path), str(tmp_path / "none.model"), val)
    assert source == "sidecar" and side.tolist() == counts


def test_a_byte_array_of_another_length_is_refused(tmp_path):
    _export(tmp_path, [1, 40, 41], [0, 3])
    io = _io(tmp_path)
    val = program.load_val_tokens(io, str(tmp_path))
    with pytest.raises(DataError, match="2 entries for 3 val tokens"):
        program.load_token_bytes(io, str(tmp_path), str(tmp_path / "none.model"), val)
