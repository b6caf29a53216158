"""What `verify` judges: the evidence of one or several runs, gathered from disk by `pgolf.stages.verify`.

Everything here is plain data (manifests as dicts, numbers recomputed from files, the parsed ledger,
the shipped code's text), so every check is a pure function of an `Evidence` and tests build one in
memory with a planted violation. Recomputations that need arrays (byte tables, n-gram
search) live in `pgolf.verify.facts`; the stage calls them and stores only their results here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from pgolf.eval.ledger import LedgerEntry
from pgolf.verify.audit import AuditFacts

STAGE_KINDS = ("data", "train", "quant", "pack", "eval")
CHALLENGE_LIMIT_BYTES = 16_000_000
CHALLENGE_TRAIN_S = 600.0
CHALLENGE_EVAL_S = 600.0
CANONICAL_VAL_DOCS = 50_000  # the challenge's validation set: the first 50,000 FineWeb documents
# The canonical CaseOps SP8192 export (romeerp/parameter-golf-caseops-v1, the data of PR #1855 / #2130 / #2135):
# its records score val_tokens == target_tokens == 47,851,520 targets of the 50,000 documents, the val stream
# cut to a multiple of their eval length 2,560 (train_gpt.py's load_validation_tokens). pgolf scores every
# target, so a rebuild must have (N - 1) // 2,560 * 2,560 == 47,851,520 for its N val tokens.
CANONICAL_CASEOPS_VAL_TARGETS = 47_851_520
CANONICAL_CASEOPS_EVAL_LEN = 2_560


# ----------------------------------------------------------------------------- tracks and limits


@dataclasses.dataclass(frozen=True)
class Track:
    """A challenge track: its limits and how strictly record conditions apply."""

    name: str  # as submission.json spells it
    max_bytes: int
    max_train_s: float
    max_eval_s: float
    record: bool  # a record track: hardware, significance and time rules at full strength
    hardware: bool  # record hardware applies (8xH100)
    canonical_val: bool  # scored on the challenge's FineWeb validation set


TRACKS: Mapping[str, Track] = {
    "10min_16mb": Track("10min_16mb", CHALLENGE_LIMIT_BYTES, CHALLENGE_TRAIN_S, CHALLENGE_EVAL_S, True, True, True),
    "non_record_16mb": Track("non_record_16mb", CHALLENGE_LIMIT_BYTES, CHALLENGE_TRAIN_S, CHALLENGE_EVAL_S,
                             False, True, True),
    # pgolf's small CPU track: limits that a laptop can meet; no hardware rule.
    "cpu-golf": Track("cpu-golf", 1_000_000, 60.0, 180.0, True, False, False),
}
TRACK_ALIASES = {"record": "10min_16mb", "track_10min_16mb": "10min_16mb", "non-record": "non_record_16mb",
                 "track_non_record_16mb": "non_record_16mb", "cpu_golf": "cpu-golf"}


def track_named(name: str) -> Track | None:
    return TRACKS.get(TRACK_ALIASES.get(name, name))


@dataclasses.dataclass(frozen=True)
class Options:
    """The limits and claims a verification runs under.

    `explicit_*`: the limit was given by the user or the track (then it applies on any hardware);
    under the default limits a time measured on other hardware than 8xH100 cannot be judged (WARN).
    `strict`: the run is claimed for a track (--track or --submission), so record conditions FAIL
    rather than WARN. `claim`: a record claim with statistics (several dirs, a reference, or a
    record-track submission), which brings in the seed count.
    """

    track: Track = TRACKS["10min_16mb"]
    max_bytes: int = CHALLENGE_LIMIT_BYTES
    max_train_s: float = CHALLENGE_TRAIN_S
    max_eval_s: float = CHALLENGE_EVAL_S
    explicit_train: bool = False
    explicit_eval: bool = False
    strict: bool = False
    claim: bool = False
    reference_bpb: tuple[float, ...] = ()
    probe: bool = False
    reproduce: bool = False  # re-execute each evaluation and compare the ledgers (REPRO-1)
    audit: bool = False  # run the packed train_gpt.py under an audit hook (AUDIT-1)
    reproduce_train: bool = False  # re-train each run from its recorded recipe and compare (REPRO-2)

    @property
    def non_record(self) -> bool:
        return not self.track.record

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["track"] = self.track.name
        d["reference_bpb"] = list(self.reference_bpb)
        return d


# ----------------------------------------------------------------------------- files and stages


@dataclasses.dataclass(frozen=True)
class FileFact:
    """A file a manifest lists, as found on disk (bytes/sha256 None: missing)."""

    path: str
    listed_bytes: int | None
    listed_sha256: str | None
    bytes: int | None
    sha256: str | None

    @property
    def ok(self) -> bool:
        return self.bytes == self.listed_bytes and self.sha256 == self.listed_sha256


@dataclasses.dataclass(frozen=True)
class InputFact:
    """One lineage entry of a manifest: what it names (sha256) and what is there now (None: missing)."""

    kind: str
    path: str
    expected: str
    actual: str | None
    resolved: str
    external: bool = False  # outside the run (a corpus file, a tokenizer path): may be absent here

    @property
    def ok(self) -> bool:
        return self.actual == self.expected


@dataclasses.dataclass
class StageFacts:
    """One stage directory: its manifest (a dict, None when unreadable) and re-measured files and inputs."""

    kind: str
    dir: str
    manifest: dict[str, Any] | None
    error: str | None = None
    files: list[FileFact] = dataclasses.field(default_factory=list)
    inputs: list[InputFact] = dataclasses.field(default_factory=list)
    manifest_sha256: str | None = None

    def section(self, key: str) -> dict[str, Any]:
        value = (self.manifest or {}).get(key)
        return value if isinstance(value, dict) else {}

    @property
    def config(self) -> dict[str, Any]:
        return self.section("config")

    @property
    def metrics(self) -> dict[str, Any]:
        return self.section("metrics")

    @property
    def timing(self) -> dict[str, Any]:
        return self.section("timing")

    @property
    def env(self) -> dict[str, Any]:
        return self.section("env")

    def file(self, name: str) -> FileFact | None:
        return next((f for f in self.files if f.path == name), None)

    def input(self, kind: str) -> InputFact | None:
        """The input of this kind that names a stage's manifest.json (else the first of that kind)."""
        of_kind = [i for i in self.inputs if i.kind == kind]
        return next((i for i in of_kind if i.path.endswith("manifest.json")), of_kind[0] if of_kind else None)

    def input_file(self, kind: str, name: str) -> InputFact | None:
        """The input of this kind that names the file `name` (e.g. the eval's pack/model.bin)."""
        return next((i for i in self.inputs if i.kind == kind and i.path.replace("\\", "/").endswith("/" + name)), None)


