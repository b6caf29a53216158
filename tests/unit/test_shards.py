import hashlib
import struct

import numpy as np
import pytest

from pgolf.data import shards
from pgolf.errors import DataError


def test_shard_golden_bytes():
    data = shards.shard_bytes(np.array([1, 896, 587, 1023, 0], dtype=np.int64))
    header = struct.pack("<3i", 20240520, 1, 5) + b"\0" * (1024 - 12)
    body = struct.pack("<5H", 1, 896, 587, 1023, 0)
    assert data == header + body
    assert len(data) == 1024 + 2 * 5
    assert hashlib.sha256(data).hexdigest() == hashlib.sha256(header + body).hexdigest()


def test_header_round_trip():
    data = shards.shard_bytes(np.arange(10))
    assert shards.parse_shard_header(data[:1024], "x.bin", len(data)) == 10


@pytest.mark.parametrize("mutate, message", [
    (lambda b: struct.pack("<i", 1234) + b[4:], "magic 1234"),
    (lambda b: b[:4] + struct.pack("<i", 2) + b[8:], "version 2"),
    (lambda b: b[:-1], "truncated"),
    (lambda b: b + b"\0\0", "trailing bytes"),
    (lambda b: b[:100], "shorter than the 1024-byte"),
    (lambda b: b[:8] + struct.pack("<i", -5) + b[12:], "negative token count"),
])
def test_header_errors_name_the_problem(mutate, message):
    data = mutate(shards.shard_bytes(np.arange(10)))
    with pytest.raises(DataError, match=message) as e:
        shards.parse_shard_header(data[:1024], "bad.bin", len(data))
    assert "bad.bin" in str(e.value)


def test_token_range_check_names_offender():
    with pytest.raises(DataError, match="token id 2000 at position 2 is >= the vocabulary size 1024"):
        shards.check_token_range(np.array([1, 5, 2000, 3]), 1024, "s.bin")
    shards.check_token_range(np.array([1, 1023]), 1024, "s.bin")


def test_ids_beyond_uint16_refused():
    with pytest.raises(ValueError):
        shards.shard_bytes(np.array([70000]))


def test_sidecar_round_trip_and_width():
    small = shards.sidecar_bytes(np.array([0, 3, 255]))
    assert shards.parse_sidecar_header(small[:1024], "b", len(small)) == (3, 1)
    wide = shards.sidecar_bytes(np.array([0, 300]))
    assert shards.parse_sidecar_header(wide[:1024], "b", len(wide)) == (2, 2)
    with pytest.raises(DataError, match="truncated"):
        shards.parse_sidecar_header(small[:1024], "b", len(small) - 1)
    # A token shard is not a sidecar and vice versa.
    tok = shards.shard_bytes(np.arange(3))
    with pytest.raises(DataError, match="byte-sidecar magic"):
        shards.parse_sidecar_header(tok[:1024], "b", len(tok))
    with pytest.raises(DataError, match="challenge shard magic"):
        shards.parse_shard_header(small[:1024], "b", len(small))
