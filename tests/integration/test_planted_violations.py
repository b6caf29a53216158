"""The planted-violation suite: one case per rule a careless or forging entrant breaks, each planted the way
they would (edit the file, re-hash it in its manifest and in every manifest downstream: `rehash_lineage`),
each asserting exit 3 AND the rule that catches it (never a hash mismatch: LINEAGE stays clean).

Index (case -> rule; docs/verify.md "The planted-violation suite" has the same table):

    here                                                         rule
    per-chunk NLLs scaled by 0.95, every claim recomputed        REPRO-1 (--reproduce)
    the minimum over two passes merged into one ledger            REPRO-1 (--reproduce)
    model.bin swapped after the eval                             REPRO-1 (--reproduce)
    training on val copied into a manifest-less directory        DATA-2
    training data built with fewer val docs (val docs in train)  DATA-2 (record track)
    GPTQ calibration on the val shard minus one token            DATA-7
    train_time_s edited below the limit, log.txt disagrees       TIME-1
    env claiming 8xH100 beside a CPU torch                       TIME-4
    a record claim on a 25-document val set                      DATA-1 (record track)
    code scan: np.fromfile of an uncounted side file             SIZE-3
    code scan: torch.hub                                         DATA-6, SIZE-3
    code scan: obfuscated exec (getattr(__builtins__, "ex"+"ec")) SIZE-3
    code scan: a loader glob built by concatenation              DATA-3
    code scan: a local module imported                           SIZE-3
    code scan: a download by subprocess (curl, pip install)      DATA-6, SIZE-4
    audit: a side file opened by a name built at run time        AUDIT-1 (--audit)
    audit: exec of a string read from a file at run time         AUDIT-1 (--audit)
    audit: a subprocess                                          AUDIT-1 (--audit)
    audit: a socket connect                                      AUDIT-1 (--audit)
    legal: pgolf's own packed train_gpt.py under the audit       AUDIT-1 PASS, 0 FAIL

    elsewhere (the same rule is asserted in the file named)
    pre-quantization TTT on val (a model fitted to validation)   CONTAM-1  tests/integration/test_verify_contamination.py
    --reproduce-train: a model tuned on val, re-trained          REPRO-2  tests/integration/test_verify_reproduce_train.py
    a launched seed left out of the verified set (launch log)    STAT-3   tests/integration/test_verify_launches.py
    an adapter that reads the committed view's private buffer    (by construction: it raises)
                                                                          tests/unit/test_eval_ttt.py
"""

import json
import math
import shutil
import socket
import sys
from pathlib import Path

import pytest
from test_verify_support import build_run, edit_manifest, ledger_lines, rehash, write_ledger
from typer.testing import CliRunner

from pgolf import artifacts
from pgolf.artifacts import data as datadir
from pgolf.cli import app

pytestmark = pytest.mark.slow  # one legal tiny run per module, copied per case
runner = CliRunner()
STAGES = ("data", "train", "quant", "pack", "eval")


@pytest.fixture(scope="module")
def legal_run(tmp_path_factory, embedded_data, tiny_train):
    return build_run(tmp_path_factory.mktemp("planted") / "run", embedded_data, tiny_train)


@pytest.fixture
def run(legal_run, tmp_path) -> Path:
    """A private copy of the legal run to plant a violation in."""
    return Path(shutil.copytree(legal_run, tmp_path / "run"))


def rehash_lineage(run_dir: Path) -> None:
    """What a forger does after an edit: every stage's files re-hashed into its manifest, every manifest
    into its consumers' inputs (in pipeline order), and the pack's byte claims made to match the files."""
    present = tuple(k for k in STAGES if (run_dir / k / "manifest.json").is_file())
    if "pack" in present:
        pack = run_dir / "pack"
        code, model = (pack / "train_gpt.py").stat().st_size, (pack / "model.bin").stat().st_size
        model_sha = artifacts.sha256_file(pack / "model.bin")
        edit_manifest(pack, lambda m: m["metrics"].update(code_bytes=code, model_bytes=model,
                                                          total_bytes=code + model, model_sha256=model_sha))
        if "eval" in present:
            edit_manifest(run_dir / "eval", lambda m: m["metrics"].update(model_sha256=model_sha))
    rehash(run_dir, present)


