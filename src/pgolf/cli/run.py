"""`pgolf run`."""

from __future__ import annotations

from typing import Annotated

import typer

from pgolf.cli.app import app, not_implemented, user_errors


@app.command("run", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def run_command(
    ctx: typer.Context,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")] = False,
) -> None:
    """Run the whole pipeline from one config, reusing unchanged stages."""
    with user_errors():
        not_implemented("run")
