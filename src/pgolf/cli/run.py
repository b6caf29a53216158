"""`pgolf run`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pgolf.cli.app import app, emit, user_errors


@app.command(
    "run",
    epilog="Examples:\n\n"
           "  pgolf run configs/demo.toml --out runs/demo                 # the whole pipeline; again: all reused\n\n"
           "  pgolf run my.toml --out runs/r1 --from quantize             # requantize the same trained model\n\n"
           "  pgolf run my.toml --out runs/exp --seeds 1337,42,2025 --json   # one run per seed + statistics\n\n"
           "  pgolf run configs/demo.toml --out runs/short --set train.iterations=50 --set eval.mode=plain\n\n"
           "Exit codes: 0 the run completed and verify passes, 1 error, 2 usage error, 3 the run completed and "
           "verify FAILs.",
)
def run_command(
    config: Annotated[Path, typer.Argument(help="Pipeline config: a TOML file with \\[data] \\[train] \\[quantize] "
                                                "\\[pack] \\[eval] \\[verify] tables.")],
    out: Annotated[Path, typer.Option(help="The run directory (stages are reused from it when unchanged).")],
    data: Annotated[Path | None, typer.Option(help="An existing data directory; replaces the config's \\[data] "
                                                   "table.")] = None,
    from_: Annotated[str | None, typer.Option(
        "--from", help="Rerun this stage and everything after it: data, train, quantize, pack, eval, "
                       "verify.")] = None,
    seeds: Annotated[str | None, typer.Option(help="Comma-separated seeds, e.g. 1337,42,2025: one run per seed "
                                                   "in OUT/seed-<N>/ (data shared), verified together.")] = None,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="Override a key of a table: table.key=value (repeatable), e.g. --set train.iterations=50 "
                      "--set quantize.scheme=int6.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Rerun every stage (and run into an existing directory "
                                                        "that is not a run).")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")] = False,
) -> None:
    """Run the whole pipeline from one config: data, train, quantize, pack, ttt-eval, verify, report.

    Each stage is reused when its config and inputs are those of the artifact already in OUT; an
    interrupted run resumes where it stopped (training from its last checkpoint).
    """
    with user_errors():
        from pgolf.cli.verify import show_report
        from pgolf.errors import NonCompliantError
        from pgolf.runtime.console import console
        from pgolf.stages import run as stage

        seed_list = stage.parse_seeds(seeds) if seeds is not None else None
        pipe = stage.load_pipeline(config, list(set_ or []), data)
        result = stage.run(pipe, out, seeds=seed_list, start=from_, force=force)
        show_report(result.verify, False)  # verify's table, on stderr
        doc = stage.summary(result)
        console.print(f"report: {doc['report']}", markup=False, highlight=False, soft_wrap=True)
        if json_out:
            emit(doc, True)
        if not doc["verify_ok"]:
            fails = sorted({c["id"] for c in result.verify.get("checks", []) if c["verdict"] == "FAIL"})
            raise NonCompliantError(f"the run completed but {len(fails)} rule(s) FAIL: {', '.join(fails)}",
                                    "see the verify table above")