def verify(*args):
    result = runner.invoke(app, ["verify", *map(str, args), "--json"])
    assert result.stdout.strip().startswith("{"), result.output
    return result, json.loads(result.stdout)


def failing(doc) -> set[str]:
    return {c["id"] for c in doc["checks"] if c["verdict"] == "FAIL"}


def details(doc, rule_id: str) -> str:
    return " | ".join(c["detail"] for c in doc["checks"] if c["id"] == rule_id)


def caught(run_dir: Path, rule_id: str, *flags, out: Path | None = None) -> dict:
    """verify exits 3, `rule_id` FAILs, and the lineage is intact (the violation, not a broken hash)."""
    result, doc = verify(run_dir, *flags, "--out", out or run_dir.parent / "verify-out")
    assert result.exit_code == 3, result.output
    assert rule_id in failing(doc), (rule_id, failing(doc))
    assert "LINEAGE" not in failing(doc), details(doc, "LINEAGE")
    return doc


def forge_ledger(run_dir: Path, fn) -> None:
    """Rewrite the ledger's chunk NLLs with fn(chunk lines), recompute the summary and every claim, re-hash."""
    lines = ledger_lines(run_dir)
    fn([x for x in lines if x["kind"] == "chunk"])
    summary = lines[-1]
    nll = math.fsum(x["nll_sum"] for x in lines if x["kind"] == "chunk")
    summary.update(nll_sum=nll, val_loss=nll / summary["val_tokens"],
                   val_bpb=nll / (math.log(2.0) * summary["val_bytes"]))
    claims = {"val_loss": summary["val_loss"], "val_bpb": summary["val_bpb"]}
    report = run_dir / "eval" / "report.json"
    report.write_text(json.dumps({**json.loads(report.read_text()), **claims}))
    write_ledger(run_dir, lines, claims)
    rehash_lineage(run_dir)


# ============================================================================ the legal run


def test_the_legal_run_passes_and_its_code_passes_the_audit(legal_run, tmp_path):
    result, doc = verify(legal_run, "--audit", "--out", tmp_path / "v")
    assert result.exit_code == 0, [c for c in doc["checks"] if c["verdict"] == "FAIL"]
    assert not failing(doc)
    audit = [c for c in doc["checks"] if c["id"] == "AUDIT-1"]
    assert [c["verdict"] for c in audit] == ["PASS"], audit
    assert "no network, no process" in audit[0]["detail"]
    for rule in ("SIZE-3", "DATA-3", "DATA-6"):  # the static scan of pgolf's own file: nothing to say
        assert {c["verdict"] for c in doc["checks"] if c["id"] == rule} == {"PASS"}, rule
    plain, plain_doc = verify(legal_run, "--out", tmp_path / "v2")
    assert [c["verdict"] for c in plain_doc["checks"] if c["id"] == "AUDIT-1"] == ["INFO"]


# ============================================================================ forged ledgers, a swapped model


def test_scaled_chunk_nlls_with_claims_recomputed(run):
    def scale(chunks):
        for x in chunks:
            x["nll_sum"] *= 0.95
    forge_ledger(run, scale)
    doc = caught(run, "REPRO-1", "--reproduce")
    assert failing(doc) == {"REPRO-1"}  # every file check passes the forgery


def test_minimum_over_two_passes_merged_into_one_ledger(run):
    def merge_min(chunks):
        # a second pass (here: another trajectory whose odd chunks came out 3% lower) merged chunk by chunk
        for i, x in enumerate(chunks):
            x["nll_sum"] = min(x["nll_sum"], x["nll_sum"] * (0.97 if i % 2 == 0 else 1.01))
    forge_ledger(run, merge_min)
    doc = caught(run, "REPRO-1", "--reproduce")
    assert "chunk 0" in details(doc, "REPRO-1")


