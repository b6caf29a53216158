"""Versioned artifacts on disk: manifests, atomic stage directories, hashing, safetensors files.

Every stage writes one directory. Its `manifest.json` (schema `pgolf.manifest`, version 1) is written
last, atomically: a directory without a manifest is not an artifact. A manifest lists its files
(bytes, sha256) and its inputs (path relative to the manifest's directory, sha256 of the input's
manifest or file), so a run directory can be moved or copied and still verifies, and lineage can be
followed back to the data. A manifest whose schema_version is newer than this code knows is an
error; older ones are brought up to date by the functions in `MIGRATIONS`, in order.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pgolf import __version__
from pgolf.errors import ArtifactError

SCHEMA = "pgolf.manifest"
SCHEMA_VERSION = 1
MANIFEST = "manifest.json"

# MIGRATIONS[n] turns a raw manifest dict of schema_version n into one of version n + 1.
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}

# Which command makes each kind of artifact, for error messages that say how to fix things.
MAKER = {
    "data": "pgolf data build",
    "train": "pgolf train",
    "quant": "pgolf quantize",
    "pack": "pgolf pack",
    "eval": "pgolf ttt-eval",
    "verify": "pgolf verify",
    "run": "pgolf run",
    "report": "pgolf report",
}


def utc_now() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_run_id() -> str:
    return secrets.token_hex(4)


@dataclasses.dataclass
class Manifest:
    """The record of one stage's output; see design.md for the schema."""

    kind: str
    config: dict[str, Any] = dataclasses.field(default_factory=dict)
    inputs: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    files: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    metrics: dict[str, Any] = dataclasses.field(default_factory=dict)
    timing: dict[str, Any] = dataclasses.field(default_factory=dict)
    seed: int | None = None
    run_id: str = dataclasses.field(default_factory=new_run_id)
    code: dict[str, Any] = dataclasses.field(default_factory=dict)
    env: dict[str, Any] = dataclasses.field(default_factory=dict)
    pgolf_version: str = __version__
    created_utc: str = dataclasses.field(default_factory=utc_now)
    schema: str = SCHEMA
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], source: str = "manifest") -> Manifest:
        names = {f.name for f in dataclasses.fields(cls)}
        manifest = cls(**{k: v for k, v in raw.items() if k in names})
        manifest.check_shape(source)
        return manifest

    def check_shape(self, source: str = "manifest") -> None:
        """The JSON types the readers rely on; a hand-edited or forged manifest gets one clear line."""
        fix = f"re-create it with {MAKER.get(str(self.kind), 'its pgolf command')}"
        if not isinstance(self.kind, str):
            raise ArtifactError(f"{source}: 'kind' is not a string", fix)
        for key in ("config", "metrics", "timing", "code", "env"):
            if not isinstance(getattr(self, key), dict):
                raise ArtifactError(f"{source}: '{key}' is not an object", fix)
        for key, fields in (("files", (("path", str), ("bytes", int), ("sha256", str))),
                            ("inputs", (("kind", str), ("path", str), ("sha256", str)))):
            entries = getattr(self, key)
            if not isinstance(entries, list):
                raise ArtifactError(f"{source}: '{key}' is not a list", fix)
            for i, entry in enumerate(entries):
                if not isinstance(entry, dict) or any(not isinstance(entry.get(f), t) or isinstance(entry.get(f), bool)
                                                      for f, t in fields):
                    want = ", ".join(f for f, _ in fields)
                    raise ArtifactError(f"{source}: {key}[{i}] is not an object with {want}", fix)

    def file(self, path: str) -> dict[str, Any]:
        for entry in self.files:
            if entry["path"] == path:
                return entry
        raise ArtifactError(f"{self.kind} manifest lists no file '{path}'")

    def input(self, kind: str) -> dict[str, Any]:
        for entry in self.inputs:
            if entry["kind"] == kind:
                return entry
        raise ArtifactError(f"{self.kind} manifest records no '{kind}' input")


