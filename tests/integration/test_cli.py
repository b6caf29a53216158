"""The CLI as a user meets it: help, version, exit codes, --json."""

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from pgolf.cli import app

runner = CliRunner()

COMMANDS = ["data", "train", "quantize", "pack", "ttt-eval", "verify", "run", "report"]


def test_help_lists_every_stage_and_exit_codes():
    for args in ([], ["--help"], ["-h"]):
        result = runner.invoke(app, args)
        assert "Usage" in result.output
        for command in COMMANDS:
            assert command in result.output
    assert "Exit codes" in runner.invoke(app, ["--help"]).output


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command):
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0, result.output


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.startswith("pgolf ") and "torch" in result.output and "cuda" in result.output


def test_help_does_not_import_torch():
    code = "import sys; sys.argv=['pgolf','--help']\nfrom pgolf.cli import main\ntry: main()\nexcept SystemExit: pass\n" \
           "assert 'torch' not in sys.modules, 'torch imported by --help'"
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_python_dash_m_entry_point():
    out = subprocess.run([sys.executable, "-m", "pgolf", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("pgolf ")


def test_usage_error_exits_2():
    result = runner.invoke(app, ["data", "build", "--no-such-flag"])
    assert result.exit_code == 2


def test_data_build_json_keys(tmp_path, embedded_data):
    out = tmp_path / "d"
    result = runner.invoke(app, ["data", "build", "--out", str(out), "--val-docs", "40", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    for key in ("train_tokens", "val_tokens", "train_docs", "val_docs", "val_bytes", "val_bytes_lut",
                "val_bytes_raw", "vocab_size", "files"):
        assert key in doc
    assert doc["val_docs"] == 40 and doc["val_bytes"] == doc["val_bytes_lut"]
    inspect = json.loads(runner.invoke(app, ["data", "inspect", str(out), "--json"]).stdout)
    assert inspect["val_tokens"] == doc["val_tokens"] and inspect["hash_check"] == "ok"


def test_bad_input_is_one_line_and_exit_1(tmp_path):
    result = runner.invoke(app, ["data", "build", "--out", str(tmp_path / "o"), "--corpus", str(tmp_path / "x.jsonl"),
                                 "--train-tokenizer"])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "x.jsonl does not exist" in lines[0]
    assert "Traceback" not in result.output
    assert not (tmp_path / "o").exists()


def test_existing_output_refused_without_force(tmp_path, embedded_data):
    result = runner.invoke(app, ["data", "build", "--out", str(embedded_data)])
    assert result.exit_code == 1 and "--force" in result.output


def test_inspect_missing_directory(tmp_path):
    result = runner.invoke(app, ["data", "inspect", str(tmp_path / "nope")])
    assert result.exit_code == 1 and "does not exist" in result.output
