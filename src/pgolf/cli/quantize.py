"""`pgolf quantize`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pgolf.cli.app import app, emit, next_step, user_errors


@app.command(
    "quantize",
    epilog="Examples:\n\n"
           "  pgolf quantize runs/demo/train --scheme int6 --out runs/demo/quant\n\n"
           "  pgolf quantize runs/r1/train --scheme int5mlp --set clip=search --set prune_frac=0.03 "
           "--eval-tokens 1000000\n\n"
           "  pgolf quantize runs/r1/train --scheme int6 --set gptq=true --set calib=self --json\n\n"
           "The val_bpb of --eval-tokens is a quick check on a prefix of the validation set; the full, legal "
           "score comes from `pgolf pack` then `pgolf ttt-eval`.",
)
def quantize_command(
    train_dir: Annotated[Path, typer.Argument(help="The train artifact to quantize (written by `pgolf train`).")],
    scheme: Annotated[str | None, typer.Option(help="int8 | int6 | int5mlp | int4mlp: the widths of the attention "
                                                    "and MLP matrices (default: the config's, else int8).")] = None,
    out: Annotated[Path | None, typer.Option(help="Output directory (default: quant/ next to TRAIN_DIR).")] = None,
    config: Annotated[Path | None, typer.Option(help="A TOML file with a \\[quantize] table.")] = None,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="Override a QuantizeConfig key: key=value (repeatable), e.g. --set clip=search "
                      "--set gptq=true.")] = None,
    eval_tokens: Annotated[int, typer.Option(help="Also report val_bpb of the float and the quantized model on the "
                                                  "first N validation tokens (plain windows; 0: no evaluation).")] = 0,
    data: Annotated[Path | None, typer.Option(help="Data directory for --eval-tokens and calibration (default: the "
                                                   "one the model was trained on).")] = None,
    calib_data: Annotated[Path | None, typer.Option(
        help="Training data for GPTQ calibration: a data directory or a fineweb_train_*.bin shard (default: --data, "
             "else the training data). Validation data is refused (rules DATA-7).")] = None,
    tokenizer: Annotated[Path | None, typer.Option(help="SentencePiece .model for --eval-tokens on shards without "
                                                        "a byte sidecar.")] = None,
    device: Annotated[str, typer.Option(help="auto (CUDA when available) | cpu | cuda.")] = "auto",
    force: Annotated[bool, typer.Option("--force", help="Replace an existing --out directory.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")] = False,
) -> None:
    """Quantize a trained model to low-bit integer codes and per-row scales (optionally with GPTQ)."""
    with user_errors():
        from pgolf.layout import next_to
        from pgolf.stages import quantize as stage

        out = out if out is not None else train_dir.parent / "quant"
        cfg = stage.load_config(train_dir, config, list(set_ or []), scheme)
        manifest = stage.run(cfg, train_dir, out, force=force, data=data, calib_data=calib_data,
                             tokenizer=tokenizer, eval_tokens=eval_tokens, device=device)
        emit(stage.summary(manifest, out), json_out, title=f"quantize -> {out}")
        if not json_out:
            stage.print_classes(out)
    if not json_out:
        next_step(f"pgolf pack {out} --out {next_to(out, 'pack')}")