# ----------------------------------------------------------------------------- hashing and files


def sha256_file(path: str | Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_entry(root: Path, rel: str, fmt: str, format_version: int = 1) -> dict[str, Any]:
    """Manifest entry for `root/rel`: its size and sha256."""
    path = Path(root) / rel
    return {"path": rel, "bytes": path.stat().st_size, "sha256": sha256_file(path), "format": fmt,
            "format_version": format_version}


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write to a temp file in the same directory, fsync, then rename over `path`."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; published files get the usual mode
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2) + "\n")


# ----------------------------------------------------------------------------- manifests


def write_manifest(directory: str | Path, manifest: Manifest) -> Path:
    path = Path(directory) / MANIFEST
    atomic_write_text(path, manifest.to_json())
    return path


def migrate(raw: dict[str, Any], source: str = "manifest") -> dict[str, Any]:
    """Bring a raw manifest dict up to SCHEMA_VERSION through MIGRATIONS, refusing newer versions."""
    version = raw.get("schema_version")
    if not isinstance(version, int):
        raise ArtifactError(f"{source} has no integer schema_version; it was not written by pgolf")
    if version > SCHEMA_VERSION:
        raise ArtifactError(
            f"{source} has schema_version {version}, newer than this pgolf ({__version__}) understands "
            f"(up to {SCHEMA_VERSION})", "upgrade pgolf to read it")
    while version < SCHEMA_VERSION:
        step = MIGRATIONS.get(version)
        if step is None:
            raise ArtifactError(f"{source} has schema_version {version}, which this pgolf cannot migrate",
                                f"re-create it with {MAKER.get(str(raw.get('kind')), 'its pgolf command')}")
        raw = step(dict(raw))
        version += 1
        raw["schema_version"] = version
    return raw


