"""One planted violation per rule (rules.md "Plant:" lines), each caught by the right check id.

Every test starts from the legal evidence of test_verify_evidence and plants one violation in
memory; a FAIL means `pgolf verify` exits 3 (tests/integration/test_verify_run.py checks the exit
codes on disk).
"""

import dataclasses
import math

import numpy as np
import pytest
from test_verify_evidence import ledger_facts, legal_evidence, stage, stream, ttt_ledger, verdicts

from pgolf.eval.ledger import AdaptStep
from pgolf.verify.checks import run_checks
from pgolf.verify.evidence import TRACKS, FolderFacts, InputFact, LaunchFacts, Options, ProbeFacts
from pgolf.verify.facts import paid_prefix


def detail(ev, rule_id) -> str:
    return " | ".join(r.detail for r in run_checks(ev) if r.id == rule_id)


def _pack(ev, code_bytes, model_bytes, claimed_code=None):
    pack = ev.seeds[0].stages["pack"]
    pack.files = [dataclasses.replace(f, bytes=model_bytes, listed_bytes=model_bytes) if f.path == "model.bin" else
                  dataclasses.replace(f, bytes=code_bytes, listed_bytes=code_bytes) for f in pack.files]
    claimed = code_bytes if claimed_code is None else claimed_code
    pack.manifest["metrics"] = {"code_bytes": claimed, "model_bytes": model_bytes, "total_bytes": claimed + model_bytes}


# ============================================================================ size


@pytest.mark.parametrize("model_bytes, verdict", [(15_968_001, "FAIL"), (15_968_000, "PASS")])
def test_size_1_decimal_cap(model_bytes, verdict):
    ev = legal_evidence()
    _pack(ev, 32_000, model_bytes)
    assert verdicts(ev, "SIZE-1") == {verdict}
    if verdict == "FAIL":
        assert "16,000,001 > 16,000,000 (code 32,000 + model 15,968,001)" in detail(ev, "SIZE-1")


def test_size_1_mib_is_not_the_cap_and_max_bytes_overrides():
    ev = legal_evidence()
    _pack(ev, 40_000, 16_632_358)  # 16,672,358 = "15.9 MB" in MiB (ARGPTQ's target)
    assert verdicts(ev, "SIZE-1") == {"FAIL"}
    ev.options = Options(max_bytes=17_000_000)
    assert verdicts(ev, "SIZE-1") == {"PASS"}


def test_size_2_claimed_code_bytes_must_be_the_shipped_file():
    ev = legal_evidence()
    _pack(ev, 158_429, 15_950_000, claimed_code=31_999)
    assert verdicts(ev, "SIZE-2") == {"FAIL"} and "claims code_bytes 31,999" in detail(ev, "SIZE-2")
    assert verdicts(ev, "SIZE-1") == {"FAIL"}  # the shipped file is what counts: 16,108,429


def test_size_3_exec_of_an_uncounted_side_file():
    ev = legal_evidence()
    ev.seeds[0].code = 'exec(open("side.py").read())\n'
    assert verdicts(ev, "SIZE-3") == {"FAIL"}


def test_size_4_undeclared_import_warns():
    ev = legal_evidence()
    ev.seeds[0].code = "import brotli\nprint(brotli.compress(b''))\n"
    assert verdicts(ev, "SIZE-4") == {"WARN"} and "brotli" in detail(ev, "SIZE-4")
    ev.folder = FolderFacts("2026-05-02_X", {}, {}, requirements=("brotli==1.1",))
    assert verdicts(ev, "SIZE-4") == {"PASS"}


def test_size_5_eval_scored_another_blob():
    ev = legal_evidence()
    inp = ev.seeds[0].stages["eval"].inputs[0]
    ev.seeds[0].stages["eval"].inputs[0] = dataclasses.replace(inp, expected="sha-of-the-pack-before-pruning")
    assert verdicts(ev, "SIZE-5") == {"FAIL"}
    assert "FAIL" in verdicts(ev, "LINEAGE")


def test_size_5_truncated_model_bin():
    ev = legal_evidence()
    pack = ev.seeds[0].stages["pack"]
    pack.files = [dataclasses.replace(f, bytes=100, sha256="other") if f.path == "model.bin" else f for f in pack.files]
    assert verdicts(ev, "SIZE-5") == {"FAIL"} and "FAIL" in verdicts(ev, "LINEAGE")


# ============================================================================ time


def test_time_1_forced_stop_and_overrun():
    ev = legal_evidence()
    ev.seeds[0].stages["train"].manifest["timing"].update(stop_reason="FORCE_STOP_STEP", train_time_s=601.153)
    assert verdicts(ev, "TIME-1") == {"FAIL"}
    assert "FORCE_STOP_STEP" in detail(ev, "TIME-1") and "601.153 s > 600 s" in detail(ev, "TIME-1")


def test_time_1_overshoot_within_a_step_is_info():
    ev = legal_evidence()
    ev.seeds[0].stages["train"].manifest["timing"].update(train_time_s=600.038)
    assert verdicts(ev, "TIME-1") == {"INFO"}


def test_time_2_train_data_calibration_past_the_clock():
    ev = legal_evidence()
    ev.seeds[0].stages["train"].manifest["timing"]["train_time_s"] = 594.0
    ev.seeds[0].stages["quant"].manifest["timing"]["calib_s"] = 6.4  # ends at 600.4 s
    assert verdicts(ev, "TIME-2") == {"FAIL"}
    ev.seeds[0].stages["quant"].manifest["config"]["calib"] = "self"  # no data read: contested, WARN
    assert verdicts(ev, "TIME-2") == {"WARN"}


