"""The evaluation loop: score every chunk, commit it, and only then let the adapter see it.

For each chunk of the validation stream, in order (techniques.md §6.3; rules TTT-1..8, MET-4):

1. checksum the parameters (and adapter state);
2. score the chunk's windows under `torch.inference_mode()`, split across ranks;
3. checksum again: any change is a `LegalityError` (scoring must not adapt);
4. commit the per-token losses and target bytes to the ledger;
5. in "ttt" mode, unless this is the last chunk (of the stream, or of its document in
   document-independent mode) or the time budget says stop, open a `CommittedView` and let the
   adapter train on committed spans, then close the view.

val_bpb is computed from the ledger. Plain and sliding evaluation are the same loop without step 5.

With `tilt = "ngram"` (every mode) step 2 scores the tilted distribution: each position's hint comes
from the n-gram over the targets before it (`pgolf.eval.ngram_tilt.position_tilt`), so it is fixed
before the position is scored; the ledger header records the tilt. Adaptation trains on the model's
own NLL, as PR #2135 does.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from pgolf.config import to_dict
from pgolf.errors import ConfigError, DataError, LegalityError
from pgolf.eval.adapters import Adapter, ChunkInfo, GradientAdapter, adapts_at_document_end
from pgolf.eval.checksum import model_checksum
from pgolf.eval.config import EvalConfig
from pgolf.eval.dist import World
from pgolf.eval.ledger import LedgerEntry, ScoreLedger
from pgolf.eval.scoring import PositionTilt, autocast_for, score_windows, tilted_nll_of, token_nll_of
from pgolf.eval.view import CommittedView
from pgolf.eval.windows import chunk_ranges, chunk_window, document_segments, sliding_windows


@dataclasses.dataclass
class EvalResult:
    """The outcome of `evaluate`: the ledger and the metric computed from it, with timings (seconds)."""

    mode: str
    ledger: ScoreLedger
    score_time_s: float
    adapt_time_s: float
    warmup_time_s: float
    adapt_stopped_at: int | None  # first chunk the time budget kept from adapting, if any
    tilt_time_s: float = 0.0  # building the n-gram tilt's hints (on the eval clock)

    def summary(self) -> dict[str, Any]:
        s = self.ledger.summary()
        return {"mode": self.mode, "val_loss": s["val_loss"], "val_bpb": s["val_bpb"],
                "val_tokens": s["val_tokens"], "val_bytes": s["val_bytes"], "num_chunks": s["num_chunks"],
                "adapted_chunks": s["adapted_chunks"], "adapt_steps": s["adapt_steps"],
                "score_time_s": self.score_time_s, "adapt_time_s": self.adapt_time_s,
                "warmup_time_s": self.warmup_time_s, "adapt_stopped_at": self.adapt_stopped_at,
                "tilt_time_s": self.tilt_time_s}

    @property
    def val_bpb(self) -> float:
        return self.ledger.summary()["val_bpb"]

    @property
    def val_loss(self) -> float:
        return self.ledger.summary()["val_loss"]


def _check_inputs(tokens: np.ndarray, token_bytes: np.ndarray, cfg: EvalConfig, vocab_size: int | None) -> None:
    if cfg.seq_len <= 0:
        raise ConfigError("config key 'seq_len' is 0 (unresolved)", "set seq_len to the evaluation window length")
    if tokens.ndim != 1 or tokens.shape[0] < 2:
        raise DataError(f"the validation stream has {tokens.shape[0] if tokens.ndim == 1 else tokens.shape} "
                        "tokens; at least 2 are needed (one target)", "check the val shards")
    if token_bytes.shape != tokens.shape:
        raise DataError(f"{token_bytes.shape[0]} byte counts for {tokens.shape[0]} validation tokens",
                        "the byte sidecar must have one entry per token; rebuild with `pgolf data build`")
    if token_bytes.min() < 0:
        raise DataError("negative byte counts in the validation byte table", "rebuild with `pgolf data build`")
    if tokens.min() < 0 or (vocab_size is not None and tokens.max() >= vocab_size):
        raise DataError(f"validation token ids span [{tokens.min()}, {tokens.max()}], outside the model's "
                        f"vocabulary of {vocab_size}", "evaluate with the data's own tokenizer")


def _model_vocab(model: torch.nn.Module) -> int | None:
    cfg = getattr(model, "cfg", None) or getattr(model, "config", None)
    value = getattr(cfg, "vocab_size", None)
    return int(value) if value is not None else None


def synthetic_warmup(forward: Callable, cfg: EvalConfig, vocab_size: int, device: torch.device,
                     adapter: Adapter | None) -> None:
    """Compile/autotune on random ids, never on validation tokens (rules TTT-6)."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, vocab_size, (cfg.batch_seqs, cfg.seq_len), generator=gen).to(device)
    y = torch.randint(0, vocab_size, (cfg.batch_seqs, cfg.seq_len), generator=gen).to(device)
    with torch.inference_mode(), autocast_for(device, cfg.autocast):
        if cfg.tilt_config is None:
            forward(x, y)
        else:  # random hints, half of them gated
            hint = torch.randint(0, vocab_size, x.shape, generator=gen).to(device)
            gate = (torch.rand(x.shape, generator=gen) < 0.5).to(device)
            forward(x, y, hint, gate, torch.full(x.shape, cfg.tilt_boost, device=device))
    if adapter is not None:
        adapter.warmup(vocab_size)


