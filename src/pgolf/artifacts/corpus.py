"""Document sources: corpus files (.jsonl, .jsonl.zst, .jsonl.gz, .txt) and the embedded default corpus.

Files are streamed one document at a time, so a corpus of several GB needs little memory.

The embedded default corpus is real text that every Python installation carries: the language
reference topics of `pydoc_data` (one document per topic) and the docstrings of the standard library
(one document per module). It is technical English, not web text: good for demos and tests, not for
challenge-comparable numbers. Its documents are ordered by a hash of their name, a fixed shuffle, so
the validation prefix mixes both kinds.
"""

from __future__ import annotations

import ast
import functools
import gzip
import hashlib
import json
import sys
import sysconfig
import tokenize
from collections.abc import Iterator
from pathlib import Path

import zstandard

from pgolf.errors import DataError

SUFFIXES = (".jsonl", ".jsonl.zst", ".jsonl.gz", ".txt")
EMBEDDED = "embedded"  # the name of the default corpus in configs and manifests

# Standard-library folders that are tests, demos or tool internals rather than library docs.
_SKIP_DIRS = {"site-packages", "dist-packages", "test", "tests", "idlelib", "lib2to3", "turtledemo",
              "ensurepip", "pydoc_data", "__pycache__", "venv", "tkinter", "__phello__"}
_MIN_MODULE_CHARS = 400


def corpus_kind(path: Path) -> str:
    name = path.name
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return suffix
    raise DataError(f"corpus {path} has an unknown type", f"use one of {', '.join(SUFFIXES)}")


def check_corpus_path(path: Path) -> str:
    """An existing file of a known type; returns its type."""
    if path.is_dir():
        raise DataError(f"corpus {path} is a directory", "pass its files with one --corpus each")
    if not path.is_file():
        raise DataError(f"corpus {path} does not exist", "check the --corpus path")
    return corpus_kind(path)


# One document (a JSON line, or a .txt file) larger than this is not text a tokenizer should see; it
# also bounds what a small, highly compressed corpus file can make pgolf allocate.
MAX_DOCUMENT_BYTES = 64 << 20
# zstd input is fed in small pieces: one call's output is then bounded (at most 128 KiB per 3-byte
# block), so a compression bomb is stopped by the document bound, not by running out of memory.
_ZSTD_FEED = 4096


def _zstd_chunks(path: Path) -> Iterator[bytes]:
    """Decompressed pieces of a (multi-frame) zstd file; a truncated last frame is an error, not a silent EOF."""

    dctx = zstandard.ZstdDecompressor()
    obj, fed = dctx.decompressobj(), False
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            for i in range(0, len(block), _ZSTD_FEED):
                chunk = block[i:i + _ZSTD_FEED]
                while chunk:
                    out = obj.decompress(chunk)
                    fed = True
                    chunk = b""
                    if obj.eof:  # a frame ended; later bytes start the next frame
                        chunk, obj, fed = obj.unused_data, dctx.decompressobj(), False
                    if out:
                        yield out
    if fed and not obj.eof:
        raise DataError(f"{path}: the zstd stream ends mid-frame (truncated file)", "re-download or re-create it")


def _file_chunks(path: Path, kind: str) -> Iterator[bytes]:
    if kind == ".jsonl.zst":
        yield from _zstd_chunks(path)
        return
    opener = gzip.open if kind == ".jsonl.gz" else open
    with opener(path, "rb") as f:
        while chunk := f.read(1 << 20):
            yield chunk


def _bounded_lines(chunks: Iterator[bytes], path: Path, limit: int) -> Iterator[str]:
    """Lines of a byte stream, none longer than `limit` (checked as it grows, before it is joined)."""
    parts: list[bytes] = []
    size, lineno = 0, 1
    for chunk in chunks:
        pos = 0
        while (end := chunk.find(b"\n", pos)) >= 0:
            parts.append(chunk[pos:end])
            yield b"".join(parts).decode("utf-8")
            parts, size, lineno, pos = [], 0, lineno + 1, end + 1
        rest = chunk[pos:]
        if rest:
            parts.append(rest)
            size += len(rest)
            if size > limit:
                raise DataError(f"{path}:{lineno}: a line longer than {limit >> 20} MiB; this is not a corpus of "
                                "JSON lines (or one document is far too large)",
                                "split the document, or pass the right file")
    if parts:
        yield b"".join(parts).decode("utf-8")


