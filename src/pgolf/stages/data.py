"""`pgolf data build` and `pgolf data inspect`: corpus -> challenge shards + byte sidecar + manifest."""

from __future__ import annotations

import hashlib
import itertools
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import sentencepiece

from pgolf import artifacts
from pgolf.artifacts import Manifest
from pgolf.artifacts import corpus as corpus_io
from pgolf.artifacts import data as datadir
from pgolf.artifacts.run_record import cache_dir
from pgolf.config import to_dict
from pgolf.data import bpb, caseops
from pgolf.data.config import DataConfig
from pgolf.data.tokenizer import BOS_ID, load_tokenizer, train_tokenizer
from pgolf.errors import DataError
from pgolf.runtime import console
from pgolf.runtime.env import code_info
from pgolf.stages import runner

ENCODE_BATCH = 256
JSON_KEYS = ("transform", "train_tokens", "val_tokens", "train_docs", "val_docs", "heldout_docs", "heldout_tokens",
             "val_bytes", "val_bytes_lut", "val_bytes_raw", "vocab_size", "files")
FINGERPRINT_HEX = 16  # per-document fingerprints: the first 64 bits of the sha256 of its uint16 token ids


# ----------------------------------------------------------------------------- tokenizer cache


def _training_docs(cfg: DataConfig) -> Iterator[str]:
    # The tokenizer never sees val or the held-out split (which must stay unread by every stage).
    return itertools.islice(_documents(cfg), cfg.val_docs + cfg.heldout_count, None)


def _documents(cfg: DataConfig) -> Iterator[str]:
    if cfg.corpus:
        return corpus_io.iter_documents(list(cfg.corpus))
    return corpus_io.embedded_documents()


def embedded_tokenizer(cfg: DataConfig) -> bytes:
    """The embedded corpus's tokenizer (trained on its training documents), cached by corpus and settings."""

    ident = corpus_io.embedded_identity()
    key = hashlib.sha256(f"{ident['sha256']}|{cfg.vocab_size}|{cfg.val_docs}|{cfg.heldout_count}|"
                         f"{cfg.tokenizer_max_sentences}|{sentencepiece.__version__}".encode()).hexdigest()[:16]
    path = cache_dir() / f"tokenizer-embedded-{cfg.vocab_size}-{key}.model"
    if path.is_file():
        return path.read_bytes()
    console.info(f"training the embedded corpus's tokenizer (vocab {cfg.vocab_size}); cached at {path}")
    model = train_tokenizer(_training_docs(cfg), cfg.vocab_size, cfg.tokenizer_max_sentences)
    path.parent.mkdir(parents=True, exist_ok=True)
    artifacts.atomic_write_bytes(path, model)
    return model


def resolve_tokenizer(cfg: DataConfig) -> tuple[bytes, str]:
    """(model bytes, provenance) for a data build."""
    if cfg.tokenizer:
        path = Path(cfg.tokenizer)
        if not path.is_file():
            raise DataError(f"tokenizer {path} does not exist", "pass --tokenizer PATH.model or --train-tokenizer")
        return path.read_bytes(), f"file:{path}"
    if cfg.train_tokenizer or cfg.corpus:
        if not cfg.train_tokenizer:
            raise DataError("a corpus was given without a tokenizer",
                            "pass --tokenizer PATH.model, or --train-tokenizer --vocab-size N")
        console.info(f"training a SentencePiece BPE tokenizer (vocab {cfg.vocab_size}) on the training documents")
        return train_tokenizer(_training_docs(cfg), cfg.vocab_size, cfg.tokenizer_max_sentences), "trained"
    return embedded_tokenizer(cfg), "trained:embedded"


# ----------------------------------------------------------------------------- build


class _SplitWriter:
    """Buffers a split's tokens (and val byte counts) and flushes full shards, as upstream does."""

    def __init__(self, root: Path, split: str, shard_tokens: int, with_bytes: bool):
        self.root, self.split, self.shard_tokens, self.with_bytes = root, split, shard_tokens, with_bytes
        self.name = datadir.heldout_name if split == "heldout" else lambda i: datadir.shard_name(split, i)
        self.tokens: list[np.ndarray] = []
        self.counts: list[np.ndarray] = []
        self.fill = 0
        self.index = 0
        self.files: list[str] = []

    def add(self, tokens: np.ndarray, counts: np.ndarray | None) -> None:
        start = 0
        while start < tokens.size:  # documents straddle shard boundaries
            take = min(tokens.size - start, self.shard_tokens - self.fill)
            self.tokens.append(tokens[start:start + take])
            if self.with_bytes:
                self.counts.append(counts[start:start + take])
            self.fill += take
            start += take
            if self.fill == self.shard_tokens:
                self.flush()

    def flush(self) -> None:
        if self.fill == 0:
            return
        name = self.name(self.index)
        datadir.write_shard(self.root / name, np.concatenate(self.tokens))
        self.files.append(name)
        if self.with_bytes:
            side = datadir.sidecar_name(self.index)
            datadir.write_sidecar(self.root / side, np.concatenate(self.counts))
            self.files.append(side)
        self.tokens, self.counts, self.fill = [], [], 0
        self.index += 1