# ----------------------------------------------------------------------------- recomputed facts


@dataclasses.dataclass
class DataFacts:
    """The validation data re-counted from the shards, the sidecar and tokenizer.model."""

    val_tokens: int  # N: tokens in the val shards (headers), BOS included
    val_docs: int  # BOS tokens in val
    starts_with_bos: bool
    doc_starts: np.ndarray  # int64 positions p with val[p] == BOS (document starts)
    sidecar_bytes: int | None  # sum of the sidecar over val[1:] (None: no sidecar)
    lut_bytes: int | None  # the same by lookup tables rebuilt from tokenizer.model (None: no tokenizer)
    lut_sidecar_mismatch: int | None  # tokens where the two disagree
    mismatch_examples: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    docs_checked: int = 0
    docs_decode_mismatch: int | None = None  # documents whose sidecar sum differs from len(decode(ids))
    unknown_tokens: int | None = None
    standalone_space: bool | None = None
    vocab_size: int | None = None
    tokenizer_sha256: str | None = None
    train_tokens: int | None = None  # tokens in the training shards (of the data the trainer read)
    overlap_docs: int | None = None  # val documents found verbatim in the training shards (None: not scanned)
    overlap_note: str = ""
    # Per training input of the lineage (train manifest's `train_shard` inputs + the train split of its data dir):
    train_sources: list[str] = dataclasses.field(default_factory=list)  # every training shard named
    overlap_by_source: dict[str, int] = dataclasses.field(default_factory=dict)  # shard -> val docs found in it
    train_unreadable: list[str] = dataclasses.field(default_factory=list)  # "<shard>: why" (missing, sha256 differs)
    # The same for the quant manifest's GPTQ calibration shards (DATA-7); calib_overlap None: not scanned.
    calib_sources: list[str] = dataclasses.field(default_factory=list)
    calib_overlap: int | None = None
    calib_overlap_by_source: dict[str, int] = dataclasses.field(default_factory=dict)
    calib_unreadable: list[str] = dataclasses.field(default_factory=list)
    calib_note: str = ""
    # CaseOps data (the data manifest's `transform`): the lookup tables do not apply (lut_* stay None).
    transform: str = "none"
    transform_error: str | None = None  # the tokenizer has no CaseOps control pieces
    decoded_bytes: int | None = None  # targets' bytes by decoding + inverting the transform (normalized text)
    control_tokens: int | None = None  # case-op / control tokens among the targets
    control_mismatch: int | None = None  # of those, charged otherwise than the transform says (0; 3 if escaped)
    control_examples: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    raw_bytes: int | None = None  # the sidecar re-derived from the raw val documents: its total (None: not done)
    raw_docs: int = 0  # documents re-derived
    raw_error: str | None = None  # the first token or document where the re-derivation disagrees
    raw_note: str = ""  # why the raw documents could not be read