def test_time_3_eval_over_the_limit():
    ev = legal_evidence()
    ev.seeds[0].stages["eval"].manifest["metrics"]["eval_time_s"] = 700.0
    assert verdicts(ev, "TIME-3") == {"FAIL"}
    # on other hardware an explicit limit still judges it
    for s in ev.seeds[0].stages.values():
        s.manifest["env"] = {"device": "cpu", "world_size": 1}
    assert verdicts(ev, "TIME-3") == {"WARN"}
    ev.options = Options(max_eval_s=600.0, explicit_eval=True)
    assert verdicts(ev, "TIME-3") == {"FAIL"}


def test_time_4_record_hardware_on_the_record_track():
    ev = legal_evidence(strict=True)
    ev.seeds[0].stages["train"].manifest["env"]["world_size"] = 4
    assert "FAIL" in verdicts(ev, "TIME-4")
    ev.options = Options()  # an unclaimed development run: WARN
    assert verdicts(ev, "TIME-4") == {"PASS", "WARN"}


def test_time_1_manifest_clock_must_agree_with_the_runs_own_logs():
    """A train_time_s edited below the limit while metrics.jsonl and log.txt say otherwise."""
    ev = legal_evidence()
    seconds = ev.seeds[0].stages["train"].manifest["timing"]["train_time_s"]
    ev.seeds[0].train_clocks = {"metrics.jsonl": seconds + 0.2, "log.txt": seconds}  # legal: within rounding
    assert "FAIL" not in verdicts(ev, "TIME-1")
    ev.seeds[0].train_clocks = {"metrics.jsonl": 642.5, "log.txt": 642.5}
    assert verdicts(ev, "TIME-1") == {"FAIL"}
    assert "metrics.jsonl says 642.500 s" in detail(ev, "TIME-1") and "records disagree" in detail(ev, "TIME-1")


@pytest.mark.parametrize("edit, needle", [
    ({"torch": "2.11.0+cpu"}, "torch is a CPU build"),
    ({"device": "cpu"}, "the device is cpu"),
    ({"gpu_count": 1}, "world size 8 on 1 GPU"),
])
def test_time_4_an_env_that_contradicts_itself_fails(edit, needle):
    """Even off the record track's hardware rule (a development run judged on its own terms)."""
    ev = legal_evidence()
    ev.seeds[0].stages["train"].manifest["env"].update(edit)
    assert "FAIL" in verdicts(ev, "TIME-4") and needle in detail(ev, "TIME-4")
    ev.options = Options(track=TRACKS["cpu-golf"])  # a track without a hardware rule
    assert "FAIL" in verdicts(ev, "TIME-4")


def test_non_record_track_lowers_time_rules():
    ev = legal_evidence(track=TRACKS["non_record_16mb"], strict=True)
    ev.seeds[0].stages["train"].manifest["env"]["world_size"] = 4
    ev.seeds[0].stages["eval"].manifest["metrics"]["eval_time_s"] = 700.0
    assert verdicts(ev, "TIME-4") == {"PASS", "INFO"} and verdicts(ev, "TIME-3") == {"WARN"}


def test_cpu_golf_track_limits_apply_on_any_hardware():
    ev = legal_evidence(track=TRACKS["cpu-golf"], max_bytes=1_000_000, max_train_s=60.0, max_eval_s=180.0,
                        explicit_train=True, explicit_eval=True)
    for s in ev.seeds[0].stages.values():
        s.manifest["env"] = {"device": "cpu", "world_size": 1}
    _pack(ev, 20_000, 900_000)
    ev.seeds[0].stages["train"].manifest["timing"].update(train_time_s=59.0, last_step_s=0.1)
    ev.seeds[0].stages["quant"].manifest["config"]["gptq"] = False
    ev.seeds[0].stages["eval"].manifest["metrics"]["eval_time_s"] = 200.0
    assert verdicts(ev, "SIZE-1") == {"PASS"} and verdicts(ev, "TIME-1") == {"PASS"}
    assert verdicts(ev, "TIME-3") == {"FAIL"} and verdicts(ev, "TIME-4") == {"INFO"}


# ============================================================================ data


def test_data_1_stale_val_copy():
    ev = legal_evidence()
    m = ev.seeds[0].stages["data"].manifest["metrics"]
    m["val_tokens"], m["val_docs"] = 9_662_464, 10_000  # the manifest of the full set, shards of a subset
    assert verdicts(ev, "DATA-1") == {"FAIL"}


def test_data_1_warns_when_val_is_not_the_challenge_set():
    ev = legal_evidence()
    assert "WARN" in verdicts(ev, "DATA-1") and "50,000" in detail(ev, "DATA-1")
    ev.options = Options(track=TRACKS["cpu-golf"])
    assert verdicts(ev, "DATA-1") == {"PASS"}
    ev.options = Options(track=TRACKS["10min_16mb"], strict=True)  # a record claim on a small val set
    assert "FAIL" in verdicts(ev, "DATA-1") and "not comparable" in detail(ev, "DATA-1")


def test_data_2_train_shards_from_doc_10000_overlap_val():
    ev = legal_evidence()
    m = ev.seeds[0].stages["data"].manifest["metrics"]
    m["val_doc_range"], m["train_doc_range"], m["val_docs"] = [0, 50_000], [10_000, 1_000_000], 50_000
    assert verdicts(ev, "DATA-2") == {"FAIL"} and "[10,000, 50,000)" in detail(ev, "DATA-2")