def _batches(docs: Iterable[str], size: int) -> Iterator[list[str]]:
    it = iter(docs)
    while batch := list(itertools.islice(it, size)):
        yield batch


def build(cfg: DataConfig, out: str | Path, force: bool = False) -> Manifest:
    """Tokenize the corpus into `out`: val = the first `val_docs` documents, held-out = the next
    `heldout_count` (set aside for `pgolf verify --probe`, read by no stage), train = the rest."""
    for path in cfg.corpus:  # fail before any work on a path that cannot be read
        corpus_io.check_corpus_path(Path(path))
    inputs = [*cfg.corpus, *([cfg.tokenizer] if cfg.tokenizer else [])]
    with runner.claim(out, "data", inputs=inputs, force=force) as output:
        return _build(cfg, output)


def _build(cfg: DataConfig, output: runner.Output) -> Manifest:
    t0 = time.time()
    model_bytes, tok_source = resolve_tokenizer(cfg)
    sp = load_tokenizer(model_bytes, cfg.tokenizer or "the tokenizer")
    vocab_size = sp.vocab_size()
    if vocab_size > 65536:
        raise DataError(f"the tokenizer's vocabulary ({vocab_size}) does not fit uint16 shards")
    transformed = cfg.transform == "caseops"
    if transformed:
        ctl_ids = caseops.control_ids(sp, f"tokenizer {cfg.tokenizer}")  # refuses one not trained for CaseOps
        check: dict[str, Any] = dict(transform=cfg.transform, docs_checked=0, docs_surfaces_vs_raw=0,
                                     docs_decode_vs_normalized=0, control_tokens=0, control_tokens_vs_sidecar=0,
                                     uncovered_edge_bytes=0, unknown_tokens=0)
    else:
        tables = bpb.build_byte_tables(sp)
        pieces = bpb.build_piece_table(sp)
        check = dict(tokens_lut_vs_sidecar=0, docs_sidecar_vs_decode=0, docs_sidecar_vs_normalized=0, unknown_tokens=0)

    stats: dict[str, Any] = dict(train_tokens=0, val_tokens=0, heldout_tokens=0, train_docs=0, val_docs=0,
                                 heldout_docs=0, val_bytes=0, val_bytes_lut=0, val_bytes_raw=0, val_bytes_normalized=0)
    heldout_prints: list[str] = []
    val_hash = hashlib.sha256()
    train_hash = hashlib.sha256()
    heldout_hash = hashlib.sha256()
    corpus_hashes = [{"path": p, "sha256": artifacts.sha256_file(p)} for p in cfg.corpus if Path(p).is_file()]

    with output.publish() as work:
        writers = {"val": _SplitWriter(work, "val", cfg.shard_tokens, True),
                   "heldout": _SplitWriter(work, "heldout", cfg.shard_tokens, False),
                   "train": _SplitWriter(work, "train", cfg.shard_tokens, False)}
        doc_index = 0
        last = "val"
        for texts in _batches(_documents(cfg), ENCODE_BATCH):
            inputs = [caseops.encode(t) for t in texts] if transformed else texts
            encoded = sp.encode(inputs, out_type=int, num_threads=max(1, os.cpu_count() or 1))
            for text, ids in zip(texts, encoded):
                split = ("val" if doc_index < cfg.val_docs else
                         "heldout" if doc_index < cfg.val_docs + cfg.heldout_count else "train")
                if split != last:
                    writers[last].flush()  # no shard mixes splits
                    last = split
                tokens = np.empty(len(ids) + 1, dtype=np.int64)
                tokens[0] = BOS_ID
                tokens[1:] = ids
                if split == "val" and transformed:
                    side = _caseops_val_document(sp, text, tokens, ctl_ids, doc_index, check, stats)
                    writers["val"].add(tokens, side)
                    val_hash.update(text.encode("utf-8") + b"\0")
                elif split == "val":
                    lut = bpb.lut_stream_bytes(tables, tokens)
                    side = bpb.decoded_byte_counts(pieces, tokens)
                    decoded = len(sp.decode(ids).encode("utf-8"))
                    normalized = bpb.normalized_text_bytes(sp, text)
                    check["tokens_lut_vs_sidecar"] += int((lut != side).sum())
                    check["docs_sidecar_vs_decode"] += int(side.sum() != decoded)
                    check["docs_sidecar_vs_normalized"] += int(side.sum() != normalized)
                    check["unknown_tokens"] += int((tokens == sp.unk_id()).sum())
                    stats["val_bytes"] += int(side.sum())
                    stats["val_bytes_lut"] += int(lut.sum())
                    stats["val_bytes_raw"] += len(text.encode("utf-8"))
                    stats["val_bytes_normalized"] += normalized
                    writers["val"].add(tokens, side)
                    val_hash.update(text.encode("utf-8") + b"\0")
                elif split == "heldout":
                    writers["heldout"].add(tokens, None)
                    heldout_hash.update(text.encode("utf-8") + b"\0")
                    heldout_prints.append(document_fingerprint(tokens))
                else:
                    writers["train"].add(tokens, None)
                    train_hash.update(text.encode("utf-8") + b"\0")
                stats[f"{split}_tokens"] += tokens.size
                stats[f"{split}_docs"] += 1
                doc_index += 1
        for w in writers.values():
            w.flush()
        if stats["val_docs"] < cfg.val_docs or stats["train_docs"] == 0:
            held = f" (and --heldout-docs {cfg.heldout_count})" if cfg.heldout_count else ""
            raise DataError(f"the corpus has {doc_index} documents; --val-docs {cfg.val_docs}{held} leaves "
                            f"{stats['train_docs']} for training",
                            "lower --val-docs or --heldout-docs (0: no held-out split), or add documents")
        artifacts.atomic_write_bytes(work / datadir.TOKENIZER_FILE, model_bytes)

        if transformed:  # every document was cross-checked (or the build refused): the lookup tables do not apply
            consistent = True
            stats["val_bytes_lut"] = None
            check.update(consistent=True)
        else:
            consistent = (check["tokens_lut_vs_sidecar"] == 0 and check["docs_sidecar_vs_decode"] == 0
                          and check["docs_sidecar_vs_normalized"] == 0 and bpb.has_standalone_space(sp))
            check.update(standalone_space_piece=bpb.has_standalone_space(sp), consistent=consistent)
        files = writers["val"].files + writers["heldout"].files + writers["train"].files + [datadir.TOKENIZER_FILE]
        entries = [artifacts.file_entry(work, f, _file_format(f)) for f in files]
        tok_sha = artifacts.sha256_bytes(model_bytes)
        stats.update(transform=cfg.transform,
                     transform_version=caseops.TRANSFORM_NAME if transformed else None,
                     vocab_size=vocab_size, files=len(files), bpb_check=check,
                     val_doc_range=[0, stats["val_docs"]],
                     heldout_doc_range=[stats["val_docs"], stats["val_docs"] + stats["heldout_docs"]],
                     train_doc_range=[stats["val_docs"] + stats["heldout_docs"],
                                      stats["val_docs"] + stats["heldout_docs"] + stats["train_docs"]],
                     val_docs_sha256=val_hash.hexdigest(), train_docs_sha256=train_hash.hexdigest(),
                     heldout_docs_sha256=heldout_hash.hexdigest(), heldout_fingerprints=heldout_prints,
                     tokenizer_sha256=tok_sha, tokenizer_source=tok_source, bos_id=BOS_ID)
        inputs = [{"kind": "corpus", "path": c["path"], "sha256": c["sha256"]} for c in corpus_hashes]
        if not cfg.corpus:
            ident = corpus_io.embedded_identity()
            inputs = [{"kind": "corpus", "path": ident["name"], "sha256": ident["sha256"]}]
        if cfg.tokenizer:
            inputs.append({"kind": "tokenizer", "path": cfg.tokenizer, "sha256": tok_sha})
        manifest = Manifest(kind="data", config=to_dict(cfg), inputs=inputs, files=entries, metrics=stats,
                            timing={"build_s": round(time.time() - t0, 3)}, code=code_info(),
                            env={"python": __import__("platform").python_version()})
        artifacts.write_manifest(work, manifest)
    if not consistent:
        console.warn(_inconsistency(check))
    return manifest


