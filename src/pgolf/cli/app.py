"""The Typer app and the helpers every command shares (errors -> exit codes, --json output, configs).

Commands import their stage inside the function body, so `pgolf --help` never imports torch.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import typer

from pgolf import __version__
from pgolf.errors import PgolfError

T = TypeVar("T")

app = typer.Typer(
    name="pgolf",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    help="Train, compress and legally evaluate small language models under a hard byte budget "
         "(OpenAI Parameter Golf: 16,000,000 bytes, 10 minutes of 8xH100, scored in val_bpb).\n\n"
         "Stages read and write versioned artifacts: data build -> train -> quantize -> pack -> ttt-eval -> "
         "verify; `pgolf run` runs them all from one config.",
    epilog="Exit codes: 0 success, 1 error (bad input, missing or corrupt artifact), 2 usage error, "
           "3 readable but non-compliant (verify FAILs, pack over the byte budget, run completed but its verify "
           "FAILs), 130 interrupted.",
)


def _version(value: bool) -> None:
    if not value:
        return
    try:
        import torch

        torch_v, cuda_v = torch.__version__, torch.version.cuda or "none"
        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    except ImportError:
        torch_v, cuda_v, gpu = "not installed", "none", "none"
    typer.echo(f"pgolf {__version__}\ntorch {torch_v}\ncuda {cuda_v}\ngpu {gpu}")
    raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the pgolf, torch and CUDA versions and exit."),
) -> None:
    """pgolf: the Parameter Golf toolkit."""


@contextmanager
def user_errors() -> Iterator[None]:
    """A PgolfError becomes one red line on stderr and its exit code; Ctrl-C exits 130."""
    from pgolf.runtime.console import error

    try:
        yield
    except PgolfError as e:
        error(str(e))
        raise typer.Exit(e.exit_code) from None
    except KeyboardInterrupt:
        error("interrupted; nothing half-written was left behind "
              "(pgolf train: rerun with --resume; pgolf run: rerun the same command)")
        raise typer.Exit(130) from None
    except OSError as e:  # the machine refused (full disk, permissions) outside a stage's own mapping
        from pgolf.stages.runner import os_error_line

        line = os_error_line(e, "pgolf could not read or write a file")
        if line is None:
            raise
        error(str(line))
        raise typer.Exit(line.exit_code) from None


def emit(data: Mapping[str, Any], json_out: bool, title: str = "") -> None:
    """--json: exactly one JSON document on stdout. Otherwise a readable table on stderr."""
    if json_out:
        sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
        sys.stdout.flush()
        return
    from rich.table import Table

    from pgolf.runtime.console import console

    table = Table(title=title or None, show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    for key, value in data.items():
        if isinstance(value, float):
            value = f"{value:.6g}"
        elif isinstance(value, int) and not isinstance(value, bool):
            value = f"{value:,}"
        elif isinstance(value, (dict, list)):
            value = json.dumps(value, default=str)
        table.add_row(key, str(value))
    console.print(table)


def next_step(text: str) -> None:
    from pgolf.runtime.console import console

    console.print(f"[dim]Next:[/] {text}", markup=True, soft_wrap=True)  # never broken: it is copied


def shown(path: Path) -> str:
    """A resolved path as a suggested command shows it: relative to the working directory when inside it."""
    try:
        return str(Path(path).relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def load_config(cls: type[T], config: Path | None, overrides: Sequence[str] | None, section: str | None = None,
                base: Mapping[str, Any] | None = None) -> T:
    """Dataclass defaults <- `base` <- the TOML file (or its `[section]`) <- `--set` overrides."""
    from pgolf import config as cfgmod

    table: dict[str, Any] = dict(base or {})
    if config is not None:
        raw = cfgmod.load_section(config, section) if section is not None else cfgmod.load_toml(config)
        table = cfgmod.merge_tables(table, raw)
    return cfgmod.build(cls, table, list(overrides or []))


def not_implemented(command: str) -> None:
    raise PgolfError(f"`pgolf {command}` is not implemented in pgolf {__version__} yet",
                     "see the README for the commands that are")