def read_manifest(directory: str | Path, kind: str | tuple[str, ...] | None = None) -> Manifest:
    """Load `directory/manifest.json`, checking schema, version and kind; errors say how to fix."""
    directory = Path(directory)
    kinds = (kind,) if isinstance(kind, str) else kind
    what = " or ".join(kinds) if kinds else "pgolf"
    maker = MAKER.get(kinds[0], "its pgolf command") if kinds else "a pgolf command"
    if not directory.exists():
        raise ArtifactError(f"{directory} does not exist", f"create it with {maker}")
    path = directory / MANIFEST
    if not path.is_file():
        raise ArtifactError(f"{directory} is not a {what} artifact (no {MANIFEST}; an interrupted stage leaves none)",
                            f"create it with {maker}")
    try:
        raw = json.loads(path.read_text("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ArtifactError(f"{path} is not valid JSON ({e})", f"re-create it with {maker}") from None
    if not isinstance(raw, dict) or raw.get("schema") != SCHEMA:
        raise ArtifactError(f"{path} is not a pgolf manifest (schema is not '{SCHEMA}')")
    raw = migrate(raw, str(path))
    manifest = Manifest.from_dict(raw, str(path))
    if kinds and manifest.kind not in kinds:
        raise ArtifactError(f"{directory} holds a '{manifest.kind}' artifact, expected {what}",
                            f"pass the directory written by {maker}")
    return manifest


def listed_path(directory: str | Path, entry: Mapping[str, Any]) -> Path:
    """The file a manifest's `files` entry names, which must stay inside `directory`: a plain relative
    path (no absolute path, no `..`), not a symbolic link, not reached through one."""
    directory = Path(directory)
    rel = entry["path"]
    parts = Path(rel).parts
    fix = f"re-create {directory} with its pgolf command; a manifest only lists files inside its own directory"
    if not parts or os.path.isabs(rel) or ".." in parts or "\\" in rel:
        raise ArtifactError(f"{directory / MANIFEST} lists a file outside its directory ({rel!r})", fix)
    path = directory / rel
    if os.path.realpath(path) != os.path.join(os.path.realpath(directory), *parts):
        raise ArtifactError(f"{directory / MANIFEST} lists {rel!r}, which is (or is reached through) a symbolic link",
                            fix)
    return path


def check_files(directory: str | Path, manifest: Manifest) -> None:
    """Every file the manifest lists exists inside `directory` with its recorded size and sha256."""
    directory = Path(directory)
    fix = f"re-create the artifact with {MAKER.get(manifest.kind, 'its pgolf command')}"
    for entry in manifest.files:
        path = listed_path(directory, entry)
        if not path.is_file():
            raise ArtifactError(f"{path} is missing (listed in {directory / MANIFEST})", fix)
        size = path.stat().st_size
        if size != entry["bytes"]:
            raise ArtifactError(f"{path} has {size} bytes, the manifest says {entry['bytes']} (truncated or modified)",
                                fix)
        if sha256_file(path) != entry["sha256"]:
            raise ArtifactError(f"{path} does not match its sha256 in the manifest (corrupt or modified)", fix)


def input_entry(kind: str, target: str | Path, manifest_dir: str | Path) -> dict[str, Any]:
    """Lineage entry: `target` (a manifest.json or a file) by path relative to `manifest_dir`, with sha256."""
    target = Path(target).resolve()
    rel = os.path.relpath(target, Path(manifest_dir).resolve())
    return {"kind": kind, "path": Path(rel).as_posix(), "sha256": sha256_file(target)}


def resolve_input(manifest_dir: str | Path, entry: Mapping[str, Any]) -> Path:
    """The path an input entry names, relative to its manifest's directory. Writers only record relative
    paths, so an absolute one is refused (a forged or hand-edited lineage), and so is a link: lineage
    is followed through real files only."""
    rel = entry["path"]
    if not isinstance(rel, str) or not rel or os.path.isabs(rel):
        raise ArtifactError(f"{Path(manifest_dir) / MANIFEST} names its {entry.get('kind')} input by an absolute "
                            f"path ({rel!r}); pgolf records inputs relative to the artifact",
                            "re-create the artifact with its pgolf command")
    # Lexical `..` on a resolved base is what the kernel does, so any link below it shows as a difference.
    joined = Path(os.path.normpath(Path(os.path.realpath(manifest_dir)) / rel))
    if os.path.realpath(joined) != str(joined):
        raise ArtifactError(f"{Path(manifest_dir) / MANIFEST} names its {entry.get('kind')} input through a symbolic "
                            f"link ({rel!r})", "keep the run's directories as real directories and re-create it")
    return joined


def check_input(manifest_dir: str | Path, entry: Mapping[str, Any]) -> Path:
    """Resolve an input entry and check its sha256; a mismatch means the input changed since."""
    path = resolve_input(manifest_dir, entry)
    if not path.is_file():
        raise ArtifactError(f"input {entry['kind']} {path} is missing", "keep the run directory together")
    if sha256_file(path) != entry["sha256"]:
        raise ArtifactError(f"input {entry['kind']} {path} changed since this artifact was made (sha256 mismatch)",
                            "re-run the stage on the current input")
    return path


# ----------------------------------------------------------------------------- stage directories


def _a(kind: str) -> str:
    return f"an {kind}" if kind[:1] in "aeiou" else f"a {kind}"


def check_output(out: str | Path, kind: str, force: bool) -> None:
    """`out` may be new, empty, or a `kind` artifact (replaced only with `force`); nothing else is ever replaced:
    not a directory of files pgolf did not write, nor an artifact of another kind, even with `force`."""
    out = Path(out)
    if not out.exists() and not out.is_symlink():
        return
    if out.is_symlink() or not out.is_dir():
        raise ArtifactError(f"--out {out} is a {'link' if out.is_symlink() else 'file'}, not a directory",
                            "choose another --out")
    if (out / MANIFEST).is_file():
        try:
            held: str | None = read_manifest(out).kind
        except ArtifactError:
            held = None
        if held != kind:
            what = f"a '{held}'" if held else "an unreadable"
            raise ArtifactError(f"--out {out} holds {what} artifact, and {MAKER.get(kind, 'this command')} writes "
                                f"'{kind}' artifacts; it will not replace it",
                                "choose another --out (or remove that directory yourself)")
        if not force:
            raise ArtifactError(f"--out {out} already holds {_a(kind)} artifact",
                                "pass --force to replace it, or choose another --out")
        return
    if any(out.iterdir()):
        raise ArtifactError(f"--out {out} is a directory of files pgolf did not write (no {MANIFEST}); "
                            "pgolf will not replace it, even with --force",
                            "choose another --out (or remove that directory yourself)")


def publish_dir(work: Path, out: Path) -> None:
    """Move a completed stage directory into place, replacing `out` only once `work` is complete."""
    assert (work / MANIFEST).is_file(), "a stage must write its manifest before publishing"
    replace_dir(work, out)


def replace_dir(work: Path, out: Path) -> None:
    """Rename the complete directory `work` to `out`; an existing `out` is swapped out first and removed."""
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists():
        trash = out.parent / f".{out.name}.old-{secrets.token_hex(3)}"
        os.replace(out, trash)
        os.replace(work, out)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(work, out)


@contextmanager
def stage_dir(out: str | Path, kind: str, force: bool = False) -> Iterator[Path]:
    """Yield a temporary directory next to `out`; on success (manifest written) rename it to `out`.

    On any error, or Ctrl-C, the temporary directory is removed: nothing half-written is left behind.
    """
    out = Path(out)
    check_output(out, kind, force)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    try:
        yield work
        if not (work / MANIFEST).is_file():
            raise ArtifactError(f"internal error: the {kind} stage finished without a manifest")
        publish_dir(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


# ----------------------------------------------------------------------------- safetensors


def encode_metadata(metadata: Mapping[str, Any]) -> dict[str, str]:
    """safetensors metadata is str -> str: namespaced `pgolf.*` keys, nested values as JSON strings."""
    out = {"format": "pt"}
    for key, value in metadata.items():
        if not key.startswith("pgolf."):
            raise ValueError(f"safetensors metadata key {key!r} must start with 'pgolf.'")
        out[key] = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return out


def decode_metadata(raw: Mapping[str, str] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in (raw or {}).items():
        if not key.startswith("pgolf."):
            continue
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def canonical_safetensors(data: bytes) -> bytes:
    """Rewrite a safetensors header with sorted keys: the library stores metadata from a hash map,
    so its key order (and the file's bytes) would otherwise change from run to run."""
    header_len = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + header_len])
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)  # the format pads the header to 8-byte alignment with spaces
    return len(text).to_bytes(8, "little") + text + data[8 + header_len :]


def safetensors_bytes(tensors: Mapping[str, Any], metadata: Mapping[str, Any]) -> bytes:
    """Deterministic safetensors bytes for CPU tensors and `pgolf.*` metadata."""
    from safetensors.torch import save

    data = save({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, metadata=encode_metadata(metadata))
    return canonical_safetensors(data)


def save_safetensors(path: str | Path, tensors: Mapping[str, Any], metadata: Mapping[str, Any]) -> None:
    """Write tensors (contiguous, CPU) atomically; the same inputs give the same bytes."""
    atomic_write_bytes(path, safetensors_bytes(tensors, metadata))


def load_safetensors(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read tensors and decoded `pgolf.*` metadata; a corrupt or truncated file is an ArtifactError."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path} is missing")
    data = path.read_bytes()
    try:
        tensors = load(data)
        header_len = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + header_len])
    except (SafetensorError, ValueError, json.JSONDecodeError) as e:
        raise ArtifactError(f"{path} is not a readable safetensors file ({e}); it is corrupt or truncated",
                            "re-create it with the stage that wrote it") from None
    return tensors, decode_metadata(header.get("__metadata__"))
