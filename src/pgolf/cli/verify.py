"""`pgolf verify`."""

from __future__ import annotations

from typing import Annotated

import typer

from pgolf.cli.app import app, not_implemented, user_errors


@app.command("verify", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def verify_command(
    ctx: typer.Context,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")] = False,
) -> None:
    """Check size, time, lineage, data, legality and statistics of runs."""
    with user_errors():
        not_implemented("verify")
