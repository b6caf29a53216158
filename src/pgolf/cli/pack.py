"""`pgolf pack`."""

from __future__ import annotations

from typing import Annotated

import typer

from pgolf.cli.app import app, not_implemented, user_errors


@app.command("pack", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def pack_command(
    ctx: typer.Context,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")] = False,
) -> None:
    """Compress quantized weights and write the submission file, checking the byte budget."""
    with user_errors():
        not_implemented("pack")