def test_swapped_model(run):
    """model.bin replaced after the eval by another model (here: every row scale cut by a fifth, as a
    retrained or re-quantized model would differ), and every hash redone: only the re-execution sees it."""
    from pgolf.pack import decode_model, encode_model

    tensors, meta = decode_model((run / "pack" / "model.bin").read_bytes())
    other = {k: (v * 0.8).to(v.dtype) if k.endswith(".scale") else v for k, v in tensors.items()}
    (run / "pack" / "model.bin").write_bytes(encode_model(other, meta, "zstd"))
    rehash_lineage(run)
    doc = caught(run, "REPRO-1", "--reproduce")
    assert "SIZE-5" not in failing(doc)  # the eval's input hash was redone


# ============================================================================ data provenance


def _train_read(run: Path, shards: list[Path], data_manifest: Path | None = None) -> None:
    """The train manifest as the trainer writes it had it read `shards` (and the data dir of `data_manifest`)."""
    def point(m):
        keep = [e for e in m["inputs"] if e["kind"] not in ("train_shard",) and
                (data_manifest is None or e["kind"] != "data")]
        extra = [artifacts.input_entry("data", data_manifest, run / "train")] if data_manifest is not None else []
        m["inputs"] = keep + extra + [{**artifacts.input_entry("train_shard", s, run / "train"),
                                       "tokens": datadir.read_header(s)} for s in shards]
    edit_manifest(run / "train", point)
    rehash_lineage(run)


