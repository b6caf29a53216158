"""`pgolf verify`'s options from its flags or a pipeline's `[verify]` table (pure)."""

from __future__ import annotations

from collections.abc import Sequence

from pgolf.errors import ConfigError
from pgolf.verify.evidence import TRACKS, Options, track_named


def make_options(track: str | None = None, *, max_bytes: int | None = None, max_train_seconds: float | None = None,
                 max_eval_seconds: float | None = None, reference_bpb: Sequence[float] = (), probe: bool = False,
                 submission: bool = False, reproduce: bool = False,
                 audit: bool = False, reproduce_train: bool = False) -> Options:
    """Options from `pgolf verify`'s flags (or a `[verify]` table): a named track, or a submission,
    judges record conditions strictly; limits given explicitly apply on any hardware."""
    tr = track_named(track) if track is not None else None
    if track is not None and tr is None:
        raise ConfigError(f"unknown track {track!r}", f"use one of {', '.join(TRACKS)}")
    strict = tr is not None or submission
    tr = tr or TRACKS["10min_16mb"]
    explicit_limits = not tr.hardware  # a track without a hardware rule states limits for any machine
    refs = tuple(reference_bpb)
    return Options(
        track=tr, max_bytes=max_bytes if max_bytes is not None else tr.max_bytes,
        max_train_s=max_train_seconds if max_train_seconds is not None else tr.max_train_s,
        max_eval_s=max_eval_seconds if max_eval_seconds is not None else tr.max_eval_s,
        explicit_train=max_train_seconds is not None or explicit_limits,
        explicit_eval=max_eval_seconds is not None or explicit_limits,
        strict=strict, claim=bool(refs) or (submission and tr.record),  # several runs also claim
        reference_bpb=refs, probe=probe, reproduce=reproduce, audit=audit,
        reproduce_train=reproduce_train)


