"""`pgolf report`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pgolf.cli.app import app, emit, user_errors


@app.command(
    "report",
    epilog="Examples:\n\n"
           "  pgolf report runs/demo                          # -> runs/demo/report/report.md + PNGs\n\n"
           "  pgolf report runs/int6 runs/int5mlp --out runs/compare --json   # two runs compared\n\n"
           "  pgolf report runs/exp                           # a --seeds run: every seed, overlaid",
)
def report_command(
    runs: Annotated[list[Path], typer.Argument(help="Run directories (train/ quant/ pack/ eval/), or directories of "
                                                    "runs (`pgolf run --seeds`: seed-<N>/).")],
    out: Annotated[Path | None, typer.Option(help="Output directory (default: RUN_DIR/report for one run, "
                                                  "report/ in the common parent of several).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")] = False,
) -> None:
    """Summarize runs in markdown with PNG plots: loss curves, val_bpb per stage, bytes by tensor class."""
    with user_errors():
        from pgolf.stages import report as stage

        found, verify_dir = stage.find_runs(runs)
        out = out if out is not None else stage.default_out(runs)
        manifest = stage.run(found, out, verify_dir=verify_dir)
        doc = stage.summary(manifest, out)
        if json_out:
            emit(doc, True)
        else:
            from pgolf.runtime.console import console

            console.print(f"report: {doc['markdown']}", markup=False, highlight=False, soft_wrap=True)
            for path in doc["plots"]:
                console.print(f"  {path}", markup=False, highlight=False, soft_wrap=True)
