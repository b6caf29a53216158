"""`pgolf report`."""

from __future__ import annotations

from typing import Annotated

import typer

from pgolf.cli.app import app, not_implemented, user_errors


@app.command("report", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def report_command(
    ctx: typer.Context,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")] = False,
) -> None:
    """Summarize runs in markdown with PNG plots."""
    with user_errors():
        not_implemented("report")
