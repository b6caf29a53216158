"""`pgolf ttt-eval`."""

from __future__ import annotations

import enum
import time
from pathlib import Path
from typing import Annotated

import typer

from pgolf.cli.app import app, emit, next_step, user_errors


class Mode(str, enum.Enum):
    plain = "plain"
    sliding = "sliding"
    ttt = "ttt"


@app.command(
    "ttt-eval",
    epilog="Examples:\n\n"
           "  pgolf ttt-eval runs/r1/pack --data runs/r1/data            # sliding, stride 64 -> runs/r1/eval\n\n"
           "  pgolf ttt-eval runs/r1/pack --data DIR --out runs/r1/eval --mode ttt --compare-plain --json\n\n"
           "  torchrun --standalone --nproc_per_node=8 -m pgolf ttt-eval runs/r1/pack --data DIR --mode ttt\n\n"
           "  pgolf ttt-eval runs/r1/pack --data DIR --mode ttt --set time_budget_s=180 --set ttt.epochs=1\n\n"
           "  pgolf ttt-eval runs/r1/pack --data DIR --set tilt=ngram              # PR #2135's n-gram tilt\n\n"
           "  pgolf ttt-eval runs/r1/pack --data DIR --config sota-eval.toml       # its phased LoRA TTT (docs/eval.md)",
)
def ttt_eval_command(
    pack: Annotated[Path, typer.Argument(help="A pack directory (`pgolf pack`): its model.bin is what is scored.")],
    data: Annotated[Path | None, typer.Option(help="The data directory whose val split is scored (default: the "
                                                   "challenge's ./data/datasets/fineweb10B_sp1024).")] = None,
    out: Annotated[Path | None, typer.Option(help="Output directory (default: eval/ next to PACK).")] = None,
    mode: Annotated[Mode | None, typer.Option(help="plain (non-overlapping windows), sliding (stride 64) or ttt "
                                                   "(sliding + score-first test-time training). Default: the "
                                                   "evaluation `pgolf pack` recorded (sliding unless it set "
                                                   "another).")] = None,
    config: Annotated[Path | None, typer.Option(help="A TOML file with an \\[eval] table (or evaluation keys at its "
                                                     "top level; TTT options in \\[eval.ttt]).")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override an evaluation key: key=value (repeatable), "
                                                                 "e.g. --set stride=64 --set ttt.epochs=1.")] = None,
    compare_plain: Annotated[bool, typer.Option("--compare-plain", help=(
        "With --mode ttt: after the reported TTT pass, score the same windows again without adaptation and report "
        "plain_val_bpb and ttt_gain_bpb (a separate diagnostic pass; the reported score stays the TTT "
        "pass)."))] = False,
    tokenizer: Annotated[Path | None, typer.Option(help="SentencePiece .model of official shards without a pgolf "
                                                        "manifest (a pgolf data directory uses its own).")] = None,
    device: Annotated[str, typer.Option(help="auto (this rank's GPU when there is one), cpu or cuda.")] = "auto",
    force: Annotated[bool, typer.Option("--force", help="Replace an existing --out directory.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")] = False,
) -> None:
    """Score the packed model on the validation set: plain, sliding-window or score-first TTT, with a ledger."""
    started = time.perf_counter()  # the eval clock (rules TIME-3) runs from here: before torch or model.bin is loaded
    with user_errors():
        from pgolf.runtime import dist
        from pgolf.stages import ttt_eval as stage

        # The evaluation pack recorded for the artifact (what its train_gpt.py runs) is the starting point.
        cfg = stage.load_config(config, set_ or [], mode.value if mode is not None else None, pack=pack)
        out = out if out is not None else stage.default_out(pack)
        manifest = stage.run(cfg, pack, data, out, tokenizer=tokenizer, device=device, compare_plain=compare_plain,
                             force=force, started=started)
        is_main = dist.from_env().is_main
        if is_main:  # one JSON document, however many ranks ran
            emit(stage.summary(manifest, out), json_out, title=f"ttt-eval -> {out}")
    if not json_out and is_main:
        next_step(f"pgolf verify {stage.verify_target(out)}")
