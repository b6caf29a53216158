"""pgolf's command line: a thin Typer layer over `pgolf.stages`, one module per command."""

from __future__ import annotations

# Imported in pipeline order, which is the order `pgolf --help` lists them.
from pgolf.cli import data, train, quantize, pack, ttt_eval, verify, run, report  # noqa: F401  # isort: skip
from pgolf.cli.app import app


def main() -> None:
    app()


__all__ = ["app", "main"]
