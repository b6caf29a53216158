"""TrainConfig validation and the presets in configs/ (every one parsed)."""

import pytest

from pgolf import config as cfgmod
from pgolf.errors import ConfigError
from pgolf.model import GPT, ModelConfig, num_params
from pgolf.stages.train import PRESET_DIR, config_table, load_config, preset_names
from pgolf.train.config import QatBits, TrainConfig

PRESETS = ["backout", "banked-ve", "baseline", "int5-qat-ttt", "int5mlp-ttt", "recurrence", "tiny"]


def test_every_preset_parses_and_round_trips():
    assert set(PRESETS) <= set(preset_names())
    for name in preset_names():
        cfg = load_config(name)
        assert cfgmod.from_dict(TrainConfig, cfgmod.to_dict(cfg)) == cfg
        text = (PRESET_DIR / f"{name}.toml").read_text()
        assert text.startswith(f"# {name}:"), "each preset opens with a comment naming its source"


def test_baseline_preset_is_the_challenge_baseline():
    cfg = load_config("baseline")
    assert cfg.model == ModelConfig()
    assert cfg == TrainConfig(val_every=1000)  # pgolf's defaults are the baseline's, val cadence aside
    assert num_params(GPT(cfg.model)) == 17_059_912


def test_preset_settings_from_the_records():
    r = load_config("recurrence")
    assert r.model.recur_layers == (4, 5) and r.model.qk_gain_init == 5.0 and r.ema_decay == 0.997
    assert r.qat_bits.as_mapping() == {"attn": 6, "mlp": 6} and r.recur_start_frac == 0.0
    assert load_config("int5mlp-ttt").swa_every == 50
    assert load_config("banked-ve").qat_bits.as_mapping() == {"attn": 6, "mlp": 4, "bigram": 4}
    assert load_config("backout").model.backout_layer == 5
    assert load_config("int5-qat-ttt").model.xsa_last_n == 11


def test_unknown_preset_lists_the_valid_ones():
    with pytest.raises(ConfigError, match="unknown preset 'nope'.*baseline, .*tiny"):
        load_config("nope")


def test_pipeline_configs_beside_the_presets_are_not_presets(tmp_path, monkeypatch):
    from pgolf.stages import train as stage

    (tmp_path / "tiny.toml").write_text((PRESET_DIR / "tiny.toml").read_text())
    (tmp_path / "pipe.toml").write_text('[data]\nval_docs = 5\n[train]\npreset = "tiny"\n')
    monkeypatch.setattr(stage, "PRESET_DIR", tmp_path)
    assert preset_names() == ["tiny"]
    with pytest.raises(ConfigError, match="pipeline config for `pgolf run`"):
        load_config("pipe")


def test_overrides_are_typed_and_typos_are_named():
    cfg = load_config("tiny", overrides=["num_layers=2", "model.model_dim=64", "matrix_lr=0.01", "qat_bits.mlp=5"])
    assert (cfg.model.num_layers, cfg.model.model_dim, cfg.matrix_lr, cfg.qat_bits.mlp) == (2, 64, 0.01, 5)
    with pytest.raises(ConfigError, match="did you mean 'matrix_lr'"):
        load_config("tiny", overrides=["matrx_lr=1"])
    with pytest.raises(ConfigError, match="'iterations' must be int"):
        load_config("tiny", overrides=["iterations=many"])


def test_config_files_have_model_and_train_tables_only():
    with pytest.raises(ConfigError, match="unknown table"):
        config_table({"train": {}, "optim": {}}, "x.toml")
    with pytest.raises(ConfigError, match=r"\[model\] table"):
        config_table({"train": {"model": {}}}, "x.toml")


@pytest.mark.parametrize("override, key", [
    ("batch_tokens=1000", "batch_tokens"), ("ema_decay=1.0", "ema_decay"), ("warmdown_frac=2", "warmdown_frac"),
    ("muon_momentum=1.5", "muon_momentum"), ("qat_bits.mlp=9", "qat_bits.mlp"), ("swa_start_frac=0", "swa_start_frac"),
    ("muon_variant=fancy", "muon_variant"), ("ns_coefficients=cubic", "ns_coefficients"),
])
def test_bad_values_name_their_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config("tiny", overrides=[override])


def test_qat_needs_bits_and_grad_accum_needs_a_dividing_world():
    with pytest.raises(ConfigError, match="qat_bits"):
        TrainConfig(qat_start_frac=0.5, qat_bits=QatBits(attn=0, mlp=0))
    cfg = TrainConfig()
    assert cfg.grad_accum(1) == 8 and cfg.grad_accum(8) == 1
    with pytest.raises(ConfigError, match="world size 3"):
        cfg.grad_accum(3)


def test_optim_settings_are_read_from_the_train_config_not_copied():
    """Every OptimSettings field is a TrainConfig key with the same default, and is passed through."""
    import dataclasses

    from pgolf.optim import OptimSettings
    from pgolf.train.config import TrainConfig

    train_fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    for f in dataclasses.fields(OptimSettings):
        assert f.name in train_fields, f.name
        assert train_fields[f.name].default == f.default, f.name
    cfg = TrainConfig(matrix_lr=0.123, muon_wd=0.04, ns_coefficients="polar_express")
    s = cfg.optim_settings()
    assert (s.matrix_lr, s.muon_wd, s.ns_coefficients) == (0.123, 0.04, "polar_express")
