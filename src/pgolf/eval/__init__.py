"""Evaluation (pure): exact val_bpb by plain or sliding windows and legal score-first TTT, recorded in
a score ledger. No file I/O here; `pgolf.stages.ttt_eval` reads the artifacts and writes the results."""

from pgolf.eval.adapters import Adapter, ChunkInfo, GradientAdapter
from pgolf.eval.checksum import model_checksum, tensor_checksum
from pgolf.eval.config import EvalConfig, TTTConfig
from pgolf.eval.dist import World
from pgolf.eval.ledger import AdaptStep, LedgerCheck, LedgerEntry, ScoreLedger, check_ledger, parse_ledger
from pgolf.eval.loop import EvalResult, evaluate, synthetic_warmup
from pgolf.eval.view import CommittedView
from pgolf.eval.windows import chunk_ranges, document_segments, sliding_windows

__all__ = [
    "Adapter", "AdaptStep", "ChunkInfo", "CommittedView", "EvalConfig", "EvalResult", "GradientAdapter",
    "LedgerCheck", "LedgerEntry", "ScoreLedger", "TTTConfig", "World", "check_ledger", "chunk_ranges",
    "document_segments", "evaluate", "model_checksum", "parse_ledger", "sliding_windows", "synthetic_warmup",
    "tensor_checksum",
]
