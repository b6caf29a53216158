"""CaseOps transform and byte sidecar: hand-written cases, round trips, and the cross-check's errors."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pgolf.data import caseops
from pgolf.data.caseops import ALLCAPS, CAPNEXT, ESC, TITLE, CaseOpsError
from pgolf.errors import DataError


@pytest.mark.parametrize("text, encoded", [
    ("", ""),
    ("plain words", "plain words"),
    ("The NASA Launch", f"{TITLE}the {ALLCAPS}nasa {TITLE}launch"),
    ("A b I", f"{TITLE}a b {TITLE}i"),
    ("iPhone", f"i{CAPNEXT}phone"),
    ("McDonald", f"{TITLE}mc{CAPNEXT}donald"),
    ("ABc", f"{TITLE}a{CAPNEXT}bc"),
    ("OK2GO", f"{ALLCAPS}ok2{ALLCAPS}go"),  # digits end a word
    ("Éric ÉCOLE ÉRic", f"Éric É{ALLCAPS}cole É{TITLE}ric"),  # non-ASCII letters keep case, split words
    (f"a{TITLE}b{ESC}", f"a{ESC}{TITLE}b{ESC}{ESC}"),  # literal control characters are escaped
])
def test_encode_hand_cases(text, encoded):
    assert caseops.encode(text) == encoded
    assert caseops.decode(encoded) == text


@pytest.mark.parametrize("bad", [
    ESC,  # dangling escape
    f"{ESC}x",  # escape of a non-control
    f"{TITLE} x",  # marker not followed by a letter
    f"{TITLE}",
    "Upper",  # encoded text never holds ASCII capitals
    f"{ALLCAPS}a",  # a one-letter word is TITLE, never ALLCAPS
    f"{TITLE}{ALLCAPS}ab",
    f"{ALLCAPS}a{CAPNEXT}b",
    f"{CAPNEXT}ab",  # the first letter is TITLE, never CAPNEXT
])
def test_decode_rejects_what_encode_cannot_produce(bad):
    with pytest.raises(CaseOpsError, match="not a valid CaseOps encoding"):
        caseops.decode(bad)
    assert issubclass(CaseOpsError, DataError)


TEXT = st.text(alphabet=st.sampled_from(list("aZbYzA \n.-1é\u00c9\u4e2d\U0001f600\u200b") + list(caseops.CONTROLS)),
               max_size=40) | st.text(max_size=40)


@settings(max_examples=150, deadline=None)
@given(TEXT)
def test_round_trip_and_byte_weights(text):
    encoded = caseops.encode(text)
    assert caseops.decode(encoded) == text
    assert not any("A" <= c <= "Z" for c in encoded)
    weights = caseops.char_original_bytes(encoded)
    assert weights.shape == (len(encoded),)
    assert int(weights.sum()) == len(text.encode("utf-8"))


@settings(max_examples=100, deadline=None)
@given(TEXT, st.lists(st.integers(0, 60), max_size=8))
def test_sidecar_of_any_split_sums_to_the_original(text, cuts):
    """However the encoded text is cut into surfaces (a cut may fall between ESC and its literal), the
    per-surface bytes sum to the original and agree between the span and the string forms."""
    encoded = caseops.encode(text)
    bounds = sorted({0, len(encoded), *(min(c, len(encoded)) for c in cuts)})
    spans = list(zip(bounds[:-1], bounds[1:]))
    by_span = caseops.sidecar_from_spans(encoded, spans)
    by_surface = caseops.surface_original_bytes([encoded[a:b] for a, b in spans])
    assert by_span.tolist() == by_surface
    assert int(by_span.sum()) == len(text.encode("utf-8"))


class CharSP:
    """A one-token-per-character tokenizer with SentencePiece's surface API; its normalizer drops
    whitespace at the ends, as nmt_nfkc does."""

    def encode(self, text, out_type=int):
        lo = len(text) - len(text.lstrip())
        hi = len(text.rstrip())
        ids = [4 + ord(c) % 100 for c in text[lo:hi]]
        if out_type == "offset_mapping":
            return {"ids": ids, "offsets": [(i, i + 1) for i in range(lo, max(lo, hi))]}
        return ids

    def normalize(self, text):
        return text.strip()


def test_document_tokens_and_check():
    sp = CharSP()
    text = "  Hi NASA\u00e9\n"
    ids, counts = caseops.document_tokens(sp, text)
    encoded = caseops.encode(text)
    assert ids[0] == caseops.BOS_ID and counts[0] == 0
    assert len(ids) == 1 + len(encoded.strip())
    # TITLE 0, 'h' 1, 'i' 1, ' ' 1, ALLCAPS 0, 'nasa' 1 each, 'é' 2; the edge whitespace is charged to no token
    assert counts[1:].tolist() == [0, 1, 1, 1, 0, 1, 1, 1, 1, 2]
    assert caseops.check_document(sp, text, ids, counts) == len(text.encode()) - 3
    assert caseops.check_document(sp, "", *caseops.document_tokens(sp, "")) == 0


def test_check_names_the_first_mismatch():
    sp = CharSP()
    texts = ["One doc", "Two DOCS"]
    parts = [caseops.document_tokens(sp, t) for t in texts]
    tokens = np.concatenate([p[0] for p in parts])
    counts = np.concatenate([p[1] for p in parts])
    assert caseops.check_documents(sp, texts, tokens, counts) == sum(len(t) for t in texts)

    bad = counts.copy()
    bad[len(parts[0][0]) + 3] += 1  # document 1, token 3
    with pytest.raises(CaseOpsError, match="document 1, token 3: sidecar says"):
        caseops.check_documents(sp, texts, tokens, bad)
    wrong = tokens.copy()
    wrong[2] = 99 if wrong[2] != 99 else 98
    with pytest.raises(CaseOpsError, match="document 0, token 2: ids differ"):
        caseops.check_documents(sp, texts, wrong, counts)
    with pytest.raises(CaseOpsError, match="2 documents"):
        caseops.check_documents(sp, texts[:1], tokens, counts)
    with pytest.raises(CaseOpsError, match="sidecar entries"):
        caseops.check_documents(sp, texts, tokens, counts[:-1])
    with pytest.raises(CaseOpsError, match="does not start with BOS"):
        caseops.check_document(sp, texts[0], parts[0][0][1:], parts[0][1][1:])


def test_check_rejects_dropped_text():
    class Dropper(CharSP):
        def encode(self, text, out_type=int):  # loses the last character
            enc = super().encode(text, out_type)
            if out_type == "offset_mapping":
                return {"ids": enc["ids"][:-1], "offsets": enc["offsets"][:-1]}
            return enc[:-1]

    sp = Dropper()
    ids, counts = caseops.document_tokens(sp, "abc")
    with pytest.raises(CaseOpsError, match="uncovered"):
        caseops.check_document(sp, "abc", ids, counts)


def test_control_charges_of_a_token_stream():
    """Controls cost 0; the one right after an active ESC is an escaped literal (3 bytes); an ESC that is itself
    escaped does not escape what follows."""
    t, a, c, e = 4, 5, 6, 7  # TITLE, ALLCAPS, CAPNEXT, ESC ids as in PR #2135's tokenizer
    tokens = np.array([1, t, 50, e, t, e, e, a, 60, e, e, e, c])
    want = [-1, 0, -1, 0, 3, 0, 3, 0, -1, 0, 3, 0, 3]
    assert caseops.control_charges(tokens, (t, a, c, e)).tolist() == want
    assert caseops.control_charges(np.zeros(0, np.int64), (t, a, c, e)).tolist() == []


def test_decode_lenient_accepts_normalized_text():
    assert caseops.decode_lenient(f"{TITLE}the {ALLCAPS}tm TM") == "The TM TM"  # NFKC made "TM" of "™"
    with pytest.raises(CaseOpsError):
        caseops.decode("TM")