def _text_lines(path: Path) -> Iterator[str]:
    yield from _bounded_lines(_file_chunks(path, corpus_kind(path)), path, MAX_DOCUMENT_BYTES)


def iter_file_documents(path: str | Path, text_field: str = "text") -> Iterator[str]:
    """Documents of one corpus file: one JSON object per line (`text_field`), or a whole .txt file."""
    path = Path(path)
    kind = check_corpus_path(path)
    try:
        if kind == ".txt":
            if path.stat().st_size > MAX_DOCUMENT_BYTES:
                raise DataError(f"{path}: a .txt corpus is one document, and this one is over "
                                f"{MAX_DOCUMENT_BYTES >> 20} MiB", "split it into .jsonl documents")
            with open(path, encoding="utf-8") as f:
                yield f.read()
            return
        for lineno, line in enumerate(_text_lines(path), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{lineno}: not a JSON line ({e.msg})",
                                'each line must be {"text": "..."}') from None
            if not isinstance(obj, dict) or not isinstance(obj.get(text_field), str):
                raise DataError(f"{path}:{lineno}: no string field '{text_field}'", 'each line must be {"text": "..."}')
            yield obj[text_field]
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except (OSError, EOFError) as e:  # truncated or corrupt .gz streams end up here
        raise DataError(f"{path}: cannot read ({e}); the file is corrupt or truncated") from None
    except Exception as e:  # zstandard.ZstdError, imported lazily
        if type(e).__name__ == "ZstdError":
            raise DataError(f"{path}: corrupt zstd stream ({e})") from None
        raise


def iter_documents(paths: list[str | Path]) -> Iterator[str]:
    """Documents of every corpus file, in the order given."""
    for path in paths:
        yield from iter_file_documents(path)


# ----------------------------------------------------------------------------- embedded corpus


def _module_docstrings(path: Path) -> str:
    try:
        with tokenize.open(path) as f:
            tree = ast.parse(f.read())
    except (SyntaxError, UnicodeDecodeError, OSError, ValueError):
        return ""
    docs = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=True)
            if doc:
                docs.append(doc)
    return "\n\n".join(docs)


def _stdlib_modules() -> list[Path]:
    root = Path(sysconfig.get_paths()["stdlib"])
    out = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).parts
        if any(part in _SKIP_DIRS for part in rel[:-1]) or rel[-1].startswith("test_"):
            continue
        out.append(path)
    return out


@functools.lru_cache(maxsize=1)
def embedded_named_documents() -> tuple[tuple[str, str], ...]:
    """(name, text) pairs of the embedded corpus, in its fixed order (parsed once per process)."""
    docs: list[tuple[str, str]] = []
    try:
        from pydoc_data.topics import topics
    except ImportError:  # some distributions strip pydoc_data
        topics = {}
    for name in sorted(topics):
        text = topics[name].strip()
        if text:
            docs.append((f"pydoc:{name}", text))
    root = Path(sysconfig.get_paths()["stdlib"])
    for path in _stdlib_modules():
        text = _module_docstrings(path)
        if len(text) >= _MIN_MODULE_CHARS:
            docs.append((f"stdlib:{path.relative_to(root).as_posix()}", text))
    if len(docs) < 50:
        raise DataError("the embedded corpus is too small on this Python installation "
                        f"({len(docs)} documents; pydoc_data or the stdlib sources are missing)",
                        "pass --corpus FILE")
    # Some topics repeat verbatim (aliases): keep the first of each text, so no document can be
    # in both the validation and the training split.
    seen: set[str] = set()
    unique = []
    for name, text in docs:
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        if digest not in seen:
            seen.add(digest)
            unique.append((name, text))
    unique.sort(key=lambda nd: hashlib.sha256(nd[0].encode()).hexdigest())
    return tuple(unique)


def embedded_documents() -> Iterator[str]:
    for _, text in embedded_named_documents():
        yield text


def embedded_identity() -> dict[str, object]:
    """Name and sha256 of the embedded corpus on this interpreter (it differs between Python versions)."""
    h = hashlib.sha256()
    docs = embedded_named_documents()
    for name, text in docs:
        h.update(name.encode())
        h.update(b"\0")
        h.update(text.encode("utf-8"))
        h.update(b"\0")
    return {"name": f"{EMBEDDED}:python-{sys.version_info.major}.{sys.version_info.minor}",
            "sha256": h.hexdigest(), "documents": len(docs)}
