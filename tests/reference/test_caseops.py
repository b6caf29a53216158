"""pgolf's CaseOps against PR #2135's own code (lossless_caps.py, prepare_caseops_data.py, its SP8192
CaseOps tokenizer), imported at run time; skipped when ../shared/reference is absent."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace

import numpy as np
import pytest

from pgolf.data import caseops

ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = Path(os.environ.get("PGOLF_SHARED_DATA", ROOT.parent / "shared" / "data"))
TOKENIZER = "tokenizers/fineweb_8192_bpe_lossless_caps_caseops_v1_reserved.model"

EDGE_CASES = [
    "",
    "The NASA Launch was OK.",
    "ALL CAPS SHOUTING, AND MORE",
    "iPhone McDonald's eBay ABc aBC A I x",
    "Ünïcödé: Éric ÉCOLE ÉRic 東京 😀 café ½ ﬁne e\u0301",
    "sentinels \ue000\ue001\ue002\ue003\ue004 in \ue004\ue004 TEXT\ue001X",
    "  leading and trailing whitespace  \n\n",
    "\u200bZero width at the start",
    "tabs\tand\nNEW\nLines\r\nCRLF",
    "mIxEd CaSe WoRdS 123ABC abc123DEF",
]


def _load(record: Path, name: str) -> ModuleType:
    path = record / f"{name}.py"
    if not path.is_file():
        pytest.skip(f"record code not found at {path} (set PGOLF_REFERENCE to run these tests)")
    spec = importlib.util.spec_from_file_location(f"_pgolf_record_pr2135_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def record(reference_dir: Path) -> Path:
    """PR #2135's submission folder (the `reference_dir` fixture skips when the records are absent)."""
    return reference_dir / "pr2135"


@pytest.fixture(scope="module")
def lc(record) -> ModuleType:
    return _load(record, "lossless_caps")


@pytest.fixture(scope="module")
def sp(record):
    path = record / TOKENIZER
    if not path.is_file():
        pytest.skip(f"record tokenizer not found at {path}")
    import sentencepiece as spm

    return spm.SentencePieceProcessor(model_file=str(path))


@pytest.fixture(scope="module")
def prep(record, lc) -> ModuleType:
    """prepare_caseops_data.py imports `lossless_caps` by name from its own folder: lend it ours, then
    take it back so no other test sees a module of that name."""
    saved = sys.modules.get("lossless_caps")
    sys.modules["lossless_caps"] = lc
    try:
        return _load(record, "prepare_caseops_data")
    finally:
        if saved is None:
            sys.modules.pop("lossless_caps", None)
        else:
            sys.modules["lossless_caps"] = saved


def _proto_surfaces(sp, text: str) -> list[str]:
    """Piece surfaces from SentencePiece's serialized SentencePieceText (read by hand: no protobuf needed)."""

    def varint(buf: bytes, i: int) -> tuple[int, int]:
        shift = value = 0
        while True:
            b = buf[i]
            value |= (b & 0x7F) << shift
            i += 1
            if b < 0x80:
                return value, i
            shift += 7

    def fields(buf: bytes):
        i = 0
        while i < len(buf):
            key, i = varint(buf, i)
            if key & 7 == 0:
                value, i = varint(buf, i)
                yield key >> 3, value
            elif key & 7 == 2:
                n, i = varint(buf, i)
                yield key >> 3, buf[i : i + n]
                i += n
            else:
                raise AssertionError(f"unexpected wire type {key & 7}")

    out = []
    for num, piece in fields(sp.encode(text, out_type="serialized_proto")):
        if num == 2:  # SentencePieceText.pieces; SentencePiece.surface is field 3
            out.append(next((v.decode("utf-8") for f, v in fields(piece) if f == 3), ""))
    return out


def _record_sidecar(prep, sp, text: str) -> list[int]:
    """The record's exporter (`_token_original_byte_counts`), fed the tokenizer's proto surfaces."""
    encoded = prep.encode_lossless_caps_v2(text)
    shim = SimpleNamespace(encode_as_immutable_proto=lambda t: SimpleNamespace(
        pieces=[SimpleNamespace(surface=s) for s in _proto_surfaces(sp, t)]))
    return [0] + prep._token_original_byte_counts(shim, text, encoded).astype(int).tolist()


def _assert_same(lc, prep, sp, text: str) -> None:
    encoded = caseops.encode(text)
    assert encoded == lc.encode_lossless_caps_v2(text)
    assert caseops.decode(encoded) == text == lc.decode_lossless_caps_v2(encoded)
    ids, counts = caseops.document_tokens(sp, text)
    assert ids.tolist() == [1] + sp.encode(encoded)  # the record: [BOS_ID] + sp.encode(transformed)
    _, spans = caseops.surfaces_of(sp, encoded)
    assert [encoded[a:b] for a, b in spans] == _proto_surfaces(sp, encoded)
    assert counts.tolist() == _record_sidecar(prep, sp, text)
    caseops.check_document(sp, text, ids, counts)


def test_caseops_v1_is_the_v2_rule_set(lc, prep):
    """Which version the record's prep and tokenizer use: caseops_v1 names the v2 transform, and the
    prep script imports encode_lossless_caps_v2 directly."""
    assert lc.get_text_transform(caseops.TRANSFORM_NAME) is lc.encode_lossless_caps_v2
    assert lc.get_text_inverse_transform(caseops.TRANSFORM_NAME) is lc.decode_lossless_caps_v2
    assert list(caseops.CONTROLS) == lc.get_text_transform_control_symbols(caseops.TRANSFORM_NAME)
    assert prep.encode_lossless_caps_v2 is lc.encode_lossless_caps_v2


def test_tokenizer_reserves_the_controls(sp):
    for ch in caseops.CONTROLS:
        assert sp.encode(ch) == [sp.piece_to_id(ch)] and not sp.is_unknown(sp.piece_to_id(ch))


@pytest.mark.parametrize("text", EDGE_CASES)
def test_edge_cases_match_the_record(lc, prep, sp, text):
    _assert_same(lc, prep, sp, text)


def test_surface_counts_match_the_record_on_hand_splits(lc):
    encoded = caseops.encode(EDGE_CASES[5] + " " + EDGE_CASES[3])
    for step in (1, 2, 3, 7):
        surfaces = [encoded[i : i + step] for i in range(0, len(encoded), step)]
        assert caseops.surface_original_bytes(surfaces) == lc.surface_piece_original_byte_counts(
            surfaces, text_transform_name=caseops.TRANSFORM_NAME)


@pytest.mark.shared
def test_real_web_text_matches_the_record(lc, prep, sp):
    corpus = SHARED_DATA / "corpus" / "webtext_sample.jsonl.zst"
    if not corpus.is_file():
        pytest.skip(f"real test data not found at {corpus} (set PGOLF_SHARED_DATA to run this test)")
    from pgolf.artifacts.corpus import iter_file_documents

    texts = [t for i, t in enumerate(iter_file_documents(corpus)) if i % 12 == 0]  # all four sources, ~200 docs
    parts = [caseops.document_tokens(sp, t) for t in texts]
    for text in texts:
        _assert_same(lc, prep, sp, text)
    tokens = np.concatenate([p[0] for p in parts])
    counts = np.concatenate([p[1] for p in parts])
    charged = caseops.check_documents(sp, texts, tokens, counts)
    raw = sum(len(t.encode("utf-8")) for t in texts)
    assert 0 <= raw - charged < 0.001 * raw  # only edge whitespace the normalizer drops goes uncharged
    assert sum(any("A" <= c <= "Z" for c in t) for t in texts) > 0.9 * len(texts)
