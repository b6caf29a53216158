"""The pgolf GPT (pure): `ModelConfig`, `GPT`, and the parameter classification shared by the
optimizers, QAT and quantization (`param_class`, `CONTROL_PATTERNS`)."""

from pgolf.model.config import ModelConfig
from pgolf.model.gpt import GPT
from pgolf.model.params import (
    CONTROL_PATTERNS,
    PARAM_CLASSES,
    QAT_CLASSES,
    num_params,
    param_class,
    params_by_class,
    qat_class,
)

__all__ = [
    "CONTROL_PATTERNS",
    "GPT",
    "PARAM_CLASSES",
    "QAT_CLASSES",
    "ModelConfig",
    "num_params",
    "param_class",
    "params_by_class",
    "qat_class",
]