def test_training_on_val_copied_into_a_manifest_less_directory(run, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    shutil.copy(run / "data" / "fineweb_val_000000.bin", bad / "fineweb_train_000000.bin")
    _train_read(run, [bad / "fineweb_train_000000.bin"])
    doc = caught(run, "DATA-2")
    assert "bad/fineweb_train_000000.bin" in details(doc, "DATA-2")


def test_training_data_built_with_fewer_val_docs(run, embedded_data, tmp_path):
    from pgolf.data.config import DataConfig
    from pgolf.stages import data

    small = tmp_path / "small"
    data.build(DataConfig(val_docs=10, tokenizer=str(embedded_data / "tokenizer.model")), small)
    _train_read(run, datadir.list_shards(small, "train"), small / "manifest.json")
    doc = caught(run, "DATA-2", "--track", "10min_16mb")
    assert "of 50 val documents occur verbatim in the training data" in details(doc, "DATA-2")


def test_gptq_calibration_on_val_minus_one_token(run, tmp_path):
    calib = tmp_path / "calib"
    calib.mkdir()
    val = datadir.load_val_tokens(run / "data")
    datadir.write_shard(calib / "fineweb_train_000000.bin", val[:-1])
    q = tmp_path / "quant"
    res = runner.invoke(app, ["quantize", str(run / "train"), "--out", str(q), "--set", "gptq=true",
                              "--set", f"calib_tokens={len(val) - 1}", "--calib-data", str(calib)])
    assert res.exit_code == 0, res.output
    doc = caught(q, "DATA-7")
    assert "GPTQ calibration" in details(doc, "DATA-7")


# ============================================================================ self-attested records


def test_train_time_edited_below_the_limit_while_the_log_disagrees(run):
    edit_manifest(run / "train", lambda m: m["timing"].update(train_time_s=m["timing"]["train_time_s"] / 4 - 1))
    rehash_lineage(run)
    doc = caught(run, "TIME-1")
    assert "records disagree" in details(doc, "TIME-1")


def test_env_claiming_8xh100_beside_a_cpu_torch(run):
    edit_manifest(run / "train", lambda m: m["env"].update(device="cuda", gpu="NVIDIA H100 80GB HBM3", gpu_count=8,
                                                           world_size=8, torch="2.13.0+cpu"))
    rehash_lineage(run)
    doc = caught(run, "TIME-4")
    assert "torch is a CPU build" in details(doc, "TIME-4")


def test_record_claim_on_a_25_document_val_set(run, embedded_data):
    from pgolf.data.config import DataConfig
    from pgolf.stages import data

    shutil.rmtree(run / "data")
    data.build(DataConfig(val_docs=25, tokenizer=str(embedded_data / "tokenizer.model")), run / "data")
    shutil.rmtree(run / "eval")
    res = runner.invoke(app, ["ttt-eval", str(run / "pack"), "--data", str(run / "data"), "--out", str(run / "eval"),
                              "--set", "mode=sliding", "--set", "seq_len=128", "--set", "stride=128",
                              "--set", "time_budget_s=0", "--set", "autocast=false"])
    assert res.exit_code == 0, res.output
    rehash_lineage(run)
    doc = caught(run, "DATA-1", "--track", "10min_16mb")
    assert "25" in details(doc, "DATA-1")


# ============================================================================ the static code scan


def plant_code(run: Path, text: str, side: dict[str, bytes] | None = None) -> None:
    """Replace the shipped train_gpt.py (and ship side files beside it), as an entrant edits their file."""
    (run / "pack" / "train_gpt.py").write_text(text)
    for name, data in (side or {}).items():
        (run / "pack" / name).write_bytes(data)
    rehash_lineage(run)


def packed(run: Path) -> str:
    return (run / "pack" / "train_gpt.py").read_text()


@pytest.mark.parametrize(("case", "head", "rules"), [
    ("np.fromfile of a side file", 'import numpy as np\n_LUT = np.fromfile("lut_extra.bin", dtype=np.uint8)\n',
     {"SIZE-3"}),
    ("torch.hub", 'import torch\n_m = torch.hub.load_state_dict_from_url("https://example.com/w.pt")\n', {"DATA-6"}),
    ("obfuscated exec", '_r = getattr(__builtins__, "ex" + "ec")\n_r("X = 1")\n', {"SIZE-3"}),
    ("a glob built by concatenation", 'import glob, os\n_D = os.environ.get("DATA_PATH", "data")\n'
                                      '_ALL = glob.glob(_D + "/*.bin")\n', {"DATA-3"}),
    ("a local module", "import golf_helpers\n", {"SIZE-3"}),
    ("a download by subprocess", 'import subprocess\nsubprocess.run(["curl", "-sLo", "w.bin", "https://x/w.bin"])\n',
     {"DATA-6"}),
    ("pip install at run time", 'import os\nos.system("pip install brotli")\n', {"SIZE-4", "DATA-6"}),
])
def test_code_scan_catches(run, case, head, rules):
    side = {"golf_helpers.py": b"X = 1\n"} if "local module" in case else None
    plant_code(run, head + packed(run), side)
    result, doc = verify(run, "--out", run.parent / "v")
    assert result.exit_code == 3, (case, result.output)
    assert rules <= failing(doc), (case, failing(doc))
    assert "LINEAGE" not in failing(doc) and "SIZE-2" not in failing(doc), case


# ============================================================================ the run-time audit


def _unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


AUDIT_CASES = {
    # the name is assembled at run time: the static scan cannot fold it, the audit sees the open
    "side file": ('import os\n_P = os.path.join(os.path.dirname(os.path.abspath(__file__)), "".join(reversed('
                  '"nib.artxe")))\n_W = open(_P, "rb").read()\n', {"extra.bin": b"\x00" * 64}, "opened", "extra.bin"),
    "exec of a string read at run time": ('import os\n_H = os.path.dirname(os.path.abspath(__file__))\n'
                                          '_src = open(os.path.join(_H, "he" + "lp.txt")).read()\nexec(_src)\n',
                                          {"help.txt": b"HIDDEN = 42\n"}, "compiled code", "HIDDEN = 42"),
    "subprocess": (f"import subprocess\nsubprocess.run([{sys.executable!r}, '-c', 'pass'])\n", None,
                   "started processes", "subprocess.Popen"),
    "socket": (None, None, "used the network", "socket.connect"),
}


@pytest.mark.parametrize("case", list(AUDIT_CASES))
def test_audit_catches(run, case):
    head, side, words, needle = AUDIT_CASES[case]
    if head is None:  # a connection to a port nothing listens on: no internet needed, refused at once
        head = (f"import socket\n_s = socket.socket()\n_s.settimeout(1)\ntry:\n    _s.connect(('127.0.0.1', "
                f"{_unused_port()}))\nexcept OSError:\n    pass\n")
    plant_code(run, head + "raise SystemExit(0)\n", side)  # the bad act is enough; the eval after it is not needed
    doc = caught(run, "AUDIT-1", "--audit")
    found = details(doc, "AUDIT-1")
    assert words in found and needle in found, found
