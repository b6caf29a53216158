"""TrainConfig validation and the presets in configs/ (every one parsed)."""

import pytest
import torch

from pgolf import config as cfgmod
from pgolf.errors import ConfigError
from pgolf.model import GPT, ModelConfig, num_params
from pgolf.stages.train import PRESET_DIR, config_table, load_config, preset_names
from pgolf.train.config import QatBits, TrainConfig

PRESETS = ["backout", "banked-ve", "baseline", "int5-qat-ttt", "int5mlp-ttt", "recurrence", "sota", "tiny"]


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
    # PR #1406's late QAT reaches only its CastedLinear modules (tests/reference/test_pr1406.py)
    assert r.qat_bits.as_mapping() == {"bigram_proj": 6, "value_embed_proj": 6} and r.recur_start_frac == 0.0
    assert r.model.recur_placement == "after" and r.qat_start_lr_mult == 0.15
    assert load_config("int5mlp-ttt").swa_every == 50
    assert load_config("banked-ve").qat_bits.as_mapping() == {"attn": 6, "mlp": 4, "bigram": 4, "bigram_proj": 4,
                                                              "value_embed_proj": 6}
    assert load_config("backout").model.backout_layer == 5 and load_config("backout").ema_start_step == 50
    # PR #861's code (XSA_LAYERS default 4), not its README (tests/reference/test_pr861.py)
    assert load_config("int5-qat-ttt").model.xsa_last_n == 4 and load_config("int5-qat-ttt").decoder_lr_mult == 2.0
    # PR #2135's launch (tests/reference/test_pr2135.py): SMEAR_GATE_BOS_FIX=0, ROPE_YARN off, 35,945,673 params
    sota = load_config("sota")
    assert sota.model.bos_reset is False and sota.model.rope_ref_len == 0 and sota.recur_start_frac == 0.35
    assert (sota.embed_wd, sota.adam_wd, sota.ema_decay, sota.beta2) == (0.085, 0.02, 0.9965, 0.99)
    with torch.device("meta"):
        assert num_params(GPT(sota.model)) == 35_945_673


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
    ("ema_start_step=-1", "ema_start_step"), ("decoder_lr_mult=0", "decoder_lr_mult"), ("embed_wd=-0.5", "embed_wd"),
    ("qat_start_lr_mult=1.5", "qat_start_lr_mult"), ("qat_scale_floor=-0.1", "qat_scale_floor"),
    ("aux_groups.bigram_proj=muon", "aux_groups.bigram_proj"), ("qat_bits.bigram_proj=1", "qat_bits.bigram_proj"),
])
def test_bad_values_name_their_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config("tiny", overrides=[override])


def test_qat_needs_bits_and_grad_accum_needs_a_dividing_world():
    with pytest.raises(ConfigError, match="qat_bits"):
        TrainConfig(qat_start_frac=0.5, qat_bits=QatBits(attn=0, mlp=0))
    with pytest.raises(ConfigError, match="qat_bits"):
        TrainConfig(qat_start_lr_mult=0.15, qat_bits=QatBits(attn=0, mlp=0))
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
