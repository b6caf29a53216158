"""Checkpoint encoding (no pickles) and the append-only logs a resume truncates."""

import json

import pytest
import torch

from pgolf.data.stream import StreamPosition
from pgolf.runtime.metrics import LineFile, MetricsWriter, read_metrics
from pgolf.train.checkpoint import decode_state, encode_state
from pgolf.train.loop import TrainState


def test_optimizer_state_survives_json_and_safetensors_encoding():
    p = torch.nn.Parameter(torch.randn(3, 3))
    opt = torch.optim.Adam([{"params": [p], "base_lr": 0.1}], lr=0.1, betas=(0.9, 0.95))
    p.grad = torch.randn(3, 3)
    opt.step()
    state = TrainState(step=4, train_time_s=1.5, model={"w": p.detach()}, optimizers={"embed": opt.state_dict()},
                       stream=StreamPosition(1, 7), qat_on=True, ema={"w": p.detach() * 2}, swa=None,
                       rng_meta={"python": [3, [1, 2], None]}, rng_tensors={"rng.torch": torch.get_rng_state()},
                       last_train_loss=2.5, switches={"qat": 3})
    tensors, meta = encode_state(state, {"metrics_offset": 10})
    meta = json.loads(json.dumps(meta))  # what the safetensors header stores
    back, extra = decode_state({k: v.clone() for k, v in tensors.items()}, meta)
    assert extra == {"metrics_offset": 10} and back.stream == StreamPosition(1, 7) and back.qat_on
    assert back.swa is None and back.switches == {"qat": 3} and back.last_train_loss == 2.5
    torch.testing.assert_close(back.ema["w"], p.detach() * 2)
    saved = opt.state_dict()
    assert back.optimizers["embed"]["param_groups"] == saved["param_groups"]  # tuples and int keys intact
    assert set(back.optimizers["embed"]["state"]) == {0}
    opt2 = torch.optim.Adam([{"params": [p], "base_lr": 0.1}], lr=0.1)
    opt2.load_state_dict(back.optimizers["embed"])
    for k, v in saved["state"][0].items():
        torch.testing.assert_close(opt2.state_dict()["state"][0][k], v)


def test_decode_refuses_other_formats():
    with pytest.raises(ValueError, match="checkpoint"):
        decode_state({}, {"format": "something/1"})


def test_logs_truncate_back_to_a_checkpoint_offset(tmp_path):
    m = MetricsWriter(tmp_path / "m.jsonl")
    m.write({"event": "start"})
    m.write({"event": "step", "step": 1})
    mark = m.offset()
    m.write({"event": "step", "step": 2})
    m.close()
    m = MetricsWriter(tmp_path / "m.jsonl", truncate_to=mark)
    m.write({"event": "resume", "step": 1})
    m.close()
    assert [e["event"] for e in read_metrics(tmp_path / "m.jsonl")] == ["start", "step", "resume"]
    log = LineFile(tmp_path / "log.txt")
    log.write_line("a")
    log.close()
    log = LineFile(tmp_path / "log.txt", truncate_to=0)
    log.write_line("b")
    log.close()
    assert (tmp_path / "log.txt").read_text() == "b\n"
