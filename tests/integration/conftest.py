"""Fixtures of the integration tests (the session-wide ones are in tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_verify_support import build_run


@pytest.fixture(scope="module")
def legal_run(request, tmp_path_factory, embedded_data, tiny_train) -> Path:
    """A complete, legal tiny run (test_verify_support.build_run), built once per test module that asks
    for it; a module that defines its own `legal_run` uses that one."""
    return build_run(tmp_path_factory.mktemp(request.module.__name__) / "run", embedded_data, tiny_train)
