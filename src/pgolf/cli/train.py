"""`pgolf train`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pgolf.cli.app import app, emit, next_step, user_errors


@app.command(
    "train",
    epilog="Examples:\n\n"
           "  pgolf train --preset tiny --data runs/demo/data --out runs/demo/train\n\n"
           "  pgolf train --preset baseline --data data/datasets/fineweb10B_sp1024 --out runs/r1/train --set num_layers=11\n\n"
           "  torchrun --standalone --nproc_per_node=8 -m pgolf train --config my.toml --data DIR --out runs/r2/train\n\n"
           "  pgolf train --out runs/r1/train --data DIR --resume                 # continue an interrupted run",
)
def train_command(
    out: Annotated[Path, typer.Option(help="Output directory (an interrupted run waits in OUT.partial).")],
    data: Annotated[Path | None, typer.Option(help="A pgolf data directory, or a directory of challenge shards "
                                                   "(then --tokenizer names its SentencePiece model). Default: "
                                                   "./data/datasets/fineweb10B_sp1024 when it exists.")] = None,
    preset: Annotated[str | None, typer.Option(help="A preset from configs/: baseline, tiny, int5mlp-ttt, ...")] = None,
    config: Annotated[Path | None, typer.Option(help="A TOML file with \\[model] and \\[train] tables.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a config key: key=value (repeatable), "
                                                                 "e.g. --set num_layers=11 --set matrix_lr=0.02.")] = None,
    tokenizer: Annotated[Path | None, typer.Option(help="SentencePiece .model for shards without a pgolf "
                                                        "manifest (val_bpb needs it).")] = None,
    max_seconds: Annotated[float | None, typer.Option(help="Wall-clock cap on training (same as --set max_seconds=S).")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (same as --set seed=N).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the interrupted run in OUT.partial from its "
                                                          "last checkpoint.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing --out (and discard an interrupted "
                                                        "run).")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")] = False,
) -> None:
    """Train a model from a preset or a config file on a data directory."""
    with user_errors():
        from pgolf.errors import ConfigError
        from pgolf.runtime import dist
        from pgolf.stages import train as stage

        overrides = list(set_ or [])
        if max_seconds is not None:
            overrides.append(f"max_seconds={max_seconds}")
        if seed is not None:
            overrides.append(f"seed={seed}")
        given = preset is not None or config is not None
        if not given and not resume:
            raise ConfigError("no config given", f"pass --preset NAME ({', '.join(stage.preset_names())}) "
                                                 "or --config FILE.toml")
        if resume and overrides and not given:
            raise ConfigError("--set, --max-seconds and --seed would change the interrupted run's config",
                              "resume without them (the stored config is used), or start over with --force")
        # On --resume a given config must equal the stored one; without one, the stored one is used.
        cfg = stage.load_config(preset, config, overrides) if given else None
        source = f"preset:{preset}" if preset else (f"file:{config}" if config else "")
        manifest = stage.run(cfg, data, out, tokenizer=tokenizer, force=force, resume=resume, source=source)
        is_main = dist.from_env().is_main
        if is_main:  # one JSON document, however many ranks trained
            emit(stage.summary(manifest, out), json_out, title=f"train -> {out}")
    if not json_out and is_main:
        next_step(f"pgolf quantize {out}")