def test_data_2_val_documents_found_in_training_shards():
    ev = legal_evidence()
    ev.seeds[0].data.overlap_docs = 20  # of 40 val documents
    assert verdicts(ev, "DATA-2") == {"FAIL"}
    ev.seeds[0].data.overlap_docs = 1  # a corpus duplicate
    assert verdicts(ev, "DATA-2") == {"WARN"}


def test_data_3_loader_glob_that_also_matches_val():
    ev = legal_evidence()
    ev.seeds[0].code = 'import glob\nfiles = sorted(glob.glob("data/fineweb_*.bin"))\n'
    assert "FAIL" in verdicts(ev, "DATA-3")


def test_data_4_val_tokens_stored_in_the_blob():
    tokens, _ = stream(200)
    tensors = {"w.q": np.random.default_rng(0).integers(-31, 32, (64, 64)).astype(np.int8),
               "prefix": tokens[:4096].astype(np.uint16)}
    ev = legal_evidence()
    ev.seeds[0].paid_prefix = paid_prefix(tensors, tokens)
    assert verdicts(ev, "DATA-4") == {"FAIL"} and "prefix" in detail(ev, "DATA-4")
    ev.seeds[0].paid_prefix = paid_prefix({"w.q": tensors["w.q"]}, tokens)
    assert verdicts(ev, "DATA-4") == {"PASS"}


def test_data_4_pack_reading_val_is_a_provenance_breach():
    ev = legal_evidence()
    ev.seeds[0].stages["pack"].inputs.append(InputFact("val_shard", "../data/fineweb_val_000000.bin", "a", "a", "/x"))
    assert "FAIL" in verdicts(ev, "DATA-4")


def test_data_5_eval_reading_training_shards():
    ev = legal_evidence()
    ev.seeds[0].stages["eval"].inputs.append(
        InputFact("train_shard", "../data/fineweb_train_000000.bin", "a", "a", "/x"))
    assert verdicts(ev, "DATA-5") == {"FAIL"}


def test_data_6_a_download_call_fails_an_import_alone_warns():
    ev = legal_evidence()
    ev.seeds[0].code = "from huggingface_hub import hf_hub_download\nhf_hub_download('x', 'y')\n"
    assert verdicts(ev, "DATA-6") == {"FAIL", "WARN"}  # the call FAILs, the import is a static hit
    ev.seeds[0].code = "import requests\n"
    assert verdicts(ev, "DATA-6") == {"WARN"}


def test_data_7_calibration_declared_on_val():
    ev = legal_evidence()
    ev.seeds[0].stages["quant"].manifest["config"]["calib"] = "val"
    assert verdicts(ev, "DATA-7") == {"FAIL"}
    ev.seeds[0].stages["quant"].manifest["config"]["calib"] = {"source": "validation"}
    assert verdicts(ev, "DATA-7") == {"FAIL"}
    ev.seeds[0].stages["quant"].manifest["config"]["calib"] = None  # undeclared with GPTQ on
    assert verdicts(ev, "DATA-7") == {"FAIL"}


# ============================================================================ TTT (ledger)


def _entries(ev):
    return ev.seeds[0].ledger.entries


def test_ttt_1_adaptation_on_the_next_chunk_before_scoring_it():
    ev = legal_evidence()
    e = _entries(ev)[1]
    e.steps.append(AdaptStep(((e.start, e.end + 100),), 0, 0.002, e.end))
    assert verdicts(ev, "TTT-1") == {"FAIL"} and "past the committed end" in detail(ev, "TTT-1")
    assert verdicts(ev, "TTT-5") >= {"FAIL"}  # an epoch reaching the next, unscored chunk


def test_ttt_1_parameters_changed_while_scoring():
    ev = legal_evidence()
    _entries(ev)[2].params_after = "something-else"
    assert verdicts(ev, "TTT-1") == {"FAIL"}


def test_ttt_1_probe_p_mut():
    ev = legal_evidence()
    ev.seeds[0].probes = [ProbeFacts("P-mut", 1, 1, 0.0, "state digest changed during scoring")]
    assert "FAIL" in verdicts(ev, "TTT-1")


def test_ttt_2_reported_score_is_not_the_ledger():
    ev = legal_evidence()
    ev.seeds[0].stages["eval"].manifest["metrics"]["val_bpb"] -= 0.01  # e.g. the epoch-3 NLL
    assert verdicts(ev, "TTT-2") == {"FAIL"} and verdicts(ev, "TTT-3") == {"FAIL"}
    assert "FAIL" in verdicts(ev, "MET-1") and "FAIL" in verdicts(ev, "STAT-4")


def test_ttt_3_replayed_scores_differ_from_the_ledger():
    ev = legal_evidence()
    ev.seeds[0].probes = [ProbeFacts("R-replay", 400, 1, 0.2, "chunk 0: ledger mean NLL 2.30, artifact 2.50")]
    assert "FAIL" in verdicts(ev, "TTT-3")


def test_ttt_4_position_committed_twice():
    ev = legal_evidence()
    entries = _entries(ev)
    dup = dataclasses.replace(entries[0], index=1, steps=[])
    entries.insert(1, dup)
    for i, e in enumerate(entries):
        e.index = i
    assert verdicts(ev, "TTT-4") == {"FAIL"} and verdicts(ev, "TTT-2") == {"FAIL"} and "FAIL" in verdicts(ev, "MET-4")


def test_ttt_5_epochs_are_info():
    ev = legal_evidence()
    assert verdicts(ev, "TTT-5") == {"INFO"} and "up to 2 epoch(s)" in detail(ev, "TTT-5")


