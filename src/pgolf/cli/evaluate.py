"""`pgolf ttt-eval`."""

from __future__ import annotations

from typing import Annotated

import typer

from pgolf.cli.app import app, not_implemented, user_errors


@app.command("ttt-eval", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def evaluate_command(
    ctx: typer.Context,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")] = False,
) -> None:
    """Score the packed model on the validation set: plain, sliding-window or score-first TTT."""
    with user_errors():
        not_implemented("ttt-eval")
