"""The challenge rulebook as data (rule set `pg-rules-2026.05`, docs: shared rules.md).

One `Rule` per rule of the rulebook: its id, title, status and citation, the verdict a violation
gets by default, the stage that enforces it while running (`[E]` rules), and either the name of the
check in `pgolf.verify.checks` that verifies it from evidence on disk or the reason it cannot be
checked. `limits` says honestly what part of a checked rule pgolf's evidence cannot see.

Status sets the default verdict (rules.md §0): OFFICIAL and RULING give FAIL, CONTESTED gives WARN,
ACCEPTED is set per rule. Settling a point changes only this table, never a check's logic.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

Verdict = Literal["PASS", "WARN", "FAIL", "INFO"]
PASS: Verdict = "PASS"
WARN: Verdict = "WARN"
FAIL: Verdict = "FAIL"
INFO: Verdict = "INFO"
VERDICTS: tuple[Verdict, ...] = (INFO, PASS, WARN, FAIL)  # in rising severity (a PASS outranks an INFO)

RULESET = "pg-rules-2026.05"

# What pgolf's evidence is made of (used in the texts below):
# manifests (config, env, timing, files, inputs), files re-hashed on disk, the data manifest and the
# val shards / sidecar / tokenizer, the score ledger, the shipped train_gpt.py (read with `ast`),
# the decoded model.bin, probes run on the packed model (--probe), and the launch ledger `pgolf run`
# keeps in run.json; with --audit, the file opens, sockets, processes and compiled code of the shipped
# file run on a val slice (AUDIT-1, rules.md evidence "A"). What it lacks: the PR diff, and an audit of
# the training run.
NO_AUDIT = "file opens and sockets at run time are seen only with --audit (AUDIT-1, rules.md evidence A)"


@dataclass(frozen=True)
class Rule:
    """One rule of the rulebook and how pgolf checks it."""

    id: str
    title: str
    status: str  # "OFFICIAL", "RULING #n", "ACCEPTED" or "CONTESTED"
    citation: str  # where the status comes from: "README", "#2146", ...
    verdict: Verdict  # what a violation gives by default
    evidence: str  # what pgolf checks, in one sentence
    check: str | None = None  # key of pgolf.verify.checks.CHECKS, or None
    not_checkable: str = ""  # why there is no check (set exactly when `check` is None)
    limits: str = ""  # what part of the rule the evidence cannot see
    enforced_by: str | None = None  # the stage that enforces it while it runs ([E])
    non_record: Verdict | None = None  # the most a violation gives on the non-record track

    @property
    def tag(self) -> str:
        """`[OFFICIAL README]`, `[RULING #2146]`: what every result line carries."""
        return f"[{self.status}]" if self.status.startswith("RULING") else f"[{self.status} {self.citation}]"

    def __post_init__(self) -> None:
        assert (self.check is None) == bool(self.not_checkable), f"{self.id}: a check or a reason, not both"
        assert self.verdict in VERDICTS


_RULES: tuple[Rule, ...] = (
    # ------------------------------------------------------------------------------ 1. size
    Rule("SIZE-1", "Decimal size cap", "OFFICIAL", "README", "FAIL",
         "code bytes (pack/train_gpt.py) + model bytes (pack/model.bin), re-measured on disk for every seed, "
         "against the cap in decimal bytes; the maximum over seeds is reported",
         check="size_cap",
         limits="files the eval reads beyond the pack directory are seen only through the static scan (SIZE-3)"),
    Rule("SIZE-2", "Counted code is the shipped code", "OFFICIAL", "README", "FAIL",
         "the code and model bytes the pack manifest claims equal the bytes of the files that ship",
         check="counted_code",
         limits="pgolf counts the shipped file itself and has no renderer, so the WARN case of a reproduced "
                "rendering (#1855) never arises"),
    Rule("SIZE-3", "No uncounted code or data", "OFFICIAL", "README", "FAIL",
         "static scan of the shipped train_gpt.py (and of payloads it decodes from literals): exec/eval/compile "
         "of file contents, runpy, importlib from files, ctypes, torch.ops.load_library, cpp_extension, sys.path; "
         "side files read by a literal name (open, np.fromfile/load/memmap, torch.load) that are neither counted "
         "nor declared data; exec/eval/compile fetched from the builtins namespace; local module imports",
         check="uncounted_code",
         limits=f"static: {NO_AUDIT}; an open hidden behind code the scan cannot resolve is a WARN at most here"),
    Rule("SIZE-4", "Declared dependencies", "OFFICIAL", "README", "WARN",
         "third-party imports and subprocess targets of the shipped code against the upstream requirements.txt "
         "and the folder's requirements.txt; a package installed at run time (pip install in a subprocess) FAILs",
         check="dependencies",
         limits="system binaries named only in the README cannot be matched; subprocess targets are listed"),
    Rule("SIZE-5", "The score comes from the measured artifact", "ACCEPTED", "README", "FAIL",
         "the pack manifest the eval names (by sha256) is the one on disk, and its model.bin is the measured one",
         check="scored_artifact", enforced_by="ttt-eval"),
    # ------------------------------------------------------------------------------ 2. time
    Rule("TIME-1", "Training <= 600 s, stopped by the clock", "OFFICIAL", "README", "FAIL",
         "train manifest timing: train_time_s against the limit plus one step, and the stop reason",
         check="train_time", non_record="INFO",
         limits="timings from hardware other than 8xH100 cannot show record compliance: WARN under the default "
                "limits (explicit limits apply on any hardware)"),
    Rule("TIME-2", "Post-training work that reads data", "RULING #593", "#593", "FAIL",
         "quantize calibration: a GPTQ calibration on training data must end inside the training clock "
         "(train_time_s + calibration time); self-generated calibration after the clock is a WARN",
         check="post_training_time", non_record="INFO",
         limits=f"the end time of each data read is taken from stage timings, not file-open timestamps ({NO_AUDIT})"),
    Rule("TIME-3", "Evaluation <= 600 s", "OFFICIAL", "README", "FAIL",
         "eval manifest eval_time_s (load, decode, warm-up, scoring, adaptation) against the limit",
         check="eval_time", enforced_by="ttt-eval", non_record="WARN",
         limits=f"whether a val read preceded the clock is not visible ({NO_AUDIT}); ttt-eval starts its clock "
                "before reading val by construction"),
    Rule("TIME-4", "Record hardware", "OFFICIAL", "README", "FAIL",
         "env of the train and eval manifests: 8 H100 GPUs, world size 8",
         check="hardware", non_record="INFO",
         limits="FAIL only on a record-track claim (--track 10min_16mb or --submission); a plain verify of a "
                "development run says WARN"),
    # ------------------------------------------------------------------------------ 3. data
    Rule("DATA-1", "Canonical validation set", "OFFICIAL", "README", "FAIL",
         "val shards hashed against the data manifest; N and the document count re-counted from the shards; "
         "the ledger covers that N; the record track's 50,000 documents",
         check="validation_set", enforced_by="ttt-eval",
         limits="whether the corpus is the official FineWeb list is known only through the data manifest"),
    Rule("DATA-2", "Train and val are disjoint", "RULING #2146", "#2146", "FAIL",
         "document ranges in the data manifest(s), and val documents hashed against every training shard the "
         "train manifest records (train_shard inputs, re-hashed) and the train split of its data directory",
         check="train_val_disjoint",
         limits="the shard hash scan is skipped above a token budget (documented in the detail); the CaseOps "
                "log fingerprint applies to foreign logs only"),
    Rule("DATA-3", "No validation data in training", "OFFICIAL", "README", "FAIL",
         "the train manifest's inputs (the data manifest, never val shards), the trainer's use of val "
         "(periodic diagnostics only), and loader globs in the shipped code that also match val shards",
         check="no_val_in_training",
         limits=f"provenance tags on tensors are not recorded ({NO_AUDIT}); pgolf's trainer reads only "
                "fineweb_train_* by construction"),
    Rule("DATA-4", "No paid prefix", "OFFICIAL", "README", "FAIL",
         "the pack descends from train only (lineage); heuristic: sampled 32-token val n-grams searched in every "
         "decoded model.bin tensor",
         check="paid_prefix",
         limits="val text transformed before storage (e.g. as floats or re-encoded) escapes the n-gram search"),
    Rule("DATA-5", "No training data during eval", "OFFICIAL", "README", "FAIL",
         "the eval manifest's inputs are the pack and the val data only",
         check="no_train_in_eval", enforced_by="ttt-eval",
         limits=f"{NO_AUDIT}; the shipped train_gpt.py trains too, so its train-shard reads cannot be told apart "
                "statically"),
    Rule("DATA-6", "No network during eval", "OFFICIAL", "README", "FAIL",
         "static scan of the shipped code for network modules (socket, urllib, requests, huggingface_hub, ...), "
         "download calls (hf_hub_download, urlopen, torch.hub) and downloaders run as subprocesses (curl, wget, "
         "git clone, pip install)",
         check="no_network", enforced_by="ttt-eval",
         limits=f"a connection at run time: {NO_AUDIT}; an import alone gives WARN, a download call or program FAIL"),
    Rule("DATA-7", "Calibration never uses val", "RULING #728", "#728", "FAIL",
         "quant manifest: the declared calibration source (train or self-generated) and its inputs; the "
         "calibration shards it records are re-hashed and their documents hashed against the val documents",
         check="calibration_source",
         limits="the shard hash scan is skipped above a token budget (WARN, never PASS); self-generated "
                "calibration reads no data to scan"),
    # ------------------------------------------------------------------------------ 4. TTT
    Rule("TTT-1", "Score before update", "OFFICIAL", "README", "FAIL",
         "ledger: parameters unchanged while each chunk was scored, every adaptation span inside the prefix "
         "committed before it; probe P-mut (--probe)",
         check="score_before_update", enforced_by="ttt-eval",
         limits="pre-quantization TTT on val would show as val data in training (DATA-3), which is not audited"),
    Rule("TTT-2", "First pass counts; each token scored once", "RULING #762", "#762", "FAIL",
         "ledger: one committed score per position; the reported val_bpb/val_loss equal the ledger's",
         check="first_pass", enforced_by="ttt-eval"),
    Rule("TTT-3", "No selection over passes", "RULING #573", "#573", "FAIL",
         "one ledger, one trajectory: the reported score is the ledger's single pass",
         check="no_selection", enforced_by="ttt-eval",
         limits="selection done outside pgolf (re-running ttt-eval and keeping the best) leaves several eval "
                "dirs; only the one given is seen"),
    Rule("TTT-4", "No rescoring", "RULING #991", "#991", "FAIL",
         "ledger: entries contiguous and in commit order; no position committed twice",
         check="no_rescoring", enforced_by="ttt-eval"),
    Rule("TTT-5", "Several epochs over committed spans (allowed)", "ACCEPTED", "#1493", "INFO",
         "ledger: epochs per chunk (INFO); an epoch reaching past the committed end is a FAIL",
         check="epochs"),
    Rule("TTT-6", "No real val tokens in warm-up", "CONTESTED", "#1530", "WARN",
         "ttt-eval warms up on synthetic ids and checks that the warm-up leaves the parameters unchanged",
         check="warmup", enforced_by="ttt-eval",
         limits=f"tensor provenance tags are not recorded ({NO_AUDIT}); the warm-up source is what the eval "
                "report declares"),
    Rule("TTT-7", "No fitting to the targets being scored (SLOT)", "RULING #1240", "#1240", "FAIL",
         "probes P-tgt and P-pre on the packed model (--probe); adaptation spans committed (ledger)",
         check="no_slot",
         limits="without --probe only the ledger spans are checked"),
    Rule("TTT-8", "Eval state is built only from scored tokens", "OFFICIAL", "README", "FAIL",
         "ledger: no parameter change without a recorded step on committed spans; in document-independent mode "
         "a reset to the initial parameters at every new document and spans inside the document",
         check="state_from_scored", enforced_by="ttt-eval"),
    # ------------------------------------------------------------------------------ 5. metric
    Rule("MET-1", "BPB and its denominator", "OFFICIAL", "README", "FAIL",
         "ledger byte sum = the data manifest's val_bytes = the sidecar re-summed = the lookup tables rebuilt "
         "from tokenizer.model; the claimed val_bpb within 1e-6 of the ledger; val_bpb = val_loss/ln2*n/B",
         check="bpb_denominator", enforced_by="ttt-eval"),
    Rule("MET-2", "A correct byte lookup table", "OFFICIAL", "README", "FAIL",
         "lookup tables rebuilt from tokenizer.model with sentencepiece's piece APIs, compared token by token "
         "with the sidecar; per val document the sidecar sum against len(decode(ids)); a standalone '▁' piece",
         check="byte_table"),
    Rule("MET-3", "Lossless tokenizer and transforms", "OFFICIAL", "README", "FAIL",
         "<unk> ids in val re-counted; the data build's per-document check of decoded vs normalized text",
         check="lossless_tokenizer", non_record="WARN",
         limits="the raw documents are not on disk after the build: the normalized-text comparison is the data "
                "manifest's (made at build time from the corpus)"),
    Rule("MET-4", "Full coverage, each target once", "ACCEPTED", "#1835", "FAIL",
         "ledger positions against N - 1 from the shards: no subset, gap, missing tail or duplicate",
         check="coverage", enforced_by="ttt-eval"),
    Rule("MET-5", "A normalized distribution over the official token alphabet", "RULING #1902", "#1902", "FAIL",
         "probe P-norm (--probe): |logsumexp| of the scorer's vector < 1e-4, finite, and the scored NLL equal to "
         "the vector's entry at the target",
         check="normalized",
         limits="without --probe pgolf's GPT is normalized by construction (log-softmax over V): INFO"),
    Rule("MET-6", "Causality", "ACCEPTED", "#1017", "FAIL",
         "probe P-pre (--probe): changing tokens after the target leaves the vectors at <= t unchanged",
         check="causal",
         limits="without --probe: INFO"),
    Rule("MET-7", "Independence from the target", "RULING #779", "#779", "FAIL",
         "probe P-tgt (--probe): changing the target leaves the vector at t unchanged and the scored NLL of any "
         "target is read from that vector",
         check="target_independent",
         limits="the static check for targets inside cache-key expressions is not implemented: pgolf's scorer "
                "has no cache"),
    Rule("MET-8", "Document isolation at BOS for token-mixing ops", "RULING #1797", "#1797", "FAIL",
         "probe P-doc (--probe) when the packed model claims isolation (attn_doc_mask); document-independent "
         "eval isolates by windowing; flat-stream eval in val order is INFO",
         check="doc_isolation"),
    # ------------------------------------------------------------------------------ 6. statistics
    Rule("STAT-1", "At least 3 seeds from one config", "OFFICIAL", "README", "FAIL",
         "per-seed stage configs (train seed removed) and data identity agree; at least 3 distinct seeds for a "
         "record claim (several DIRs, --reference-bpb or a record-track --submission)",
         check="seeds"),
    Rule("STAT-2", "Significance against the reference", "OFFICIAL", "README", "FAIL",
         "one-sided Welch t-tests (one-sample with a single reference value) in nats and bpb: the README test "
         "(0.005 nats, p < 0.01) and the progression test (0, p < 0.25)",
         check="significance", non_record="INFO",
         limits="the reference's per-seed values must be given (--reference-bpb); the systems-only waiver is not "
                "detected"),
    Rule("STAT-3", "Every launched seed is reported", "OFFICIAL", "README", "FAIL",
         "the seeds of run.json `launches` made with the verified config against the seeds verified; WARN on a "
         "claim without a ledger",
         check="launched_seeds",
         limits="only launches recorded by `pgolf run` in the verified runs' run.json are seen"),
    Rule("STAT-4", "Reported numbers match the evidence", "OFFICIAL", "README", "FAIL",
         "eval manifest and report.json against the ledger, pack claims against the files, the train log "
         "present and hashed; with --submission, submission.json re-read against the evidence",
         check="reported_numbers"),
    # ------------------------------------------------------------------------------ 7. folder
    Rule("FMT-1", "One new folder", "OFFICIAL", "README", "FAIL",
         "(not checked)",
         not_checkable="needs the pull request's diff against the upstream base (git diff --name-status), which "
                       "pgolf never sees; the submission writer creates exactly one folder and touches nothing else"),
    Rule("FMT-2", "Required files", "OFFICIAL", "README", "FAIL",
         "the --submission folder: README.md, submission.json, train_gpt.py, one train log per seed, "
         "requirements.txt when the code imports undeclared packages",
         check="required_files"),
    Rule("FMT-3", "Runs from inside the folder", "OFFICIAL", "README", "FAIL",
         "the shipped train_gpt.py compiles; no absolute paths in its string literals",
         check="runs_in_folder",
         limits="no smoke run with the folder as working directory (it trains); pack's own tests run the file"),
    Rule("FMT-4", "Naming, schema and provenance", "ACCEPTED", "#1900", "WARN",
         "the --submission folder name is YYYY-MM-DD_Descriptive_Name; submission.json carries every pgolf field",
         check="naming",
         limits="the code sha256 is not compared against known records (no list of them ships with pgolf)"),
    Rule("FMT-5", "Core script length (core-code PRs only)", "OFFICIAL", "README", "FAIL",
         "(not checked)",
         not_checkable="applies only to pull requests that change the root train_gpt.py / train_gpt_mlx.py, "
                       "never to a records folder, which is all pgolf writes"),
)

PGOLF_CHECKS: tuple[Rule, ...] = (
    Rule("LINEAGE", "Every artifact is what its manifest and its consumers say", "PGOLF", "design.md", "FAIL",
         "every manifest's files re-hashed (size, sha256) and every input's sha256 re-computed, from the data "
         "manifest to the eval report; a mismatch FAILs even when the file can no longer be parsed",
         check="lineage"),
    Rule("AUDIT-1", "What the code does at run time", "PGOLF", "verify.md", "FAIL",
         "with --audit: the packed train_gpt.py run beside its model.bin on a slice of the eval's val data, in a "
         "fresh interpreter under sys.addaudithook: every file opened, socket, subprocess and compile of code not "
         "in the counted bytes; anything outside train_gpt.py, model.bin, the declared val data and tokenizer, "
         "Python's stdlib/site-packages and /dev, /proc, /sys FAILs naming it (SIZE-3, DATA-5, DATA-6)",
         check="runtime_audit",
         limits="code that detects the audit, native code opening files without Python's audit events, and "
                "branches the slice does not take (the full val set, several GPUs) are not seen"),
    Rule("REPRO-1", "The evaluation reproduces the ledger", "PGOLF", "verify.md", "FAIL",
         "with --reproduce: `pgolf ttt-eval` re-run from pack/model.bin on the eval's data in a fresh process with "
         "the recorded eval config; its ledger compared chunk by chunk with the claimed one (ranges, byte sums, "
         "per-token loss digests and nll sums: bit-identical on CPU with the same torch build, else within a "
         "relative tolerance) and its val_bpb with the claimed one",
         check="reproduction",
         limits="training is not re-executed here (see REPRO-2); a CUDA eval cannot be "
                "re-executed on a machine without CUDA (WARN with the command); a TTT run whose clock stopped "
                "adaptation is compared up to that chunk"),
    Rule("REPRO-2", "The training reproduces the loss curve and the weights", "PGOLF", "verify.md", "FAIL",
         "with --reproduce-train: `pgolf train` re-run in a fresh process from the train manifest's recorded config "
         "on the data its lineage names (CPU); the logged losses (metrics.jsonl) compared step by step and the "
         "weights (model.safetensors) tensor by tensor: bit-identical when the run was a one-process CPU run with "
         "this torch build, else within a documented tolerance",
         check="train_reproduction",
         limits="CUDA and multi-rank runs, runs stopped by their clock and runs over the time cap (600 s) are not "
                "re-trained here (WARN with the command to run); a run that is not deterministic on its own "
                "hardware can only be compared within the tolerance"),
    Rule("CONTAM-1", "The model is not fitted to validation", "PGOLF", "verify.md", "FAIL",
         "contamination probe (--probe) for DATA-3 and TTT-1 (val in training, pre-quantization TTT as flagged in "
         "#366 and #1406): the packed model's bpb on val documents against documents of the data build's "
         "held-out split, which no stage reads, each in excess of a unigram model; a gap beyond a margin and its "
         "document-bootstrap bound FAILs",
         check="validation_fit",
         limits="needs a data directory with a held-out split (built by this `pgolf data build`; official shards "
                "have none: WARN); a fit smaller than the margin (0.03 bpb) or than the sampling noise of the "
                "documents is not seen; without --probe: INFO"),
)

RULES: Mapping[str, Rule] = {r.id: r for r in _RULES}
ALL: Mapping[str, Rule] = {r.id: r for r in (*_RULES, *PGOLF_CHECKS)}


def rule(rule_id: str) -> Rule:
    return ALL[rule_id]