def test_ttt_6_warmup_on_val_warns():
    ev = legal_evidence()
    ev.seeds[0].eval_report["warmup_source"] = "val"
    assert verdicts(ev, "TTT-6") == {"WARN"}


def test_ttt_7_probe_fires():
    ev = legal_evidence()
    ev.seeds[0].probes = [ProbeFacts("P-tgt", 100, 100, 0.5), ProbeFacts("P-pre", 100, 0, 0.0)]
    assert "FAIL" in verdicts(ev, "TTT-7") and verdicts(ev, "MET-7") == {"FAIL"} and verdicts(ev, "MET-6") == {"PASS"}


def test_ttt_8_state_changed_without_a_recorded_step():
    """A cache updated with the current chunk before scoring: parameters move with no step on record."""
    tokens, side = stream(40)
    ev = legal_evidence()
    ev.seeds[0].ledger = ledger_facts(ttt_ledger(tokens, side, epochs=0))
    assert verdicts(ev, "TTT-8") == {"PASS"}
    _entries(ev)[3].params_before = _entries(ev)[3].params_after = "cache-with-chunk-3"
    assert verdicts(ev, "TTT-8") == {"FAIL"}


def test_ttt_8_document_independent_mode_must_reset():
    tokens, side = stream(40)
    ev = legal_evidence()
    ev.seeds[0].ledger = ledger_facts(ttt_ledger(tokens, side, chunk=60, doc_independent=True))
    assert "FAIL" in verdicts(ev, "TTT-8")  # adapted state carried into new documents
    assert "FAIL" in verdicts(ev, "MET-8")  # chunks cross document starts


# ============================================================================ metric


def test_met_1_raw_byte_denominator():
    ev = legal_evidence()
    m = ev.seeds[0].stages["data"].manifest["metrics"]
    led = _entries(ev)
    led[-1].byte_sum += m["val_bytes_raw"] - m["val_bytes"]  # the ledger summed raw UTF-8 bytes
    assert verdicts(ev, "MET-1") == {"FAIL"} and "raw UTF-8 bytes" in detail(ev, "MET-1")


def test_met_2_byte_pieces_counted_as_three():
    ev = legal_evidence()
    f = ev.seeds[0].data
    f.lut_sidecar_mismatch = 27
    f.mismatch_examples = [{"position": 5, "token": 200, "piece": "<0xC3>", "lut": 1, "sidecar": 3}]
    assert verdicts(ev, "MET-2") == {"FAIL"} and "<0xC3>" in detail(ev, "MET-2")


def test_met_2_no_standalone_space_piece():
    ev = legal_evidence()
    ev.seeds[0].data.standalone_space = False
    assert verdicts(ev, "MET-2") == {"FAIL"} and "#897" in detail(ev, "MET-2")


def test_met_3_unknown_tokens_in_val():
    ev = legal_evidence()
    ev.seeds[0].data.unknown_tokens = 3
    assert verdicts(ev, "MET-3") == {"FAIL"}
    ev.options = Options(track=TRACKS["non_record_16mb"])
    assert verdicts(ev, "MET-3") == {"WARN"}


