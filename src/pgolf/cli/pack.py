"""`pgolf pack`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pgolf.cli.app import app, emit, next_step, shown, user_errors


@app.command(
    "pack",
    epilog="Examples:\n\n"
           "  pgolf pack runs/demo/quant --out runs/demo/pack\n\n"
           "  pgolf pack runs/r1/quant --codec auto --json\n\n"
           "  pgolf pack runs/cpu/quant --set limit_bytes=1000000 --set mode=ttt --set eval.seq_len=512\n\n"
           "Over the byte limit the artifact is still written (to inspect) and the command exits 3; "
           "`pgolf verify` fails it.",
)
def pack_command(
    quant_dir: Annotated[Path, typer.Argument(help="The quant artifact to pack (written by `pgolf quantize`).")],
    out: Annotated[Path | None, typer.Option(help="Output directory (default: pack/ next to QUANT_DIR).")] = None,
    codec: Annotated[str | None, typer.Option(help="rans (default) | zstd | lzma | brotli | pergroup | auto | none: how "
                                                   "model.bin is compressed (same as --set codec=...).")] = None,
    config: Annotated[Path | None, typer.Option(help="A TOML file with a \\[pack] table (and \\[pack.eval]).")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a PackConfig key: key=value (repeatable), "
                                                                 "e.g. --set limit_bytes=1000000 --set mode=ttt.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing --out directory.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")] = False,
) -> None:
    """Compress a quantized model into model.bin, write the submission file, check the byte budget.

    Exit codes: 0 packed and within the limit; 1 error (nothing written); 3 packed but over the limit.
    """
    with user_errors():
        from pgolf.artifacts.quant import lineage_data
        from pgolf.errors import NonCompliantError
        from pgolf.layout import next_to
        from pgolf.stages import pack as stage

        out = out if out is not None else stage.default_out(quant_dir)
        cfg = stage.load_config(config, list(set_ or []), codec)
        manifest = stage.run(cfg, quant_dir, out, force=force)
        emit(stage.summary(manifest, out), json_out, title=f"pack -> {out}")
    if not manifest.metrics["fits"]:  # the artifact is written; the OVER BUDGET line said why
        raise typer.Exit(NonCompliantError.exit_code)
    if not json_out:
        data, tokenizer = lineage_data(quant_dir)
        inputs = (f" --data {shown(data)}" if data is not None else "") + \
            (f" --tokenizer {shown(tokenizer)}" if tokenizer is not None else "")
        next_step(f"pgolf ttt-eval {out}{inputs} --out {next_to(out, 'eval')}")
