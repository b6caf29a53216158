"""codec "pergroup" (PR #2135's layout, `pgolf.pack.pergroup`): the greedy row order, its exact inverse,
model.bin round trips with grouped and ungrouped int8 tensors, and forged row orders refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pgolf.errors import ArtifactError
from pgolf.pack import codecs as C
from pgolf.pack import decode_model, encode_model, inspect_model, modelbin, pergroup


def brute_order(codes: np.ndarray) -> list[int]:
    """The greedy order written out plainly: from row 0, the nearest unused row (L1), lowest index on ties."""
    n, order = codes.shape[0], [0]
    w = codes.astype(np.int64)
    while len(order) < n:
        last = w[order[-1]]
        order.append(min((int(np.abs(w[j] - last).sum()), j) for j in range(n) if j not in order)[1])
    return order


def test_the_order_is_the_greedy_nearest_neighbour_one_with_ties_to_the_lowest_index():
    rng = np.random.default_rng(0)
    codes = rng.integers(-3, 4, size=(40, 6)).astype(np.int8)
    codes[7] = codes[3]  # exact ties
    codes[21] = codes[3]
    assert pergroup.similarity_order(codes).tolist() == brute_order(codes)
    assert pergroup.similarity_order(np.zeros((1, 4), np.int8)).tolist() == [0]


def test_encode_reorders_rows_then_transposes_and_decode_inverts_it():
    codes = np.array([[5, 5], [0, 1], [5, 4], [0, 0]], dtype=np.int8)
    order, data = pergroup.reorder(codes)
    assert np.frombuffer(order, "<u2").tolist() == [0, 2, 1, 3]
    assert data == bytes(np.array([[5, 5, 0, 0], [5, 4, 1, 0]], dtype=np.int8))
    assert np.array_equal(pergroup.restore(order, data, 4, 2), codes)
    with pytest.raises(ValueError, match="not a permutation"):
        pergroup.restore(np.array([0, 0, 1, 3], "<u2").tobytes(), data, 4, 2)


def test_model_bin_round_trip_with_grouped_and_other_int8_tensors():
    rng = np.random.default_rng(1)
    t = {"a.weight.q": torch.from_numpy(rng.integers(-31, 32, (50, 24)).astype(np.int8)),
         "a.weight.scale": torch.rand(50).half(),
         "a.weight.lqer_a": torch.from_numpy(rng.integers(-2, 2, (50, 4)).astype(np.int8)),
         "b.q": torch.from_numpy(rng.integers(-7, 8, (9,)).astype(np.int8)),  # 1-D: stored as is
         "c.weight.q": torch.from_numpy(rng.integers(-63, 64, (3, 70)).astype(np.int8)),
         "empty.q": torch.zeros((0, 5), dtype=torch.int8), "f": torch.randn(4, 4)}
    blob = encode_model(t, {"format": "x"}, codec="pergroup")
    kinds = {s["kind"]: s for s in inspect_model(blob)["sections"]}
    assert set(kinds) == {"index", "data_shuffled", "row_order", "codes_grouped"} or set(kinds) == {
        "index", "data", "row_order", "codes_grouped"}
    assert kinds["codes_grouped"]["codec"] == "brotli" and kinds["codes_grouped"]["params"] == [11, 22]
    assert kinds["row_order"]["raw_bytes"] == 2 * (50 + 3)
    out, meta = decode_model(blob)
    assert meta == {"format": "x"} and set(out) == set(t)
    for name, v in t.items():
        assert out[name].dtype == v.dtype and torch.equal(out[name], v), name


def test_a_forged_row_order_is_refused():
    codes = torch.from_numpy(np.arange(12, dtype=np.int8).reshape(4, 3))
    t = {"w.q": codes}
    blob = encode_model(t, {}, codec="pergroup")
    sections = [(k, *p) for k, *p in _rebuilt_sections(blob)]
    # a row order that repeats a row, with a correct checksum: the permutation check refuses it
    forged = [(k, p, (b"\0\0" * 4 if k == modelbin.ROW_ORDER else raw), None) for k, p, raw, _ in sections]
    forged = [(k, p, raw, C.compress(raw, p)) for k, p, raw, _ in forged]
    with pytest.raises(ArtifactError, match="row_order.*not a permutation"):
        decode_model(modelbin._assemble(forged))


def _rebuilt_sections(blob: bytes):
    s = modelbin._Sections(blob)
    for kind, e in s.entries.items():
        yield kind, C.CodecParams(e["codec"], e["a"], e["b"]), s.raw(kind), s.stored[kind]