def make_adapter(model: torch.nn.Module, cfg: EvalConfig, world: World) -> Adapter:
    """The adapter `cfg.ttt.method` names: the records' chunk training, or PR #2135's phased LoRA."""
    if cfg.ttt.method == "phased_lora":
        from pgolf.eval.lora_ttt import PhasedLoRAAdapter

        return PhasedLoRAAdapter(model, cfg.ttt, cfg.seq_len, world=world, autocast=cfg.autocast)
    return GradientAdapter(model, cfg.ttt, cfg.ttt_seq_len, world=world, autocast=cfg.autocast, compile=cfg.compile)


def evaluate(model: torch.nn.Module, tokens: np.ndarray | torch.Tensor, token_bytes: np.ndarray, cfg: EvalConfig,
             *, bos_id: int = 1, adapter: Adapter | None = None, world: World | None = None,
             clock: Callable[[], float] = time.perf_counter, deadline: float | None = None,
             vocab_size: int | None = None, meta: Mapping[str, Any] | None = None,
             on_chunk: Callable[[LedgerEntry], None] | None = None) -> EvalResult:
    """Score the validation stream `tokens` [N] with `model` (anything with `token_nll(idx_BT, tgt_BT)`).

    token_bytes [N]: the bytes each token adds to the normalized text (the sidecar or the lookup
    tables; entry 0 is never a target). Every position p in [0, N - 1) is scored exactly once.
    mode "ttt" adapts with `adapter` (default: `GradientAdapter` from `cfg.ttt`). `deadline` is a
    `clock()` time: past `deadline - cfg.deadline_margin_s` (projected) adaptation stops and
    scoring goes on; by default `cfg.time_budget_s` from now. `meta` goes into the ledger header.
    """
    world = world or World.current()
    tokens_np = tokens.cpu().numpy() if isinstance(tokens, torch.Tensor) else np.asarray(tokens)
    token_bytes = np.asarray(token_bytes)
    vocab_size = vocab_size if vocab_size is not None else _model_vocab(model)
    _check_inputs(tokens_np, token_bytes, cfg, vocab_size)
    if adapter is not None and cfg.mode != "ttt":
        raise ConfigError(f"an adapter was given but mode is {cfg.mode!r}", "use mode 'ttt'")
    if deadline is None and cfg.time_budget_s > 0:
        deadline = clock() + cfg.time_budget_s

    device = next(model.parameters()).device
    num_positions = tokens_np.shape[0] - 1
    stream = torch.from_numpy(tokens_np.astype(np.int32)).to(device)
    segments = (document_segments(tokens_np, bos_id) if cfg.per_document
                else np.array([[0, num_positions]], dtype=np.int64))
    chunks = chunk_ranges(segments, cfg.chunk_tokens)
    num_chunks = len(chunks)
    stride = cfg.window_stride

    model.eval()
    tilt_cfg = cfg.tilt_config
    token_nll = token_nll_of(model) if tilt_cfg is None else tilted_nll_of(model)
    forward = torch.compile(token_nll, dynamic=False) if cfg.compile else token_nll
    if cfg.mode == "ttt" and adapter is None:
        adapter = make_adapter(model, cfg, world)

    def checksum() -> str:
        return model_checksum(model, adapter.state() if adapter is not None else None)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    initial = checksum()
    t0 = clock()
    if cfg.compile:
        synthetic_warmup(forward, cfg, vocab_size or 2, device, adapter)
        sync()
        if checksum() != initial:
            raise LegalityError("the warm-up changed the parameters; it must leave the model as loaded")
    warmup_time = clock() - t0

    tilt: PositionTilt | None = None
    tilt_time = 0.0
    tilt_meta: dict[str, Any] = {}
    if tilt_cfg is not None:
        from pgolf.eval.ngram_tilt import position_tilt  # here: a submission file without the tilt leaves it out

        t0 = clock()
        hint, gate, beta = position_tilt(tokens_np, tilt_cfg)
        tilt = (torch.from_numpy(hint).to(device), torch.from_numpy(gate).to(device), torch.from_numpy(beta).to(device))
        tilt_time = clock() - t0
        tilt_meta = {"tilt": {"kind": cfg.tilt, "order": tilt_cfg.order, "threshold": tilt_cfg.threshold,
                              "boost": tilt_cfg.boost, "gated_positions": int(gate.sum()),
                              "source": "online n-gram over the scored targets before each position"}}

    header = {"mode": cfg.mode, "config": to_dict(cfg), "num_tokens": int(tokens_np.shape[0]),
              "seq_len": cfg.seq_len, "stride": stride, "world_size": world.size, **tilt_meta, **(meta or {})}
    ledger = ScoreLedger(num_positions, initial, header)
    score_time = adapt_time = 0.0
    max_adapt = 0.0
    stopped_at: int | None = None
    dirty = False  # the adapter changed something since the last reset
    current = initial  # the checksum of the state as it is now
    # What adapters can reach: the committed prefix only, copied in chunk by chunk as it is scored.
    # The view never holds the stream itself, so nothing an adapter can reach through it (private
    # attributes included) holds an unscored token.
    committed = torch.zeros_like(stream) if adapter is not None else stream

    try:
        for k, (c0, c1, seg) in enumerate(chunks.tolist()):
            seg_start, seg_end = segments[seg].tolist()
            reset = False
            partial = False
            if adapter is not None and cfg.doc_independent and c0 == seg_start and dirty:
                adapter.reset()  # a new document starts from the artifact's weights (PR #77)
                dirty, reset = False, True
                current = checksum()
                if current != initial:
                    raise LegalityError(f"the adapter's reset before chunk {k} did not restore the initial "
                                        "parameters: documents would not be independent (rules TTT-8)")
            elif adapter is not None and cfg.doc_windows and not cfg.doc_independent and c0 == seg_start and k > 0:
                adapter.reset()  # the adapter's own per-document reset; it may keep state (recorded as partial)
                dirty, partial = False, True
                current = checksum()

            t = clock()
            windows = (chunk_window((seg_start, seg_end), (c0, c1), cfg.seq_len) if cfg.chunk_windows
                       else sliding_windows((seg_start, seg_end), (c0, c1), cfg.seq_len, stride))
            losses = score_windows(forward, stream, windows, seq_len=cfg.seq_len, batch_seqs=cfg.batch_seqs,
                                   autocast=cfg.autocast, fixed_shape=cfg.compile, world=world, tilt=tilt)
            after = checksum()
            sync()
            score_time += clock() - t
            if after != current:
                raise LegalityError(f"parameters changed while chunk {k} (positions [{c0}, {c1})) was scored: "
                                    "scoring must not adapt (rules TTT-1)")
            entry = ledger.commit(c0, c1, losses.numpy(), token_bytes[c0 + 1 : c1 + 1], current, after, reset=reset,
                                  partial_reset=partial)
            if adapter is not None:  # positions [c0, c1) are scored: their inputs and targets are now readable
                committed[c0 : c1 + 1] = stream[c0 : c1 + 1]

            if adapter is not None:
                if k == num_chunks - 1 or (c1 == seg_end and not (cfg.doc_windows and adapts_at_document_end(adapter))):
                    ledger.mark("last")  # nothing scored after it could use what it would learn
                elif stopped_at is not None:
                    ledger.mark("deadline")
                else:
                    now = clock()
                    remaining_score = (num_positions - c1) * score_time / c1
                    if deadline is not None and now + max_adapt + remaining_score + cfg.deadline_margin_s > deadline:
                        stopped_at = k  # rules TIME-3: stop adapting, keep scoring
                        ledger.mark("deadline")
                    else:
                        progress = c0 / num_positions if cfg.doc_independent else k / max(num_chunks - 1, 1)
                        floor = seg_start if cfg.doc_independent else 0
                        view = CommittedView(committed, ledger, device, world, floor=floor)
                        try:
                            adapter.adapt(view, ChunkInfo(k, c0, c1, num_chunks, progress, (seg_start, seg_end), seg))
                        finally:
                            view.close()
                        current = checksum()
                        sync()
                        spent = clock() - now
                        adapt_time += spent
                        max_adapt = max(max_adapt, spent)
                        if not entry.steps and current != after:
                            raise LegalityError(f"the adapter changed parameters after chunk {k} without reading "
                                                "committed spans through its view (rules TTT-8)")
                        dirty = dirty or bool(entry.steps)
            if on_chunk is not None:
                on_chunk(entry)
    finally:
        if adapter is not None:
            adapter.close()

    assert ledger.complete, "the chunks must tile the stream"
    return EvalResult(cfg.mode, ledger, score_time, adapt_time, warmup_time, stopped_at, tilt_time)
