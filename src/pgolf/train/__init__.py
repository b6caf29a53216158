"""Training (pure): `TrainConfig`, the loop over a token stream, EMA/SWA, validation during training."""

from pgolf.train.config import QatBits, TrainConfig
from pgolf.train.loop import Hooks, Runtime, TrainingInterrupted, TrainResult, TrainState, log_line, train
from pgolf.train.validate import ValData, ValResult, evaluate

__all__ = ["Hooks", "QatBits", "Runtime", "TrainConfig", "TrainResult", "TrainState", "TrainingInterrupted", "ValData",
           "ValResult", "evaluate", "log_line", "train"]