def _caseops_val_document(sp, text: str, tokens: np.ndarray, ctl_ids: tuple[int, ...], doc: int,
                          check: dict[str, Any], stats: dict[str, Any]) -> np.ndarray:
    """The byte sidecar of one CaseOps val document, cross-checked three ways before it is written.

    - surfaces: BOS + the tokens' surfaces (spans of the encoded text), inverted, give back the raw document
      exactly, and each token is charged its surface's original bytes (`caseops.check_document`; the record's
      rule, PR #2135 prepare_caseops_data.py); the counts sum to the document's UTF-8 bytes less the edge
      whitespace the normalizer deletes;
    - decoding: sp.decode of the tokens, inverted, is the (inverted) normalized text of the encoded document;
    - control tokens are charged what the transform says (0, or 3 for an escaped literal).
    Any failure refuses the build with one line naming the document and token (nothing is written).
    """
    ids, side = caseops.document_tokens(sp, text)
    if not np.array_equal(ids, tokens):
        raise caseops.CaseOpsError(f"document {doc}: the tokenizer gave different ids for the same text twice",
                                   "report this as a bug")
    try:
        charged = caseops.check_document(sp, text, tokens, side, doc=doc)
    except caseops.CaseOpsError as e:
        raise caseops.CaseOpsError(f"CaseOps byte sidecar check failed: {e.message}", e.hint) from None
    if side.size and int(side.max()) >= 2**16:
        k = int(np.argmax(side))
        raise caseops.CaseOpsError(f"document {doc}, token {k}: charged {int(side[k]):,} bytes, more than a uint16 "
                                   "sidecar entry holds", "split the document (a whitespace run this long is not text)")
    encoded = caseops.encode(text)
    decoded = caseops.decode_lenient(sp.decode(tokens[1:].tolist()))
    normalized = caseops.decode_lenient(bpb.normalized_text(sp, encoded))
    if decoded != normalized:
        at = next((i for i, (a, b) in enumerate(zip(decoded, normalized)) if a != b), min(len(decoded), len(normalized)))
        raise caseops.CaseOpsError(f"CaseOps byte sidecar check failed: document {doc}: its tokens decode to other "
                                   f"text than the normalized document at character {at}: "
                                   f"{decoded[max(0, at - 8):at + 8]!r} vs {normalized[max(0, at - 8):at + 8]!r}",
                                   "the tokenizer loses text (<unk> or invalid byte runs): use a lossless tokenizer")
    charge = caseops.control_charges(tokens, ctl_ids)
    ctl = charge >= 0
    bad = np.flatnonzero(side[ctl] != charge[ctl])
    if bad.size:
        k = int(np.flatnonzero(ctl)[bad[0]])
        raise caseops.CaseOpsError(f"CaseOps byte sidecar check failed: document {doc}, token {k}: a control token "
                                   f"charged {int(side[k])} bytes, the transform says {int(charge[k])}",
                                   "report this as a bug")
    raw = len(text.encode("utf-8"))
    check["docs_checked"] += 1
    check["control_tokens"] += int(ctl.sum())
    check["uncovered_edge_bytes"] += raw - charged
    check["unknown_tokens"] += int((tokens == sp.unk_id()).sum())
    stats["val_bytes"] += charged
    stats["val_bytes_raw"] += raw
    stats["val_bytes_normalized"] += len(normalized.encode("utf-8"))
    return side