@pytest.mark.parametrize("drop", [799, None])
def test_met_4_dropped_tail_or_subset(drop):
    tokens, side = stream(200)
    ev = legal_evidence()
    seed = ev.seeds[0]
    seed.ledger = ledger_facts(ttt_ledger(tokens, side))
    seed.data.val_tokens = tokens.shape[0]
    entries = seed.ledger.entries
    P = tokens.shape[0] - 1
    if drop is not None:  # the last 799 positions never scored
        while entries[-1].start >= P - drop:
            entries.pop()
        entries[-1].end = P - drop
        entries[-1].count = entries[-1].end - entries[-1].start
        assert f"the last {drop} positions" in detail(ev, "MET-4")
    else:  # a subset: the first third only
        del entries[len(entries) // 3 :]
    assert "FAIL" in verdicts(ev, "MET-4")


@pytest.mark.parametrize("probe, rule", [("P-norm", "MET-5"), ("P-pre", "MET-6"), ("P-tgt", "MET-7")])
def test_met_probes(probe, rule):
    ev = legal_evidence()
    assert verdicts(ev, rule) == {"INFO"}  # not probed
    ev.seeds[0].probes = [ProbeFacts(probe, 1000, 0, 0.0)]
    assert verdicts(ev, rule) == {"PASS"}
    ev.seeds[0].probes = [ProbeFacts(probe, 1000, 12, 0.3)]
    assert verdicts(ev, rule) == {"FAIL"}


def test_met_8_claimed_isolation_and_p_doc():
    ev = legal_evidence()
    ev.seeds[0].probe_claims_isolation = True
    ev.seeds[0].probes = [ProbeFacts("P-doc", 125, 40, 0.2)]
    assert verdicts(ev, "MET-8") == {"FAIL"}
    ev.seeds[0].probes = [ProbeFacts("P-doc", 125, 0, 0.0)]
    assert verdicts(ev, "MET-8") == {"PASS"}


# ============================================================================ statistics and folder


def test_stat_1_a_seed_from_another_config():
    ev = legal_evidence((1, 2, 3), claim=True)
    ev.seeds[2].stages["eval"].manifest["config"]["ttt_epochs"] = 1
    assert verdicts(ev, "STAT-1") == {"FAIL"} and "ttt_epochs" in detail(ev, "STAT-1")


def test_stat_1_fewer_than_three_seeds_for_a_claim():
    assert verdicts(legal_evidence((1, 2), claim=True), "STAT-1") == {"FAIL"}
    assert verdicts(legal_evidence((1, 1, 2), claim=True), "STAT-1") == {"FAIL"}  # a repeated seed
    assert verdicts(legal_evidence((1,)), "STAT-1") == {"INFO"}  # no claim


def _launch_ledger(ev, launched=None, config="cfg-sha"):
    """Record every seed's training in one run.json whose launches are `launched` (seed, config_sha256)
    pairs (default: the seeds verified, all of `config`); the data_sha256 is the data manifest's."""
    pairs = launched if launched is not None else [(s.seed, config) for s in ev.seeds]
    launches = tuple({"run_id": f"L{i}", "seed": seed, "config_sha256": cfg, "data_sha256": "sha-data"}
                     for i, (seed, cfg) in enumerate(pairs))
    for s in ev.seeds:
        record = next(x for x in launches if x["seed"] == s.seed)
        s.launch = LaunchFacts("/runs/sweep/run.json", record, launches, config)


def _relaunch(s, **changes):
    """The seed's launch record with `changes` (as a tampered or other run.json would hold it)."""
    s.launch = dataclasses.replace(s.launch, record={**s.launch.record, **changes})


def test_stat_1_the_launch_ledger_records_one_config_on_one_data():
    ev = legal_evidence((1, 2, 3), claim=True)
    _launch_ledger(ev)
    assert verdicts(ev, "STAT-1") == {"PASS"}
    assert "the launch ledger records seed 1, seed 2, seed 3 launched with one config" in detail(ev, "STAT-1")
    _relaunch(ev.seeds[2], data_sha256="sha-other-data")  # the manifests agree (PASS), the ledger does not
    assert verdicts(ev, "STAT-1") == {"PASS", "FAIL"}
    assert "seed 3 was launched on other data than seed 1" in detail(ev, "STAT-1")
    _relaunch(ev.seeds[2], data_sha256="sha-data", config_sha256="cfg-other")
    text = detail(ev, "STAT-1")
    assert "seed 3 was launched with another config than seed 1" in text
    assert "seed 3: its launch record in /runs/sweep/run.json names another config than its train manifest" in text
    ev.seeds[1].launch = ev.seeds[2].launch = None  # one record left: the manifests alone judge STAT-1
    assert verdicts(ev, "STAT-1") == {"PASS"} and "launch ledger" not in detail(ev, "STAT-1")


def test_stat_3_every_launched_seed_is_reported():
    ev = legal_evidence((1, 2, 3), claim=True)
    assert verdicts(ev, "STAT-3") == {"WARN"} and "no launch ledger" in detail(ev, "STAT-3")
    _launch_ledger(ev, [(1, "cfg-sha"), (2, "cfg-sha"), (3, "cfg-sha"), (3, "cfg-sha"), (9, "cfg-other")])
    assert verdicts(ev, "STAT-3") == {"PASS"}  # a resumed launch and another config's seed are no hidden seed
    assert "(1, 2, 3) is among the runs verified" in detail(ev, "STAT-3")
    # the rulebook's plant: five launches, the best three reported
    _launch_ledger(ev, [(x, "cfg-sha") for x in (1, 2, 3, 10, 4)])
    assert verdicts(ev, "STAT-3") == {"FAIL"}
    assert "seed(s) 4, 10 launched with this config (/runs/sweep/run.json) are not among the runs verified" \
        in detail(ev, "STAT-3")
    _launch_ledger(ev)
    ev.seeds[2].launch = None
    assert verdicts(ev, "STAT-3") == {"WARN"} and "no launch ledger records seed 3" in detail(ev, "STAT-3")


def test_stat_3_a_single_run_fails_only_when_claimed_for_a_track():
    ev = legal_evidence((42,))
    assert verdicts(ev, "STAT-3") == {"INFO"} and "no launch ledger" in detail(ev, "STAT-3")
    _launch_ledger(ev, [(1337, "cfg-sha"), (42, "cfg-sha")])  # the config's seed changed between two runs
    assert verdicts(ev, "STAT-3") == {"INFO"} and "seed(s) 1337 launched with this config" in detail(ev, "STAT-3")
    ev.options = dataclasses.replace(ev.options, strict=True)  # --track or --submission
    assert verdicts(ev, "STAT-3") == {"FAIL"}
    _launch_ledger(ev)
    assert verdicts(ev, "STAT-3") == {"PASS"}


def _seed_losses(ev, losses, bpt):
    """Give each seed a ledger total with this mean NLL per token (bpt bytes per token)."""
    for s, loss in zip(ev.seeds, losses):
        count = sum(e.count for e in s.ledger.entries)
        for e in s.ledger.entries:
            e.nll_sum, e.byte_sum = loss * e.count, round(e.count * bpt) if e is not s.ledger.entries[-1] else 0
        s.ledger.entries[-1].byte_sum = round(count * bpt) - sum(e.byte_sum for e in s.ledger.entries[:-1])


def test_stat_2_three_seeds_0_003_nats_better_warn():
    ev = legal_evidence((1, 2, 3), claim=True, reference_bpb=(0.0,))
    bpt = 2.436
    ref_loss = [2.0, 2.0005, 1.9995]
    new_loss = [x - 0.003 for x in ref_loss]
    _seed_losses(ev, new_loss, bpt)
    ev.options = dataclasses.replace(ev.options, reference_bpb=tuple(x / (math.log(2) * bpt) for x in ref_loss))
    results = [r for r in run_checks(ev) if r.id == "STAT-2"]
    assert [r.verdict for r in results] == ["WARN"], results
    assert "Δ +0.0030" in results[0].detail and "p = 0.996" in results[0].detail
    ev.options = dataclasses.replace(ev.options, reference_bpb=tuple(x / (math.log(2) * bpt) + 0.01 for x in ref_loss))
    assert verdicts(ev, "STAT-2") == {"PASS"}
    ev.options = dataclasses.replace(ev.options, reference_bpb=tuple(x / (math.log(2) * bpt) - 0.01 for x in ref_loss))
    assert verdicts(ev, "STAT-2") == {"FAIL"}


def test_stat_2_single_reference_value_warns_about_one_sample():
    ev = legal_evidence((1, 2, 3), claim=True, reference_bpb=(5.0,))
    _seed_losses(ev, [2.0, 2.001, 1.999], 2.436)
    assert verdicts(ev, "STAT-2") == {"PASS", "WARN"}
    assert "one-sample" in detail(ev, "STAT-2")


def test_stat_4_missing_train_log():
    ev = legal_evidence()
    ev.seeds[0].stages["train"].files = [f for f in ev.seeds[0].stages["train"].files if f.path != "log.txt"]
    assert verdicts(ev, "STAT-4") == {"FAIL"}


def test_fmt_2_folder_without_a_seed_log():
    ev = legal_evidence((1, 2, 3))
    files = {"README.md": 1, "submission.json": 1, "train_gpt.py": 1, "train_seed1.log": 1, "train_seed3.log": 1}
    ev.folder = FolderFacts("2026-05-02_Run", files, {})
    assert verdicts(ev, "FMT-2") == {"FAIL"} and "train_seed2.log" in detail(ev, "FMT-2")


def test_fmt_3_absolute_path_in_the_script():
    ev = legal_evidence()
    ev.seeds[0].code = 'data = open("/opt/pg/fineweb_val_000000.bin", "rb").read()\n'
    assert verdicts(ev, "FMT-3") == {"FAIL"}
    ev.seeds[0].code = "def f(:\n"
    assert verdicts(ev, "FMT-3") == {"FAIL"} and "does not compile" in detail(ev, "FMT-3")


def test_fmt_4_folder_without_a_date():
    ev = legal_evidence()
    ev.folder = FolderFacts("My_Run", {}, {"author": "a"})
    assert verdicts(ev, "FMT-4") == {"WARN"}


def test_not_checkable_rules_say_why():
    ev = legal_evidence()
    assert verdicts(ev, "FMT-1") == {"INFO"} and "diff" in detail(ev, "FMT-1")
    assert verdicts(ev, "FMT-5") == {"INFO"}


def test_lineage_changed_input_fails():
    ev = legal_evidence()
    tr = ev.seeds[0].stages["train"]
    tr.inputs[0] = dataclasses.replace(tr.inputs[0], actual="changed")
    assert "FAIL" in verdicts(ev, "LINEAGE") and "changed since" in detail(ev, "LINEAGE")
    ev = legal_evidence()
    ev.seeds[0].stages["quant"].manifest = None
    ev.seeds[0].stages["quant"].error = "not valid JSON"
    assert "FAIL" in verdicts(ev, "LINEAGE")


def test_size_5_eval_decoded_other_bytes_than_the_pack_lists():
    ev = legal_evidence()
    listed = next(f for f in ev.seeds[0].stages["pack"].files if f.path == "model.bin").listed_sha256
    decoded = InputFact("pack", "../pack/model.bin", listed, listed, "/run/pack/model.bin")
    ev.seeds[0].stages["eval"].inputs.append(decoded)
    assert verdicts(ev, "SIZE-5") == {"PASS"}
    ev.seeds[0].stages["eval"].inputs[-1] = dataclasses.replace(decoded, expected="sha-of-a-pruned-blob")
    assert verdicts(ev, "SIZE-5") == {"FAIL"} and "decoded model.bin" in detail(ev, "SIZE-5")


def test_ttt_6_declared_synthetic_warmup_passes():
    ev = legal_evidence()
    ev.seeds[0].eval_report["warmup_source"] = "synthetic"
    assert verdicts(ev, "TTT-6") == {"PASS"}


def test_data_7_calibration_provenance_names_a_val_shard():
    ev = legal_evidence()
    q = ev.seeds[0].stages["quant"].manifest["config"]
    val_sha = next(f for f in ev.seeds[0].stages["data"].files if f.path == "fineweb_val_000000.bin").listed_sha256
    q["calibration"] = {"source": "train", "shards": [{"name": "fineweb_train_000000.bin", "sha256": "t"}]}
    assert verdicts(ev, "DATA-7") == {"PASS"}
    q["calibration"]["shards"].append({"name": "fineweb_train_000001.bin", "sha256": val_sha})  # val content, renamed
    assert verdicts(ev, "DATA-7") == {"FAIL"}


def test_stat_1_ignores_calibration_provenance():
    ev = legal_evidence((1, 2, 3), claim=True)
    for i, s in enumerate(ev.seeds):
        s.stages["quant"].manifest["config"]["calibration"] = {"data": f"/runs/s{i}/data"}
    assert verdicts(ev, "STAT-1") == {"PASS"}


# ============================================================================ provenance of training and calibration data


def test_data_2_overlap_is_judged_per_training_input_even_on_other_data():
    ev = legal_evidence()
    s = ev.seeds[0]
    s.stages["train_data"] = stage("data", metrics={"val_docs": 10, "val_doc_range": [0, 10],
                                                    "train_doc_range": [10, 900], "val_docs_sha256": "other"})
    s.data.overlap_docs, s.data.overlap_by_source = 30, {"data/fineweb_train_000000.bin": 30}
    assert verdicts(ev, "DATA-2") == {"FAIL"}  # was a WARN "trained on other data"
    assert "30 of 40" in detail(ev, "DATA-2") and "fineweb_train_000000.bin (30)" in detail(ev, "DATA-2")


def test_data_2_a_single_val_document_in_training_fails_a_record_claim():
    ev = legal_evidence()
    ev.seeds[0].data.overlap_docs, ev.seeds[0].data.overlap_by_source = 1, {"x/fineweb_train_000003.bin": 1}
    assert verdicts(ev, "DATA-2") == {"WARN"} and "1 of 40" in detail(ev, "DATA-2")
    ev.options = Options(track=TRACKS["10min_16mb"], strict=True)
    assert verdicts(ev, "DATA-2") == {"FAIL"} and "fineweb_train_000003.bin" in detail(ev, "DATA-2")


def test_data_2_missing_or_altered_training_input_fails():
    ev = legal_evidence()
    ev.seeds[0].data.overlap_docs = None
    ev.seeds[0].data.train_unreadable = ["../shards/fineweb_train_000001.bin: missing"]
    assert verdicts(ev, "DATA-2") == {"FAIL"} and "fineweb_train_000001.bin: missing" in detail(ev, "DATA-2")


def test_data_2_no_pass_without_a_scan():
    ev = legal_evidence()
    ev.seeds[0].data.overlap_docs = None
    ev.seeds[0].data.overlap_note = "val documents not hashed against 8,000,000,000 training tokens: not scanned"
    assert verdicts(ev, "DATA-2") == {"INFO"} and "not scanned" in detail(ev, "DATA-2")  # disjoint ranges, no scan
    del ev.seeds[0].stages["data"]  # official shards: nothing else shows disjointness
    assert verdicts(ev, "DATA-2") == {"WARN"}
    ev = legal_evidence()
    ev.seeds[0].data.overlap_docs, ev.seeds[0].data.train_sources = None, []  # a train manifest naming no shard
    ev.seeds[0].stages["train"].inputs = []
    assert verdicts(ev, "DATA-2") == {"WARN"} and "names no training shard" in detail(ev, "DATA-2")


def test_data_2_manifest_less_training_data_is_scanned():
    ev = legal_evidence()
    s = ev.seeds[0]
    s.stages["train"].inputs = [InputFact("train_shard", "../../bad/fineweb_train_000000.bin", "a", "a", "/bad/x")]
    s.data.overlap_docs, s.data.overlap_by_source = 40, {"../../bad/fineweb_train_000000.bin": 40}
    assert verdicts(ev, "DATA-2") == {"FAIL"} and "../../bad/fineweb_train_000000.bin (40)" in detail(ev, "DATA-2")
    s.data.overlap_docs, s.data.overlap_by_source = 0, {}
    assert verdicts(ev, "DATA-2") == {"PASS"}


def test_data_3_train_shard_inputs_are_expected():
    ev = legal_evidence()
    ev.seeds[0].stages["train"].inputs.append(InputFact("train_shard", "../data/fineweb_train_000000.bin", "a",
                                                        "a", "/x"))
    assert verdicts(ev, "DATA-3") == {"PASS"}


def test_data_7_val_documents_inside_calibration_data():
    ev = legal_evidence()
    q = ev.seeds[0].stages["quant"].manifest["config"]
    q["calibration"] = {"source": "train", "shards": [{"name": "fineweb_train_000000.bin", "sha256": "t"}]}
    d = ev.seeds[0].data
    d.calib_sources, d.calib_overlap = ["fineweb_train_000000.bin"], 0
    assert verdicts(ev, "DATA-7") == {"PASS"} and "no val document" in detail(ev, "DATA-7")
    d.calib_overlap, d.calib_overlap_by_source = 39, {"fineweb_train_000000.bin": 39}  # val minus one token
    assert verdicts(ev, "DATA-7") == {"FAIL"} and "39 of 40" in detail(ev, "DATA-7")
    d.calib_overlap, d.calib_unreadable = 0, ["fineweb_train_000000.bin: missing (/gone)"]
    assert verdicts(ev, "DATA-7") == {"FAIL"}
    d.calib_unreadable, d.calib_overlap, d.calib_note = [], None, "over the scan budget: not scanned"
    assert verdicts(ev, "DATA-7") == {"WARN"}


def test_document_overlap_by_source_names_the_shard_and_catches_a_truncated_copy():
    from pgolf.verify.facts import document_overlap_by_source

    tokens, _ = stream(40)
    clean = np.asarray(stream(60, seed=9)[0], dtype=np.uint16)
    found, per = document_overlap_by_source(tokens, [("a.bin", clean), ("b.bin", tokens[:-1])])
    assert found == 39 and per == {"b.bin": 39}  # every document but the truncated last one
    assert document_overlap_by_source(tokens, [("a.bin", clean)]) == (0, {})


# ============================================================================ REPRO-1 (verify --reproduce)


def _reproduced(ev, scale=1.0, **kw):
    """Plant a re-execution whose ledger is the claimed one, every nll sum times `scale`."""
    from pgolf.verify.evidence import ReproductionFacts

    s = ev.seeds[0]
    fresh = [dataclasses.replace(e, nll_sum=e.nll_sum * scale) for e in s.ledger.entries]
    b = sum(e.byte_sum for e in fresh)
    args = dict(status="ran", command="python -m pgolf ttt-eval ...", seconds=3.5, exact=True, entries=fresh,
                val_bpb=math.fsum(e.nll_sum for e in fresh) / (math.log(2) * b))
    args.update(kw)
    s.reproduction = ReproductionFacts(**args)
    return ev


def test_repro_1_not_requested_is_info():
    ev = legal_evidence()
    assert verdicts(ev, "REPRO-1") == {"INFO"} and "pass --reproduce" in detail(ev, "REPRO-1")


def test_repro_1_identical_ledger_passes_with_the_seconds():
    ev = _reproduced(legal_evidence())
    assert verdicts(ev, "REPRO-1") == {"PASS"} and "in 3.5 s" in detail(ev, "REPRO-1")


def test_repro_1_scaled_nll_fails_naming_the_chunks():
    ev = _reproduced(legal_evidence(), scale=1 / 0.95)  # the claim is 0.95 x the truth
    d = detail(ev, "REPRO-1")
    assert verdicts(ev, "REPRO-1") == {"FAIL"}
    assert "chunk 0 [0, 400): claimed nll" in d and "vs reproduced" in d and "and " in d


def test_repro_1_tolerance_mode_and_the_val_bpb():
    from pgolf.verify.checks.reproduce import REL_TOL_FP32

    ev = _reproduced(legal_evidence(), scale=1 + REL_TOL_FP32 / 10, exact=False, rel_tol=REL_TOL_FP32)
    assert verdicts(ev, "REPRO-1") == {"PASS"}  # another machine: within 1e-4 per chunk
    ev = _reproduced(legal_evidence(), scale=1 + REL_TOL_FP32 * 10, exact=False, rel_tol=REL_TOL_FP32)
    assert verdicts(ev, "REPRO-1") == {"FAIL"}
    ev = _reproduced(legal_evidence(), scale=1 + REL_TOL_FP32 / 10)  # exact required, within fp32: a reviewer looks
    assert verdicts(ev, "REPRO-1") == {"WARN"} and "not bit-identical" in detail(ev, "REPRO-1")
    ev = _reproduced(legal_evidence(), val_bpb=1.0)  # every chunk equal, but the fresh eval reports another score
    assert verdicts(ev, "REPRO-1") == {"FAIL"} and "is not the reproduced 1.00000000" in detail(ev, "REPRO-1")


def test_repro_1_missing_chunk_merged_ledger_and_read_ahead():
    ev = legal_evidence()
    _reproduced(ev)
    ev.seeds[0].reproduction.entries.pop()
    assert verdicts(ev, "REPRO-1") == {"FAIL"} and "chunks, the re-execution wrote" in detail(ev, "REPRO-1")
    ev = _reproduced(legal_evidence())  # a per-chunk minimum of two passes: one chunk lower than the re-run
    e = ev.seeds[0].ledger.entries[2]
    ev.seeds[0].ledger.entries[2] = dataclasses.replace(e, nll_sum=e.nll_sum * 0.99)
    assert verdicts(ev, "REPRO-1") == {"FAIL"} and "chunk 2 [" in detail(ev, "REPRO-1")
    ev = _reproduced(legal_evidence())  # same nll sums, another parameter trajectory: a reviewer looks
    e = ev.seeds[0].ledger.entries[1]
    ev.seeds[0].ledger.entries[1] = dataclasses.replace(e, params_after="x" * 16)
    assert verdicts(ev, "REPRO-1") == {"WARN"} and "parameter checksums" in detail(ev, "REPRO-1")


def test_repro_1_cannot_reexecute_warns_with_the_command_and_errors_fail():
    from pgolf.verify.evidence import ReproductionFacts

    ev = legal_evidence()
    ev.seeds[0].reproduction = ReproductionFacts("cannot", "torchrun --nproc_per_node=8 -m pgolf ttt-eval P",
                                                 reason="the eval ran on cuda and this machine has no CUDA")
    assert verdicts(ev, "REPRO-1") == {"WARN"} and "run: torchrun" in detail(ev, "REPRO-1")
    ev.seeds[0].reproduction = ReproductionFacts("error", "python -m pgolf ttt-eval P",
                                                 reason="pgolf ttt-eval exited 1: model.bin sha256 mismatch")
    assert verdicts(ev, "REPRO-1") == {"FAIL"} and "sha256 mismatch" in detail(ev, "REPRO-1")


def test_repro_1_deadline_compares_up_to_the_stop():
    ev = _reproduced(legal_evidence(), compare_until=1)
    fresh = ev.seeds[0].reproduction.entries
    fresh[3] = dataclasses.replace(fresh[3], nll_sum=fresh[3].nll_sum * 2)  # adapted here, not in the claim
    assert verdicts(ev, "REPRO-1") == {"WARN"} and "not compared" in detail(ev, "REPRO-1")
    fresh[1] = dataclasses.replace(fresh[1], nll_sum=fresh[1].nll_sum * 2)
    assert verdicts(ev, "REPRO-1") == {"FAIL"}


def test_repro_1_tolerance_by_eval():
    from pgolf.verify.checks.reproduce import REL_TOL_BF16, REL_TOL_FP32, tolerance

    assert tolerance(True, {"device": "cpu"}, {}) == 0.0
    assert tolerance(False, {"device": "cpu"}, {"autocast": True}) == REL_TOL_FP32
    assert tolerance(False, {"device": "cuda"}, {"autocast": True}) == REL_TOL_BF16
    assert tolerance(False, {"device": "cuda"}, {"autocast": False}) == REL_TOL_FP32
