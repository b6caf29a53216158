"""`pgolf train`."""

from __future__ import annotations

from typing import Annotated

import typer

from pgolf.cli.app import app, not_implemented, user_errors


@app.command("train", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def train_command(
    ctx: typer.Context,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")] = False,
) -> None:
    """Train a model from a preset or config on a data directory."""
    with user_errors():
        not_implemented("train")
