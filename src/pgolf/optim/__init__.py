"""Optimizers (pure): Muon with its variants, Parallel Muon, the baseline's optimizer split, and schedules."""

from pgolf.optim.groups import GROUPS, OptimizerSet, OptimSettings, build_optimizers, split_params
from pgolf.optim.muon import NS_COEFFICIENTS, Muon, newton_schulz
from pgolf.optim.parallel_muon import ParallelMuon
from pgolf.optim.schedules import lr_multiplier, muon_momentum, swa_collects, switched_on, training_progress

__all__ = ["GROUPS", "NS_COEFFICIENTS", "Muon", "OptimSettings", "OptimizerSet", "ParallelMuon", "build_optimizers",
           "lr_multiplier", "muon_momentum", "newton_schulz", "split_params", "swa_collects", "switched_on",
           "training_progress"]
