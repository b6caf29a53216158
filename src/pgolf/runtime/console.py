"""Human output: one rich console on stderr (stdout is kept for --json data), quiet off rank 0."""

from __future__ import annotations

import os

from rich.console import Console
from rich.text import Text

console = Console(stderr=True, highlight=False, quiet=int(os.environ.get("RANK", "0")) != 0)


def info(message: str) -> None:
    console.print(message)


def warn(message: str) -> None:
    console.print(Text("warning: ", style="bold yellow") + Text(message), soft_wrap=True)


def error(message: str) -> None:
    """One line: messages may hold brackets, so they are never read as rich markup."""
    console.print(Text("error: ", style="bold red") + Text(message), soft_wrap=True)


def progress(**kwargs):
    """A transient rich progress bar when stderr is a terminal; a no-op context otherwise."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=True, disable=not console.is_terminal, **kwargs)
