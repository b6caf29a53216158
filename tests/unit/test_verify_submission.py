"""The records folder's contents: submission.json fields, README, configs as TOML."""

import json
import tomllib

import pytest
from test_verify_evidence import legal_evidence

from pgolf.errors import ConfigError
from pgolf.verify.checks import REQUIRED_JSON_KEYS, run_checks
from pgolf.verify.evidence import FolderFacts
from pgolf.verify.records_folder import (
    SubmissionInfo,
    folder_files,
    non_default,
    readme,
    submission_json,
    toml_text,
)

INFO = SubmissionInfo(author="Ada L", github_id="ada", name="Tiny TTT run", blurb="A test.", date="2026-05-02")


def test_info_requires_author_fields_and_a_date():
    with pytest.raises(ConfigError, match="'author' is required for --submission: pass --author"):
        SubmissionInfo(github_id="a", name="n", blurb="b")
    with pytest.raises(ConfigError, match="date"):
        SubmissionInfo(author="a", github_id="a", name="n", blurb="b", date="2 May")
    assert INFO.folder_name() == "2026-05-02_Tiny_TTT_run"
    assert len(SubmissionInfo(author="a", github_id="a", name="n", blurb="b").date) == 10  # today


def test_submission_json_has_every_field_and_the_evidence_numbers():
    ev = legal_evidence((1, 2, 3), claim=True)
    results = run_checks(ev)
    doc = submission_json(ev, results, INFO)
    assert set(REQUIRED_JSON_KEYS) <= set(doc)
    assert doc["seeds"] == [1, 2, 3] and set(doc["seed_results"]) == {"1", "2", "3"}
    seed = doc["seed_results"]["1"]
    assert seed["artifact_bytes"] == 15_930_000 and seed["bytes_code"] == 30_000 and seed["steps"] == 5000
    assert seed["train_time_s"] == 590.2 and seed["eval_time_s"] == 401.0
    assert doc["bytes_total"] == 15_930_000 and doc["hardware"] == "8x NVIDIA H100 80GB HBM3"
    assert doc["pytorch_version"] == "2.11.0" and doc["compliance"]["ok"] is True
    assert doc["compliance"]["checks"]["SIZE-1"] == "PASS" and doc["compliance"]["ruleset"] == "pg-rules-2026.05"
    assert json.loads(json.dumps(doc)) == doc


def test_folder_checks_pass_on_what_the_writer_produces():
    ev = legal_evidence((1, 2, 3), claim=True)
    files = folder_files(ev, run_checks(ev), INFO, {f"train_seed{s}.log": b"log" for s in (1, 2, 3)})
    assert set(files) == {"README.md", "submission.json", "train_gpt.py", "train_seed1.log", "train_seed2.log",
                          "train_seed3.log"}
    ev.folder = FolderFacts(INFO.folder_name(), {k: len(v) for k, v in files.items()},
                            json.loads(files["submission.json"]))
    by_id = {r.id: r.verdict for r in run_checks(ev, only=("FMT-2", "FMT-4", "STAT-4"))}
    assert by_id == {"FMT-2": "PASS", "FMT-4": "PASS", "STAT-4": "PASS"}
    # a number off by 1e-4 in submission.json is caught
    sub = json.loads(files["submission.json"])
    sub["seed_results"]["2"]["val_bpb"] += 1e-4
    ev.folder = FolderFacts(INFO.folder_name(), ev.folder.files, sub)
    assert "FAIL" in {r.verdict for r in run_checks(ev, only=("STAT-4",))}


def test_readme_has_results_method_compliance_and_commands():
    ev = legal_evidence((1, 2, 3), claim=True)
    text = readme(ev, run_checks(ev), INFO)
    for part in ("# Tiny TTT run", "## Results", "| seed | val_loss (nats) | val_bpb |", "**mean**", "## Method",
                 "## Compliance", "## Reproduce", "pgolf train --config train.toml", "for SEED in 1 2 3",
                 "`train_seed2.log`"):
        assert part in text, part
    assert "Non-record" not in text


def test_toml_writer_round_trips_and_diffs_against_defaults():
    table = {"a": 1, "b": [1, 2], "c": "x\"y", "d": True, "model": {"num_layers": 11, "e": {"f": 0.5}}}
    assert tomllib.loads(toml_text(table)) == table
    assert non_default({"a": 1, "b": 2, "m": {"x": 1, "y": 2}}, {"a": 1, "b": 3, "m": {"x": 1, "y": 3}}) == \
        {"b": 2, "m": {"y": 2}}
    assert non_default({"a": 1}, None) == {"a": 1}
