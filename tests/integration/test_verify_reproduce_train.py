"""`pgolf verify --reproduce-train` (REPRO-2): the tiny run re-trains bit for bit in a fresh process from its
recorded recipe; a model tuned on validation after training (its train manifest re-hashed, the loss log
untouched) FAILs naming the first differing tensor; CUDA / multi-rank / long runs are refused with a WARN and
the command to run."""

import math
import shutil

import numpy as np
import pytest
import torch
from test_verify_support import checks_with_id, copy_run, edit_manifest, rehash, verify_json

from pgolf import artifacts
from pgolf.artifacts import data as datadir
from pgolf.artifacts.model import MODEL_FILE, load_model
from pgolf.stages.verify import recipe_toml
from pgolf.train.config import TrainConfig
from pgolf.verify.checks.reproduce import curve_diff, tensor_diff

pytestmark = pytest.mark.slow


def test_recipe_is_the_recorded_config(tiny_train, tmp_path):
    from pgolf.stages import train as train_stage

    recorded = artifacts.read_manifest(tiny_train, "train").config
    path = tmp_path / "recipe.toml"
    path.write_text(recipe_toml(recorded))
    cfg = train_stage.load_config(config=path)
    assert isinstance(cfg, TrainConfig) and cfg.device == "cpu"
    from pgolf.config import to_dict

    assert {k: v for k, v in to_dict(cfg).items() if k != "device"} == {k: v for k, v in recorded.items()
                                                                         if k != "device"}


def test_curve_and_tensor_diffs():
    assert curve_diff({1: 5.0, 2: 4.0}, {1: 5.0, 2: 4.0}, 0.0) == (None, 0.0, 2)
    first, worst, _ = curve_diff({1: 5.0, 2: 4.0, 3: 3.0}, {1: 5.0, 2: 4.0001, 3: 3.5}, 0.0)
    assert first == (2, 4.0, 4.0001) and worst == pytest.approx(0.5 / 3.5)
    assert curve_diff({1: 5.0, 2: 4.0}, {1: 5.0}, 1e-3)[0] == (2, 4.0, None)
    assert curve_diff({1: 5.0}, {1: 5.0 * (1 + 1e-4)}, 1e-3)[0] is None  # within tolerance when not exact
    a = {"a": torch.ones(3), "b": torch.zeros(2), "i": torch.arange(3)}
    assert tensor_diff(a, {k: v.clone() for k, v in a.items()}, 0.0) == (None, 0.0)
    b = {**a, "b": torch.tensor([0.0, 0.25])}
    assert tensor_diff(a, b, 0.0)[0] == ("b", 0.25)
    assert tensor_diff(a, {"a": a["a"]}, 0.0)[0][0] == "b" and math.isinf(tensor_diff(a, {"a": a["a"]}, 0.0)[0][1])


def test_legal_run_retrains_bit_for_bit(legal_run, tmp_path):
    result, doc = verify_json(legal_run, "--reproduce-train", "--out", tmp_path / "v")
    assert result.exit_code == 0, [c for c in doc["checks"] if c["verdict"] == "FAIL"]
    [check] = checks_with_id(doc, "REPRO-2")
    print(check["detail"])
    assert check["verdict"] == "PASS" and "bit-identical" in check["detail"]
    plain, plain_doc = verify_json(legal_run, "--out", tmp_path / "v0")
    assert [c["verdict"] for c in checks_with_id(plain_doc, "REPRO-2")] == ["INFO"]


def test_model_tuned_on_val_after_training_fails(legal_run, embedded_data, tmp_path):
    run = copy_run(legal_run, tmp_path / "run")
    model, _, _ = load_model(run / "train")
    _, meta = artifacts.load_safetensors(run / "train" / MODEL_FILE)
    val = torch.from_numpy(datadir.load_val_tokens(embedded_data).astype(np.int64))[: 8 * 128 + 1]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(3):  # a few steps on val: the loss log of the real training is kept as it was
        loss = model.token_nll(val[:-1].view(8, 128), val[1:].view(8, 128)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    artifacts.save_safetensors(run / "train" / MODEL_FILE, {k: v.detach().contiguous()
                                                            for k, v in model.state_dict().items()}, meta)
    rehash(run)  # the forger re-hashes every manifest downstream
    files_only, files_doc = verify_json(run, "--out", tmp_path / "v0")
    assert files_only.exit_code == 0, [c for c in files_doc["checks"] if c["verdict"] == "FAIL"]
    result, doc = verify_json(run, "--reproduce-train", "--out", tmp_path / "v1")
    assert result.exit_code == 3, result.output
    [check] = checks_with_id(doc, "REPRO-2")
    print(check["detail"])
    assert check["verdict"] == "FAIL" and "the trained weights do not" in check["detail"]
    assert "first tensor " in check["detail"] and "RECIPE.toml" in check["detail"]


@pytest.mark.parametrize("change, why", [
    (lambda m: m["env"].update(device="cuda:0", world_size=8, gpu="NVIDIA H100"), "world size 8"),
    (lambda m: m["timing"].update(train_time_s=4000.0), "over the 600 s re-training cap"),
    (lambda m: m["timing"].update(stop_reason="time"), "stopped by its clock"),
])
def test_runs_not_retrained_here_get_the_command(legal_run, tmp_path, change, why):
    run = copy_run(legal_run, tmp_path / "run")
    edit_manifest(run / "train", change)
    rehash(run, ("train", "quant", "pack", "eval"))
    result, doc = verify_json(run, "--reproduce-train", "--out", tmp_path / "v")
    [check] = checks_with_id(doc, "REPRO-2")
    assert check["verdict"] == "WARN" and why in check["detail"] and "pgolf train --config RECIPE.toml" in check["detail"]
    if "world size 8" in why:
        assert "torchrun --standalone --nproc_per_node=8" in check["detail"]
    shutil.rmtree(run)
