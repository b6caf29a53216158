"""`pgolf verify --reproduce` on a tiny run: the legal run reproduces bit for bit (REPRO-1 PASS); a ledger
whose every chunk NLL was scaled by 0.95, with every claim and hash recomputed to match, passes every
file check but FAILs REPRO-1 (exit 3)."""

import json
import math
import time

import pytest
from test_verify_support import checks_with_id, copy_run, edit_manifest, ledger_lines, rehash, verify_json, write_ledger

from pgolf import artifacts

pytestmark = pytest.mark.slow


def test_legal_run_reproduces(legal_run, tmp_path):
    t0 = time.perf_counter()
    plain, plain_doc = verify_json(legal_run, "--out", tmp_path / "v0")
    plain_s = time.perf_counter() - t0
    plain_checks = checks_with_id(plain_doc, "REPRO-1")
    assert [c["verdict"] for c in plain_checks] == ["INFO"] and "pass --reproduce" in plain_checks[0]["detail"]
    t0 = time.perf_counter()
    result, doc = verify_json(legal_run, "--reproduce", "--out", tmp_path / "v1")
    seconds = time.perf_counter() - t0
    print(f"tiny run: verify {plain_s:.1f} s, verify --reproduce {seconds:.1f} s")
    assert result.exit_code == plain.exit_code == 0, result.output
    [check] = checks_with_id(doc, "REPRO-1")
    assert check["verdict"] == "PASS", check
    print(check["detail"])
    assert "bit-identical" in check["detail"] and "reproduced" in check["detail"]
    assert doc["options"]["reproduce"] is True


def test_scaled_ledger_with_every_claim_recomputed_fails(legal_run, tmp_path):
    run = copy_run(legal_run, tmp_path / "run")
    lines = ledger_lines(run)
    for x in lines:
        if x["kind"] == "chunk":
            x["nll_sum"] *= 0.95
    summary = lines[-1]
    assert summary["kind"] == "summary"
    nll = math.fsum(x["nll_sum"] for x in lines if x["kind"] == "chunk")
    summary.update(nll_sum=nll, val_loss=nll / summary["val_tokens"],
                   val_bpb=nll / (math.log(2.0) * summary["val_bytes"]))
    claims = {"val_loss": summary["val_loss"], "val_bpb": summary["val_bpb"]}
    report = run / "eval" / "report.json"
    doc = json.loads(report.read_text())
    doc.update(claims)
    report.write_text(json.dumps(doc))
    write_ledger(run, lines, claims)  # ledger + eval manifest metrics, eval hashes re-done
    edit_manifest(run / "eval", lambda m: m["metrics"].update(claims))
    rehash(run, ("eval",))

    forged, forged_doc = verify_json(run, "--out", tmp_path / "v0")  # the files alone: the forgery passes
    assert forged.exit_code == 0 and forged_doc["ok"], [c for c in forged_doc["checks"] if c["verdict"] == "FAIL"]
    assert forged_doc["val_bpb"] == pytest.approx(claims["val_bpb"], abs=1e-9)

    result, doc = verify_json(run, "--reproduce", "--out", tmp_path / "v1")
    assert result.exit_code == 3, result.output
    [check] = checks_with_id(doc, "REPRO-1")
    print(check["detail"])
    assert check["verdict"] == "FAIL" and "chunk 0 [0," in check["detail"] and "claimed nll" in check["detail"]
    assert {c["id"] for c in doc["checks"] if c["verdict"] == "FAIL"} == {"REPRO-1"}
    assert artifacts.read_manifest(run / "eval").metrics["val_bpb"] == claims["val_bpb"]


def test_cuda_eval_without_cuda_here_warns_with_the_command(legal_run, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the eval would be re-executed")
    run = copy_run(legal_run, tmp_path / "run")
    edit_manifest(run / "eval", lambda m: m["env"].update(device="cuda", world_size=8, gpu="NVIDIA H100 80GB HBM3",
                                                          gpu_count=8))
    rehash(run, ("eval",))
    result, doc = verify_json(run, "--reproduce", "--out", tmp_path / "v")
    [check] = checks_with_id(doc, "REPRO-1")
    assert check["verdict"] == "WARN" and "no CUDA" in check["detail"]
    assert "torchrun --standalone --nproc_per_node=8 -m pgolf ttt-eval" in check["detail"]
    assert "--device cuda" in check["detail"] and "mode=" in check["detail"] and "--out OUT" in check["detail"]


def test_pipeline_verify_table_takes_reproduce(tmp_path):
    from pgolf.stages.run import load_pipeline, verify_options

    cfg = tmp_path / "p.toml"
    cfg.write_text('[data]\nval_docs = 50\n\n[train]\npreset = "tiny"\n\n[verify]\nreproduce = true\n')
    assert verify_options(load_pipeline(cfg).verify).reproduce is True
