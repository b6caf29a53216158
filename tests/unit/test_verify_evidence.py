"""A legal run's evidence, built in memory, passes every check; the factory the check tests plant into.

`legal_seed()` is self-consistent: a synthetic val stream with its byte sidecar, a score ledger
written by pgolf's own `ScoreLedger` (score-first TTT steps on committed spans), stage manifests
as the stages write them (8xH100 env, 590 s training, 400 s eval), a clean submission file.
"""

import copy
import math

import numpy as np

from pgolf.eval.ledger import ScoreLedger, parse_ledger
from pgolf.verify.checks import run_checks
from pgolf.verify.evidence import (
    DataFacts,
    Evidence,
    FileFact,
    InputFact,
    LedgerFacts,
    Options,
    PaidPrefixFacts,
    SeedEvidence,
    StageFacts,
)
from pgolf.verify.facts import data_facts
from pgolf.verify.rules import ALL, FAIL

H100 = {"python": "3.12", "torch": "2.11.0", "cuda": "12.8", "device": "cuda", "world_size": 8,
        "gpu": "NVIDIA H100 80GB HBM3", "gpu_count": 8}
LEGAL_CODE = '''import lzma, base64, json
from pathlib import Path
import numpy as np
import torch
SRC = base64.b85encode(lzma.compress(b"print('hi')")) if False else None
def main():
    blob = Path("model.bin").read_bytes()
    print(len(blob), json.dumps({}), np.pi, torch.__version__)
if __name__ == "__main__":
    main()
'''


def stage(kind, *, config=None, metrics=None, timing=None, env=None, seed=None, files=(), inputs=()) -> StageFacts:
    """A stage whose files and inputs all match their manifest."""
    file_facts = [FileFact(name, size, f"sha-{kind}-{name}", size, f"sha-{kind}-{name}") for name, size in files]
    input_facts = [InputFact(k, f"../{k}/manifest.json", f"sha-{k}", f"sha-{k}", f"/run/{k}/manifest.json")
                   for k in inputs]
    manifest = {"kind": kind, "config": config or {}, "metrics": metrics or {}, "timing": timing or {},
                "env": env if env is not None else dict(H100), "seed": seed}
    return StageFacts(kind, f"/run/{kind}", manifest, files=file_facts, inputs=input_facts,
                      manifest_sha256=f"sha-{kind}")


def stream(num_docs=40, seed=0) -> tuple[np.ndarray, np.ndarray]:
    """Val tokens (documents of 20..80 tokens, each led by BOS = 1) and their byte sidecar."""
    rng = np.random.default_rng(seed)
    docs = [np.concatenate(([1], rng.integers(4, 200, rng.integers(20, 80)))) for _ in range(num_docs)]
    tokens = np.concatenate(docs).astype(np.uint16)
    side = rng.integers(1, 5, tokens.shape[0]).astype(np.int32)
    side[tokens == 1] = 0
    return tokens, side


def ttt_ledger(tokens: np.ndarray, side: np.ndarray, chunk=400, epochs=2, seed=0, doc_independent=False) -> str:
    """A ledger as score-first TTT writes it: commit a chunk, then steps on committed spans."""
    rng = np.random.default_rng(seed)
    P = tokens.shape[0] - 1
    ledger = ScoreLedger(P, "params-0", {"mode": "ttt", "num_tokens": int(tokens.shape[0]),
                                        "config": {"doc_independent": doc_independent, "compile": False}})
    params = "params-0"
    starts = list(range(0, P, chunk))
    for k, a in enumerate(starts):
        b = min(a + chunk, P)
        ledger.commit(a, b, rng.uniform(1.0, 4.0, b - a).astype(np.float32), side[a + 1 : b + 1], params, params)
        if k == len(starts) - 1:
            ledger.mark("last")
            continue
        for e in range(epochs):
            ledger.record_step([(a, b)], epoch=e, lr=0.002)
        if epochs:
            params = f"params-{k + 1}"
        else:
            ledger.mark("none")
    return ledger.to_jsonl()


def ledger_facts(text: str) -> LedgerFacts:
    header, entries, summary = parse_ledger(text)
    return LedgerFacts(header=header, entries=entries, summary=summary)