@dataclasses.dataclass
class LedgerFacts:
    """The eval's score ledger, parsed (or why it could not be)."""

    header: dict[str, Any] = dataclasses.field(default_factory=dict)
    entries: list[LedgerEntry] = dataclasses.field(default_factory=list)
    summary: dict[str, Any] | None = None
    error: str | None = None


@dataclasses.dataclass(frozen=True)
class PaidPrefixFacts:
    """Val n-grams found verbatim in the decoded model tensors (DATA-4 heuristic)."""

    ngram: int
    sampled: int  # val n-grams searched for
    hits: dict[str, int]  # tensor name -> sampled n-grams found in it
    error: str | None = None

    @property
    def total(self) -> int:
        return sum(self.hits.values())


@dataclasses.dataclass(frozen=True)
class ProbeFacts:
    """One probe's outcome on the packed scorer (`pgolf.verify.probes`)."""

    name: str  # P-norm, P-tgt, P-pre, P-doc, P-mut
    positions: int  # positions (or calls) probed
    violations: int
    max_error: float
    detail: str = ""


@dataclasses.dataclass(frozen=True)
class LaunchFacts:
    """The launch ledger `pgolf run` keeps (run.json `launches`, see `pgolf.stages.run`) where it records
    the training behind a run. A launch is a dict: run_id, seed, config_sha256 (the TrainConfig's hash
    without its seed), data_sha256 (the data manifest's sha256), started_utc, run_dir, resume."""

    ledger: str  # the run.json it was read from
    record: Mapping[str, Any]  # the launch that made this run's train artifact
    launches: tuple[Mapping[str, Any], ...]  # every launch the ledger lists, this one included
    config_sha256: str  # the same hash recomputed from the train manifest's config

    def seeds_launched(self, config_sha256: str) -> set[Any]:
        """The seeds of every launch of that config (fresh or resumed, finished or not)."""
        return {x.get("seed") for x in self.launches if x.get("config_sha256") == config_sha256}


@dataclasses.dataclass
class ReproductionFacts:
    """The evaluation re-executed from the packed artifact in a fresh process (`pgolf verify --reproduce`).

    status: "ran" (a fresh ledger was written: `entries`, `summary`, `val_bpb`), "cannot" (this machine
    cannot re-execute it, e.g. a CUDA eval without CUDA here, or the re-execution timed out: `reason`,
    and `command` is what to run where it can) or "error" (the fresh `pgolf ttt-eval` refused or failed:
    `reason` is its last error line). `exact`: the claimed eval ran on CPU, in one process, with this
    torch build, so every entry must be bit-identical; otherwise nll sums compare within `rel_tol`.
    `compare_until`: the index of the last claimed chunk that can be compared (a TTT run whose clock
    stopped adaptation there; the re-execution has no clock budget), None for all of them.
    """

    status: str
    command: str
    reason: str = ""
    seconds: float | None = None
    device: str = "cpu"
    exact: bool = False
    rel_tol: float = 0.0
    entries: list[LedgerEntry] = dataclasses.field(default_factory=list)
    summary: dict[str, Any] | None = None
    val_bpb: float | None = None  # the fresh eval manifest's
    compare_until: int | None = None


@dataclasses.dataclass
class ContaminationFacts:
    """The contamination probe (`verify --probe`, CONTAM-1): the packed model's bpb on val documents against its
    bpb on documents of the data build's held-out split, which no stage reads (`pgolf.verify.probes`).

    status: "ran", or "cannot" (no held-out split, unreadable data: `reason`). `gap` = held-out bpb - val
    bpb; `gap_se` its document-bootstrap standard error; `lower` = gap - z * gap_se, the one-sided lower
    confidence bound at level 1 - alpha. A model fitted to val scores val better than unseen documents of
    the same distribution: `lower` above `margin` is beyond what the choice of documents explains."""

    status: str
    reason: str = ""
    val_docs: int = 0
    heldout_docs: int = 0
    val_bpb: float | None = None
    heldout_bpb: float | None = None
    gap: float | None = None
    gap_se: float | None = None
    lower: float | None = None
    alpha: float = 0.0
    margin: float = 0.0
    seconds: float | None = None


