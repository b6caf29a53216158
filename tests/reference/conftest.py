"""Fixtures of the record-equivalence tests: where the records' submission folders are.

The records (../shared/reference/<folder>/train_gpt.py, MIT, from openai/parameter-golf) are read and
imported at run time only, never copied into pgolf. Without them every test here skips with the reason.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = Path(os.environ.get("PGOLF_REFERENCE", ROOT.parent / "shared" / "reference"))


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    if not (REFERENCE / "baseline" / "train_gpt.py").is_file():
        pytest.skip(f"the records' code was not found at {REFERENCE} (set PGOLF_REFERENCE to run these tests)")
    return REFERENCE

