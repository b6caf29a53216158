"""Evaluation under torch.distributed: two gloo ranks on CPU give the one-process result."""

from __future__ import annotations

import math

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from test_eval_support import BOS, byte_counts, stream, tiny_gpt

from pgolf.eval import EvalConfig, TTTConfig, World, check_ledger, evaluate, parse_ledger

N = 181


def config(mode: str) -> EvalConfig:
    return EvalConfig(mode=mode, seq_len=16, stride=4, chunk_tokens=60, batch_seqs=3, time_budget_s=0,
                      ttt=TTTConfig(seq_len=10, epochs=2, batch_seqs=4, lr=0.05))


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, port: int, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        tokens = stream(N, seed=11)
        # TTT covers both halves: scoring split across ranks, gradients summed across ranks
        result = evaluate(tiny_gpt(), tokens, byte_counts(tokens), config("ttt"), bos_id=BOS)
        with open(f"{out}/ttt.{rank}.jsonl", "w") as f:
            f.write(result.ledger.to_jsonl())
        dist.barrier()  # neither rank tears gloo down while the other is still talking to it
    finally:
        dist.destroy_process_group()


def test_world_share_splits_contiguously():
    assert [World(r, 3).share(10) for r in range(3)] == [(0, 3), (3, 6), (6, 10)]
    assert World().share(7) == (0, 7)
    t = torch.arange(4)
    assert World().gather_concat(t) is t


@pytest.mark.slow
def test_two_ranks_equal_one_process(tmp_path):
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=2, join=True)
    tokens = stream(N, seed=11)
    text0 = (tmp_path / "ttt.0.jsonl").read_text()
    assert text0 == (tmp_path / "ttt.1.jsonl").read_text()  # every rank holds the same ledger
    single = evaluate(tiny_gpt(), tokens, byte_counts(tokens), config("ttt"), bos_id=BOS, world=World())
    header, dist_entries, dist_summary = parse_ledger(text0)
    ones = single.ledger.entries
    assert header["world_size"] == 2
    assert [(e.start, e.end, e.byte_sum) for e in dist_entries] == [(e.start, e.end, e.byte_sum) for e in ones]
    assert [[s.spans for s in e.steps] for e in dist_entries] == [[s.spans for s in e.steps] for e in ones]
    for a, b in zip(dist_entries, ones):
        assert math.isclose(a.nll_sum, b.nll_sum, rel_tol=1e-5)
    assert math.isclose(dist_summary["val_bpb"], single.val_bpb, rel_tol=1e-5)
    assert check_ledger(text0, num_positions=N - 1).ok
