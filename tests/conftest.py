"""Shared fixtures. Real data from ../shared/data is read at run time only; tests that need it skip
with the reason when it is absent (it is never part of the project)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("PGOLF_SHARED_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """The test models are tiny: one intra-op thread is faster for them, and a second thread stalls
    whenever another process holds the other core."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session", autouse=True)
def cache_dir(tmp_path_factory) -> Path:
    """Keep pgolf's cache (the embedded tokenizer) inside the test session."""
    path = tmp_path_factory.mktemp("pgolf-cache")
    os.environ["PGOLF_CACHE_DIR"] = str(path)
    # No launch log: the suite launches one config with many seeds in unrelated directories, which would be
    # hidden seeds of each other (STAT-3). tests/integration/test_verify_launches.py turns it on per test.
    os.environ["PGOLF_LAUNCH_LOG"] = ""
    return path


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not (SHARED_DATA / "corpus").is_dir():
        pytest.skip(f"real test data not found at {SHARED_DATA} (set PGOLF_SHARED_DATA to run these tests)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def sp1024_path(shared_dir) -> Path:
    return shared_dir / "tokenizers" / "fineweb_1024_bpe.model"


@pytest.fixture(scope="session")
def webtext_path(shared_dir) -> Path:
    return shared_dir / "corpus" / "webtext_sample.jsonl.zst"


@pytest.fixture(scope="session")
def embedded_data(tmp_path_factory, cache_dir) -> Path:
    """A small data directory from the embedded corpus and its own tokenizer, built once per session."""
    from pgolf.data.config import DataConfig
    from pgolf.stages import data

    out = tmp_path_factory.mktemp("embedded") / "data"
    data.build(DataConfig(val_docs=50), out)
    return out


@pytest.fixture(scope="session")
def webtext_data(tmp_path_factory, webtext_path, sp1024_path) -> Path:
    """Real web text with the official sp1024 tokenizer: the last 300 documents are not in val."""
    from pgolf.data.config import DataConfig
    from pgolf.stages import data

    out = tmp_path_factory.mktemp("webtext") / "data"
    data.build(DataConfig(corpus=(str(webtext_path),), tokenizer=str(sp1024_path), val_docs=200), out)
    return out


@pytest.fixture(scope="session")
def tiny_train(tmp_path_factory, embedded_data) -> Path:
    """A train artifact: the tiny preset, 30 steps on the embedded data (a few seconds), built once
    per session. `pgolf.artifacts.model.load_model(tiny_train)` gives the model."""
    import torch

    from pgolf.stages import train

    out = tmp_path_factory.mktemp("tiny_train") / "train"
    cfg = train.load_config("tiny", overrides=["iterations=30", "warmdown_iters=10", "val_every=0",
                                               "checkpoint_every_s=0", "max_seconds=0"])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a model this small trains faster on one thread on shared cores
    try:
        train.run(cfg, embedded_data, out, source="preset:tiny")
    finally:
        torch.set_num_threads(threads)
    return out
