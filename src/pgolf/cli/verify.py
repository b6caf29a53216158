"""`pgolf verify`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pgolf.cli.app import app, emit, user_errors

_LIMITS = "Limits and track"
_CLAIM = "Record claim and submission"


@app.command(
    "verify",
    epilog="Examples:\n\n"
           "  pgolf verify runs/r1                                   # a run directory (or runs/r1/eval)\n\n"
           "  pgolf verify runs/r1 --reproduce                       # also re-execute the evaluation (REPRO-1)\n\n"
           "  pgolf verify runs/r1 --reproduce --reproduce-train     # and re-train from the recipe (REPRO-2)\n\n"
           "  pgolf verify runs/s42 runs/s1337 runs/s2024 --reference-bpb 1.0810 --reference-bpb 1.0812 "
           "--reference-bpb 1.0809 --probe\n\n"
           "  pgolf verify runs/exp --track 10min_16mb --submission records/2026-05-02_My_Run --author 'A B' "
           "--github-id ab --name 'My run' --blurb '...'\n\n"
           "Exit codes: 0 nothing FAILs, 1 the input cannot be read, 2 usage error, 3 a check FAILs "
           "(and --submission writes nothing).",
)
def verify_command(
    dirs: Annotated[list[Path], typer.Argument(help="Eval, stage or run directories (one per seed), or a directory "
                                                    "of per-seed run directories.")],
    max_bytes: Annotated[int | None, typer.Option(help="Artifact cap in decimal bytes (default 16,000,000).",
                                                  rich_help_panel=_LIMITS)] = None,
    max_train_seconds: Annotated[float | None, typer.Option(help="Training time limit; applies on any hardware "
                                                                 "(default 600, judged on 8xH100 only).",
                                                            rich_help_panel=_LIMITS)] = None,
    max_eval_seconds: Annotated[float | None, typer.Option(help="Evaluation time limit; applies on any hardware "
                                                                "(default 600, judged on 8xH100 only).",
                                                           rich_help_panel=_LIMITS)] = None,
    track: Annotated[str | None, typer.Option(help="Claim a track: 10min_16mb (record: 8xH100 required), "
                                                   "non_record_16mb, cpu-golf (1,000,000 bytes, 60 s train, "
                                                   "180 s eval, no hardware rule).", rich_help_panel=_LIMITS)] = None,
    reference_bpb: Annotated[list[str] | None, typer.Option(
        help="The reference record's per-seed val_bpb (repeat the flag, or comma-separate); one value gives a "
             "one-sample test and a WARN.", rich_help_panel=_CLAIM)] = None,
    probe: Annotated[bool, typer.Option(
        "--probe", help="Probe the packed model on CPU: normalization, target independence, causality, document "
                        "isolation, no mutation, replay of the ledger.")] = False,
    probe_positions: Annotated[int, typer.Option(help="Positions per probe (at least 1,000 for a real check).")] = 1000,
    reproduce: Annotated[bool, typer.Option(
        "--reproduce", help="Re-execute each evaluation from the packed artifact in a fresh `pgolf ttt-eval` process "
                            "(CPU, the recorded eval config, the eval's data) and compare its ledger with the "
                            "claimed one chunk by chunk (REPRO-1).")] = False,
    audit: Annotated[bool, typer.Option(
        "--audit", help="Run each packed train_gpt.py beside its model.bin on a slice of the val data under an "
                        "audit hook: any file, socket, process or code outside the counted bytes and the declared "
                        "data FAILs (AUDIT-1).")] = False,
    reproduce_train: Annotated[bool, typer.Option(
        "--reproduce-train", help="Re-train each run from its train manifest's recorded config and data in a fresh "
                                  "`pgolf train` process (one-process CPU runs up to 600 s; otherwise the command is "
                                  "printed) and compare the loss curve and the weights (REPRO-2). With --reproduce: "
                                  "both re-executions.")] = False,
    submission: Annotated[Path | None, typer.Option(help="Write the records folder here (refused when a check FAILs).",
                                                    rich_help_panel=_CLAIM)] = None,
    author: Annotated[str | None, typer.Option(help="submission.json author.", rich_help_panel=_CLAIM)] = None,
    github_id: Annotated[str | None, typer.Option(help="submission.json github_id.", rich_help_panel=_CLAIM)] = None,
    name: Annotated[str | None, typer.Option(help="submission.json name (the folder is DATE_Name).",
                                             rich_help_panel=_CLAIM)] = None,
    blurb: Annotated[str | None, typer.Option(help="submission.json blurb.", rich_help_panel=_CLAIM)] = None,
    date: Annotated[str | None, typer.Option(help="submission.json date, YYYY-MM-DD (default: today, UTC).",
                                             rich_help_panel=_CLAIM)] = None,
    submission_config: Annotated[Path | None, typer.Option(help="TOML file with a \\[submission] table (author, "
                                                                "github_id, name, blurb, date).",
                                                           rich_help_panel=_CLAIM)] = None,
    out: Annotated[Path | None, typer.Option(
        help="Where to write the verify report (default: <run dir>/verify).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing --submission folder.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON on stdout.")] = False,
) -> None:
    """Check size, time, lineage, data, legality and statistics of runs against the challenge rules."""
    with user_errors():
        from pgolf.errors import NonCompliantError
        from pgolf.stages import verify as stage
        from pgolf.verify.options import make_options

        options = make_options(track, max_bytes=max_bytes, max_train_seconds=max_train_seconds,
                                     max_eval_seconds=max_eval_seconds, reference_bpb=_floats(reference_bpb or []),
                                     probe=probe, submission=submission is not None, reproduce=reproduce,
                                     audit=audit, reproduce_train=reproduce_train)
        tr = options.track
        probe_cfg = None
        if probe:
            from pgolf.verify.probes import ProbeConfig

            probe_cfg = ProbeConfig(positions=probe_positions)
        request = None
        if submission is not None:
            request = _request(submission, tr.name, force, submission_config,
                               dict(author=author, github_id=github_id, name=name, blurb=blurb, date=date))
        report = stage.run(dirs, options, out=out, probe_cfg=probe_cfg, submission=request)
        show_report(report, json_out)
        if not report["ok"]:
            fails = sorted({c["id"] for c in report["checks"] if c["verdict"] == "FAIL"})
            what = "refusing to write the submission: " if submission is not None else ""
            raise NonCompliantError(f"{what}{len(fails)} rule(s) FAIL: {', '.join(fails)}",
                                    "see the checks above (or --json)")


def _floats(values: list[str]) -> list[float]:
    from pgolf.errors import ConfigError

    out = []
    for v in values:
        for part in str(v).split(","):
            if part.strip():
                try:
                    out.append(float(part))
                except ValueError:
                    raise ConfigError(f"--reference-bpb {part!r} is not a number",
                                      "pass bpb values like 1.0810") from None
    return out


def _request(out: Path, track: str, force: bool, config: Path | None, given: dict):
    from pgolf import config as cfgmod
    from pgolf.artifacts.submission_folder import SubmissionRequest
    from pgolf.verify.records_folder import SubmissionInfo

    table: dict = {}
    if config is not None:
        raw = cfgmod.load_toml(config)
        table = dict(raw.get("submission", raw))
    table.update({k: v for k, v in given.items() if v is not None})
    table["track"] = track
    info = cfgmod.build(SubmissionInfo, table, [])
    return SubmissionRequest(out=out, info=info, force=force)


_STYLE = {"PASS": "green", "WARN": "yellow", "FAIL": "bold red", "INFO": "dim"}


def show_report(report: dict, json_out: bool) -> None:
    """verify's report: JSON on stdout with --json, else a table of checks on stderr."""
    if json_out:
        emit(report, True)
        return
    from rich.table import Table
    from rich.text import Text

    from pgolf.runtime.console import console

    table = Table(title=f"pgolf verify ({report['ruleset']}, track {report['track']})", show_lines=False,
                  box=None, pad_edge=False, expand=False)
    table.add_column("", no_wrap=True)
    table.add_column("rule", no_wrap=True)
    table.add_column("status", style="dim", no_wrap=True)
    table.add_column("detail", overflow="fold")
    for c in report["checks"]:
        status = f"{c['status']} {c['citation']}" if c.get("status") and not str(c["status"]).startswith("RULING") \
            else (c.get("status") or "")
        table.add_row(Text(c["verdict"], style=_STYLE[c["verdict"]]), c["id"], status, Text(c["detail"]))
    console.print(table)
    k = report["counts"]
    size = f"{report['total_bytes']:,}" if report.get("total_bytes") is not None else "?"
    bpb = f"{report['val_bpb']:.6f}" if report.get("val_bpb") is not None else "?"
    verdict = Text("OK" if report["ok"] else "NOT COMPLIANT", style="bold green" if report["ok"] else "bold red")
    console.print(Text.assemble(verdict, f"  {k['PASS']} PASS, {k['WARN']} WARN, {k['FAIL']} FAIL, {k['INFO']} INFO; "
                                         f"total_bytes {size}; val_bpb {bpb}; report in {report['out']}"))
    if report.get("submission"):
        console.print(f"submission folder: {report['submission']}")