def document_fingerprint(tokens: np.ndarray) -> str:
    """A document's fingerprint: the sha256 (first 64 bits, hex) of its token ids as little-endian uint16, BOS
    included, so it can be recomputed from a shard (`pgolf verify` checks the held-out split against it)."""
    return hashlib.sha256(np.asarray(tokens, dtype="<u2").tobytes()).hexdigest()[:FINGERPRINT_HEX]


def _file_format(name: str) -> str:
    if name.startswith(("fineweb_", "heldout_")):
        return "challenge-shard"
    if name.startswith("bytes_val_"):
        return "pgolf-byte-sidecar"
    return "sentencepiece-model"


def _inconsistency(check: dict[str, Any]) -> str:
    parts = []
    if not check["standalone_space_piece"]:
        parts.append("the tokenizer has no standalone '▁' piece (spaces fall back to byte pieces; bpb reads ~20% low)")
    if check["tokens_lut_vs_sidecar"]:
        parts.append(f"{check['tokens_lut_vs_sidecar']} val tokens differ between the lookup-table and decoded byte counts")
    if check["docs_sidecar_vs_decode"]:
        parts.append(f"{check['docs_sidecar_vs_decode']} val documents whose byte sidecar differs from sp.decode")
    if check["docs_sidecar_vs_normalized"]:
        parts.append(f"{check['docs_sidecar_vs_normalized']} val documents whose decoded bytes differ from the "
                     "normalized text (lossy tokenizer: <unk> or invalid byte runs)")
    return ("BPB denominator check failed: " + "; ".join(parts) +
            ". val_bpb on this data is not challenge-comparable; `pgolf verify` will fail MET-2.")