@dataclasses.dataclass
class TrainReproductionFacts:
    """The training re-executed from the recorded recipe and data in a fresh process (`verify --reproduce-train`,
    REPRO-2). status: "ran" (`curve` and `tensors` compared), "cannot" (refused here: CUDA or several ranks,
    or over the time cap; `command` is what to run where it can), "error" (the fresh `pgolf train` failed).
    `loss_diff`: (step, claimed loss, reproduced loss) at the first step whose loss differs beyond `rel_tol`
    (None: the curves agree); `tensor_diff`: (name, max |difference|) of the first differing weight tensor
    (sorted by name); `steps`: how many logged steps were compared; `exact`: bit-identical required."""

    status: str
    command: str
    reason: str = ""
    seconds: float | None = None
    exact: bool = False
    rel_tol: float = 0.0
    steps: int = 0
    tensors: int = 0
    loss_diff: tuple[int, float | None, float | None] | None = None
    tensor_diff: tuple[str, float] | None = None
    max_loss_rel: float = 0.0
    max_tensor_abs: float = 0.0
    note: str = ""  # e.g. pgolf's source here differs from the one that trained it (then not bit-identical)


@dataclasses.dataclass(frozen=True)
class LaunchLogFacts:
    """pgolf's local launch log (`<cache dir>/launches.jsonl`, appended by every `pgolf run` / `pgolf train`
    launch): the entries whose config hash is one of the verified runs' (STAT-3)."""

    path: str
    entries: tuple[Mapping[str, Any], ...]
    verified: Mapping[str, tuple[Any, ...]] = dataclasses.field(default_factory=dict)  # config hash -> seeds verified
    error: str = ""

    def seeds_launched(self, config_sha256: str) -> set[Any]:
        return {x.get("seed") for x in self.entries if x.get("config_sha256") == config_sha256}


@dataclasses.dataclass
class SeedEvidence:
    """Everything about one run (one seed)."""

    label: str  # the directory's name
    root: str
    stages: dict[str, StageFacts] = dataclasses.field(default_factory=dict)  # by kind; "train_data" if distinct
    data: DataFacts | None = None
    ledger: LedgerFacts | None = None
    eval_report: dict[str, Any] | None = None  # eval/report.json
    code: str | None = None  # the shipped train_gpt.py
    shipped: list[str] = dataclasses.field(default_factory=list)  # file names in the pack directory, as found
    paid_prefix: PaidPrefixFacts | None = None
    launch: LaunchFacts | None = None  # None: no launch ledger records this run's training
    probes: list[ProbeFacts] | None = None  # None: --probe not given
    probe_claims_isolation: bool = False
    reproduction: ReproductionFacts | None = None  # None: --reproduce not given
    audit: AuditFacts | None = None  # None: --audit not given (or no pack)
    train_reproduction: TrainReproductionFacts | None = None  # None: --reproduce-train not asked
    contamination: ContaminationFacts | None = None  # None: --probe not given
    problems: list[str] = dataclasses.field(default_factory=list)  # lineage that could not be followed
    # The training clock as the train artifact's own logs record it, to cross-check its manifest:
    # {"metrics.jsonl": seconds of its end event, "log.txt": seconds of its last train_time line}.
    train_clocks: dict[str, float] = dataclasses.field(default_factory=dict)

    def stage(self, kind: str) -> StageFacts | None:
        return self.stages.get(kind)

    @property
    def seed(self) -> int | None:
        for kind in ("train", "eval", "pack", "quant"):
            s = self.stages.get(kind)
            if s is not None and s.manifest and s.manifest.get("seed") is not None:
                return int(s.manifest["seed"])
        return None

    @property
    def name(self) -> str:
        """How results name this run: `seed 42`, or the directory when there is no seed."""
        return f"seed {self.seed}" if self.seed is not None else self.label


@dataclasses.dataclass
class FolderFacts:
    """A written submission folder, re-read (FMT-2, FMT-4, STAT-4)."""

    name: str
    files: dict[str, int]  # file name -> bytes
    submission: dict[str, Any] | None
    error: str | None = None
    code_sha256: str | None = None
    requirements: tuple[str, ...] = ()


@dataclasses.dataclass
class Evidence:
    """The runs to judge (one per seed), the options, and the submission folder when one was written."""

    seeds: list[SeedEvidence]
    options: Options = dataclasses.field(default_factory=Options)
    folder: FolderFacts | None = None
    launch_log: LaunchLogFacts | None = None  # None: no launch log in pgolf's cache directory

    @property
    def multi(self) -> bool:
        return len(self.seeds) > 1


def first(mapping: Mapping[str, Any], *keys: str, default: Any = None) -> Any:
    """The value of the first key present (manifests of different pgolf versions name things differently)."""
    for key in keys:
        if key in mapping and mapping[key] is not None:
            return mapping[key]
    return default


def seeds_of(seeds: Sequence[SeedEvidence]) -> list[int | None]:
    return [s.seed for s in seeds]