def legal_seed(seed=42, num_docs=40, code=LEGAL_CODE) -> SeedEvidence:
    tokens, side = stream(num_docs)
    facts: DataFacts = data_facts(tokens, side, None)
    facts.lut_bytes, facts.lut_sidecar_mismatch = facts.sidecar_bytes, 0
    facts.docs_checked, facts.docs_decode_mismatch = num_docs, 0
    facts.unknown_tokens, facts.standalone_space, facts.vocab_size = 0, True, 1024
    facts.train_tokens, facts.overlap_docs = 50_000, 0
    facts.train_sources = ["../data/fineweb_train_000000.bin"]  # every training shard named, scanned
    led = ledger_facts(ttt_ledger(tokens, side))
    nll = math.fsum(e.nll_sum for e in led.entries)
    count = sum(e.count for e in led.entries)
    B = facts.sidecar_bytes
    s = SeedEvidence(label=f"s{seed}", root=f"/run{seed}/eval")
    s.stages["data"] = stage("data", config={"val_docs": num_docs, "corpus": ["web.jsonl"]}, metrics={
        "val_tokens": int(tokens.shape[0]), "val_docs": num_docs, "val_bytes": B, "val_bytes_lut": B,
        "val_bytes_raw": B + 17, "val_doc_range": [0, num_docs], "train_doc_range": [num_docs, num_docs + 900],
        "val_docs_sha256": "v", "train_docs_sha256": "t", "tokenizer_sha256": "k", "bos_id": 1,
        "bpb_check": {"docs_sidecar_vs_normalized": 0, "consistent": True}},
        files=[("fineweb_val_000000.bin", 2048), ("bytes_val_000000.bin", 2048), ("tokenizer.model", 100)])
    s.stages["train"] = stage("train", seed=seed, config={"seed": seed, "val_every": 0, "iterations": 20000,
                                                           "model": {"num_layers": 11, "model_dim": 512}},
                              metrics={"steps": 5000, "weights": "ema", "params": 27_000_000},
                              timing={"train_time_s": 590.2, "last_step_s": 0.12, "stop_reason": "wallclock"},
                              files=[("model.safetensors", 10), ("metrics.jsonl", 10), ("log.txt", 10)],
                              inputs=["data"])
    s.stages["quant"] = stage("quant", seed=seed, config={"scheme": "int6", "gptq": True, "calib": "train",
                                                          "calib_tokens": 131072},
                              timing={"calib_s": 6.5}, files=[("quant.safetensors", 10)], inputs=["train"])
    s.stages["pack"] = stage("pack", seed=seed, config={"codec": "brotli"},
                             metrics={"code_bytes": 30_000, "model_bytes": 15_900_000, "total_bytes": 15_930_000},
                             files=[("model.bin", 15_900_000), ("train_gpt.py", 30_000)], inputs=["quant"])
    s.stages["eval"] = stage("eval", seed=seed, config={"mode": "ttt", "compile": False},
                             metrics={"mode": "ttt", "val_loss": nll / count, "val_bpb": nll / (math.log(2) * B),
                                      "val_tokens": count, "val_bytes": B, "eval_time_s": 401.0},
                             files=[("report.json", 10), ("ledger.jsonl.zst", 10)], inputs=["pack", "data"])
    s.data, s.ledger, s.code = facts, led, code
    s.eval_report = {"val_bpb": nll / (math.log(2) * B), "val_loss": nll / count}
    s.paid_prefix = PaidPrefixFacts(ngram=32, sampled=60, hits={})
    return s


def legal_evidence(seeds=(42,), **options) -> Evidence:
    return Evidence([legal_seed(x) for x in seeds], Options(**options))


def verdicts(ev: Evidence, rule_id: str) -> set[str]:
    return {r.verdict for r in run_checks(ev) if r.id == rule_id}


def fails(ev: Evidence) -> set[str]:
    return {r.id for r in run_checks(ev) if r.verdict == FAIL}


def clone(ev: Evidence) -> Evidence:
    return copy.deepcopy(ev)


# ----------------------------------------------------------------------------- the legal run passes


def test_legal_evidence_fails_nothing_and_covers_every_rule():
    results = run_checks(legal_evidence())
    assert not [r.line() for r in results if r.verdict == FAIL]
    assert {r.id for r in results} == set(ALL)
    by_id = {r.id: r for r in results}
    assert by_id["SIZE-1"].verdict == "PASS" and "15,930,000 <= 16,000,000" in by_id["SIZE-1"].detail
    assert by_id["TIME-1"].verdict == "PASS" and by_id["TIME-4"].verdict == "PASS"
    assert by_id["MET-4"].verdict == "PASS" and by_id["TTT-1"].verdict == "PASS"


def test_three_legal_seeds_of_one_config_pass_stat_1():
    ev = legal_evidence((1, 2, 3), claim=True)
    assert verdicts(ev, "STAT-1") == {"PASS"}
    assert verdicts(ev, "STAT-3") == {"WARN"}  # no launch ledger: the rulebook's WARN on a claim
    assert not fails(ev)


def test_development_run_on_cpu_warns_instead_of_failing():
    ev = legal_evidence()
    for s in ev.seeds[0].stages.values():
        s.manifest["env"] = {"device": "cpu", "world_size": 1, "cpu": "x86_64"}
    ev.seeds[0].stages["eval"].manifest["metrics"]["eval_time_s"] = 3000.0  # CPU time says nothing
    assert verdicts(ev, "TIME-4") == {"WARN"} and verdicts(ev, "TIME-3") == {"WARN"}
    assert not fails(ev)