def summary(manifest: Manifest, out: Path) -> dict[str, Any]:
    m = manifest.metrics
    return {"out": str(out), **{k: m.get(k) for k in JSON_KEYS}, "bpb_check": m.get("bpb_check")}


# ----------------------------------------------------------------------------- inspect


def inspect(path: str | Path, tokenizer: str | Path | None = None) -> dict[str, Any]:
    """Counts, byte totals and a hash check of a data directory (pgolf-built or official shards)."""
    data = datadir.resolve_data_dir(path, tokenizer)
    report: dict[str, Any] = {"path": str(data.path), "manifest": data.manifest is not None, "missing": []}
    val_paths = datadir.list_shards(data.path, "val")
    train_paths = datadir.list_shards(data.path, "train")
    vocab = None
    sp = None
    if data.tokenizer_path is not None:
        sp = load_tokenizer(data.tokenizer_path.read_bytes(), str(data.tokenizer_path))
        vocab = sp.vocab_size()
    else:
        report["missing"].append("tokenizer (pass --tokenizer): no vocab check, no lookup-table byte count")

    train_tokens = sum(datadir.read_header(p) for p in train_paths)
    val = datadir.load_val_tokens(data.path, vocab) if val_paths else np.zeros(0, np.uint16)
    for p in train_paths:  # validates headers and, with a tokenizer, every id
        datadir.open_shard(p, vocab)
    files = len(data.manifest.files) if data.manifest is not None else len(val_paths) + len(train_paths)
    report.update(train_tokens=train_tokens, val_tokens=int(val.size), vocab_size=vocab, files=files,
                  shards={"val": len(val_paths), "train": len(train_paths)})
    if not val_paths:
        report["missing"].append("validation shards (fineweb_val_*.bin)")
    # Documents start with BOS, so they can be counted even without a manifest (train: streamed per shard).
    report["val_docs"] = int((val == BOS_ID).sum())
    report["train_docs"] = int(sum(int((np.asarray(datadir.open_shard(p)) == BOS_ID).sum()) for p in train_paths))
    report["val_bytes_lut"] = None
    transform = data.manifest.metrics.get("transform", "none") if data.manifest is not None else "none"
    report["transform"] = transform
    if sp is not None and val.size and transform == "none":  # CaseOps: the tables do not apply
        report["val_bytes_lut"] = int(bpb.lut_stream_bytes(bpb.build_byte_tables(sp), val).sum())
    side = datadir.load_val_bytes(data.path) if val_paths else None
    report["val_bytes"] = int(side[1:].sum()) if side is not None and side.size else None
    if side is None:
        report["missing"].append("byte sidecar (bytes_val_*.bin): val_bytes by the decoded-piece rule unknown")
    report["val_bytes_raw"] = None
    per_token = report["val_bytes_lut"] if transform == "none" else report["val_bytes"]
    report["bytes_per_token"] = round(per_token / max(1, val.size - 1), 4) if per_token else None
    if data.manifest is not None:
        m = data.manifest.metrics
        artifacts.check_files(data.path, data.manifest)
        report["hash_check"] = "ok"
        report["val_bytes_raw"] = m.get("val_bytes_raw")
        report["bpb_check"] = m.get("bpb_check")
        report["heldout_docs"] = m.get("heldout_docs", 0)  # directories built before the split: none
        for key in ("train_tokens", "val_tokens", "train_docs", "val_docs", "val_bytes"):
            if m.get(key) is not None and report.get(key) is not None and m[key] != report[key]:
                raise DataError(f"{data.path}: {key} is {report[key]} on disk but {m[key]} in the manifest",
                                "the shards were modified; rebuild with `pgolf data build`")
    else:
        report["hash_check"] = "no manifest"
        report["missing"].append("manifest.json (not built by pgolf): document ranges, hashes and raw byte total")
    return report
