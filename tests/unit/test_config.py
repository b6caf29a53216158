from dataclasses import dataclass, field
from typing import Literal

import pytest

from pgolf import config as C
from pgolf.errors import ConfigError


@dataclass(frozen=True)
class Inner:
    num_layers: int = 9
    dim: int = 512
    act: Literal["relu2", "swiglu"] = "relu2"
    layers: tuple[int, ...] = ()


@dataclass(frozen=True)
class Head:
    dim: int = 3


@dataclass(frozen=True)
class Outer:
    model: Inner = field(default_factory=Inner)
    lr: float = 0.04
    name: str = "x"
    head: "Head" = field(default_factory=lambda: Head())  # head.dim and model.dim: 'dim' is ambiguous
    ema: float | None = None
    flag: bool = False

    def __post_init__(self):
        C.check(self.lr > 0, "lr", "must be positive")


def test_defaults_toml_and_overrides_precedence():
    cfg = C.build(Outer, {"lr": 0.02, "model": {"num_layers": 11}}, ["num_layers=12", "model.act=\"swiglu\""])
    assert cfg.model.num_layers == 12 and cfg.lr == 0.02 and cfg.model.act == "swiglu"
    assert C.from_dict(Outer, C.to_dict(cfg)) == cfg


def test_override_values_are_typed():
    cfg = C.apply_overrides(Outer(), ["lr=1", "layers=[4, 5]", "flag=true", "ema=0.997", "name=abc", "act=swiglu"])
    assert cfg.lr == 1.0 and isinstance(cfg.lr, float)
    assert cfg.model.layers == (4, 5) and cfg.flag is True and cfg.ema == 0.997 and cfg.name == "abc"
    assert C.apply_overrides(cfg, ["ema=none"]).ema is None


@pytest.mark.parametrize("override, message", [
    ("num_layer=3", "unknown config key 'num_layer'.*did you mean 'num_layers'"),
    ("dim=3", "ambiguous; write one of: model.dim, head.dim"),
    ("lr=fast", "'lr' must be float"),
    ("num_layers=1.5", "'model.num_layers' must be int"),
    ("flag=1", "'flag' must be bool"),
    ("act=gelu", "must be one of 'relu2', 'swiglu'"),
    ("lr=-1", "'lr' must be positive"),
    ("novalue", "not of the form key=value"),
])
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        C.apply_overrides(Outer(), [override])


def test_unknown_table_key_lists_valid_keys():
    with pytest.raises(ConfigError, match=r"unknown config key 'dims' in \[model\].*valid keys: act, dim, layers, num_layers"):
        C.from_dict(Outer, {"model": {"dims": 3}})


def test_load_toml_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        C.load_toml(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("lr = = 3\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        C.load_toml(bad)


def test_config_hash_is_stable():
    assert C.config_hash(Outer()) == C.config_hash(C.from_dict(Outer, C.to_dict(Outer())))
    assert C.config_hash(Outer()) != C.config_hash(Outer(lr=0.1))
