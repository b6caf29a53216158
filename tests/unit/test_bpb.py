"""Byte accounting on hand-computed cases (a fake tokenizer with known pieces) and on real text."""

import math

import numpy as np
import pytest

from pgolf.data import bpb


class FakeSP:
    """The piece API of a SentencePieceProcessor, over a fixed piece list."""

    PIECES = ["<pad>", "<s>", "</s>", "<unk>", "<0xC3>", "<0xA9>", "<0xFF>", "▁", "▁the", "cat", "é", "▁ça",
              "<0xE2>", "<0x96>", "<0x81>"]
    CONTROL = {0, 1, 2}

    def vocab_size(self):
        return len(self.PIECES)

    def is_control(self, i):
        return i in self.CONTROL

    def is_unknown(self, i):
        return i == 3

    def is_unused(self, i):
        return False

    def is_byte(self, i):
        return self.PIECES[i].startswith("<0x")

    def id_to_piece(self, i):
        return self.PIECES[i]

    def piece_to_id(self, piece):
        return self.PIECES.index(piece) if piece in self.PIECES else 3

    def unk_id(self):
        return 3

    def decode(self, ids):
        return " \u2047 " if list(ids) == [3] else ""


SP = FakeSP()
BOS, UNK, C3, A9, FF, SPACE, THE, CAT, E_ACUTE, CA = 1, 3, 4, 5, 6, 7, 8, 9, 10, 11


def test_tables_by_hand():
    t = bpb.build_byte_tables(SP, size=20)
    assert t.size == 20
    assert t.base_bytes[THE] == 3 and t.leading_space[THE]  # '▁the' -> 'the' + a space flag
    assert t.base_bytes[SPACE] == 0 and t.leading_space[SPACE]
    assert t.base_bytes[E_ACUTE] == 2 and not t.leading_space[E_ACUTE]  # é is 2 UTF-8 bytes
    assert t.base_bytes[CA] == 3  # 'ça' = 2 + 1
    assert t.base_bytes[C3] == 1 and t.base_bytes[FF] == 1  # byte pieces: one byte each
    for special in (0, BOS, 2, UNK):
        assert t.base_bytes[special] == 0 and t.is_boundary[special]
    assert t.is_boundary[15:].all() and (t.base_bytes[15:] == 0).all()  # padding ids


def test_target_bytes_by_hand():
    t = bpb.build_byte_tables(SP)
    # BOS ▁the cat ▁the BOS ▁ça é
    stream = np.array([BOS, THE, CAT, THE, BOS, CA, E_ACUTE])
    got = bpb.lut_stream_bytes(t, stream)
    # first entry never a target; '▁the' after BOS: no space; after 'cat': 3 + 1; BOS target: 0
    assert got.tolist() == [0, 3, 3, 4, 0, 3, 2]


def test_decoded_counts_agree_on_clean_text():
    table = bpb.build_piece_table(SP)
    doc = np.array([BOS, THE, CAT, C3, A9, THE])  # "the catésé the"-like
    lut = bpb.lut_stream_bytes(bpb.build_byte_tables(SP), doc)
    dec = bpb.decoded_byte_counts(table, doc)
    assert dec.tolist() == lut.tolist() == [0, 3, 3, 1, 1, 4]


def test_decoded_counts_expose_disagreements():
    table = bpb.build_piece_table(SP)
    tables = bpb.build_byte_tables(SP)
    # A lone invalid byte decodes to U+FFFD (3 bytes); the table counts 1.
    doc = np.array([BOS, CAT, FF])
    assert bpb.decoded_byte_counts(table, doc).tolist() == [0, 3, 3]
    assert bpb.lut_stream_bytes(tables, doc).tolist() == [0, 3, 1]
    # <unk> decodes to ' ⁇ ' (5 bytes); the table counts 0.
    doc = np.array([BOS, CAT, UNK])
    assert bpb.decoded_byte_counts(table, doc).tolist() == [0, 3, 5]
    assert bpb.lut_stream_bytes(tables, doc).tolist() == [0, 3, 0]


def test_leading_spaces_dropped_at_document_start():
    table = bpb.build_piece_table(SP)
    assert bpb.decoded_byte_counts(table, np.array([BOS, SPACE, THE, CAT])).tolist() == [0, 0, 3, 3]


def test_standalone_space_detection():
    assert bpb.has_standalone_space(SP)

    class NoSpace(FakeSP):
        PIECES = [p for p in FakeSP.PIECES if p != "▁"]

    assert not bpb.has_standalone_space(NoSpace())


def test_bits_per_byte():
    assert bpb.bits_per_byte(math.log(2) * 10, 10) == pytest.approx(1.0)
    assert bpb.nats_to_bpb(2.0, 100, 250) == pytest.approx(2.0 * 100 / (math.log(2) * 250))
    with pytest.raises(ValueError):
        bpb.bits_per_byte(1.0, 0)


@pytest.mark.slow
@pytest.mark.parametrize("corpus", ["webtext_sample", "wikitext2_raw_test", "tinyshakespeare"])
def test_sidecar_equals_tables_for_sp1024_on_real_text(shared_dir, sp1024_path, corpus):
    """MET-1/MET-2: for the official tokenizer the two byte counts agree exactly, per token."""
    import sentencepiece as spm

    from pgolf.artifacts.corpus import iter_file_documents

    sp = spm.SentencePieceProcessor(model_file=str(sp1024_path))
    tables, pieces = bpb.build_byte_tables(sp), bpb.build_piece_table(sp)
    total = 0
    for text in iter_file_documents(shared_dir / "corpus" / f"{corpus}.jsonl.zst"):
        ids = np.array([1] + sp.encode(text))
        lut = bpb.lut_stream_bytes(tables, ids)
        dec = bpb.decoded_byte_counts(pieces, ids)
        np.testing.assert_array_equal(lut, dec)
        assert int(dec.sum()) == len(sp.decode(ids[1:].tolist()).encode()) == bpb.normalized_text_bytes(sp, text)
        total += int(dec.sum())
    assert total > 1_000_000


def test_community_tokenizer_disagreement_is_detected(shared_dir):
    """byte_fallback=False tokenizers emit <unk>: the decoded count and the tables disagree."""
    import sentencepiece as spm

    from pgolf.artifacts.corpus import iter_file_documents

    sp = spm.SentencePieceProcessor(model_file=str(shared_dir / "tokenizers/ciprianflorin_lab/fineweb_1024_bpe.model"))
    tables, pieces = bpb.build_byte_tables(sp), bpb.build_piece_table(sp)
    mismatched = 0
    for i, text in enumerate(iter_file_documents(shared_dir / "corpus" / "webtext_sample.jsonl.zst")):
        ids = np.array([1] + sp.encode(text))
        mismatched += int((bpb.lut_stream_bytes(tables, ids) != bpb.decoded_byte_counts(pieces, ids)).sum())
        if i == 300:
            break
    assert mismatched > 0
