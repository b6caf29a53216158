"""report.md: the runs' numbers as markdown tables, with the figures beside them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pgolf.report.budget import METHOD
from pgolf.report.summary import RunSummary, stage_bpb

# The figures report.md embeds, by key (the stage writes them as <key>.png).
PLOT_TITLES = {"loss": "Training and validation loss", "bpb": "val_bpb at each stage",
               "budget": "Byte budget by component", "compare": "val_bpb against artifact size"}


def _n(value: Any, fmt: str = ",") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    try:
        return format(value, fmt)
    except (TypeError, ValueError):
        return str(value)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def _image(plots: Mapping[str, str], key: str) -> list[str]:
    return [f"![{PLOT_TITLES[key]}]({plots[key]})", ""] if key in plots else []


def _summary(runs: Sequence[RunSummary]) -> list[str]:
    rows = []
    for r in runs:
        t, q, p, e = r.train or {}, r.quant or {}, r.pack or {}, r.eval or {}
        gap = f"{q['quant_gap_bpb']:+.4f} ({_n(q.get('eval_tokens'))} tokens)" if "quant_gap_bpb" in q else "n/a"
        rows.append([r.label, _n(r.seed, "d"), _n(t.get("steps")), _n(t.get("params")),
                     _n(t.get("train_time_s"), ".1f"), _n(t.get("val_bpb"), ".4f"), q.get("scheme") or "n/a", gap,
                     f"{_n(e.get('val_bpb'), '.4f')} ({e.get('mode', 'n/a')})", _n(p.get("total_bytes")),
                     _n(p.get("fits"))])
    return _table(["run", "seed", "steps", "params", "train s", "val_bpb float", "scheme", "quantization gap",
                   "val_bpb final (mode)", "total bytes", "fits"], rows)


def _stages(runs: Sequence[RunSummary]) -> list[str]:
    rows = []
    for r in runs:
        for p in stage_bpb(r):
            ref = f"{p.float_bpb:.4f} ({p.val_bpb - p.float_bpb:+.4f})" if p.float_bpb is not None else ""
            rows.append([r.label, p.stage, p.detail, f"{p.val_bpb:.4f}", ref])
    if not rows:
        return ["No stage recorded a val_bpb.", ""]
    return [*_table(["run", "stage", "measured on", "val_bpb", "float model, same tokens (gap)"], rows), "",
            "Each stage scores its own way: training validates the float weights with plain windows (whole "
            "windows only, so the split's last partial window is left out); "
            "`pgolf quantize` scores the float and the dequantized model on the same tokens (its gap is the "
            "cost of quantization); `pgolf ttt-eval` scores the packed model.bin with its windows (sliding "
            "windows give every token more context than plain ones, which lowers val_bpb).", ""]


def _budget(runs: Sequence[RunSummary]) -> list[str]:
    runs = [r for r in runs if r.budget is not None]
    if not runs:
        return ["No pack artifact: no byte budget.", ""]
    names: list[str] = []
    for r in runs:
        names += [n for n, _ in r.budget.parts() if n not in names]
    rows = []
    for name in names:
        row = [name]
        for r in runs:
            b = dict(r.budget.parts()).get(name)
            params = r.budget.params.get(name)
            share = f"{b:,.0f} ({100 * b / r.budget.total_bytes:.1f}%)" if b is not None else "n/a"
            if params:
                share += f", {8 * b / params:.2f} bits/param"
            row.append(share)
        rows.append(row)
    rows.append(["**total**", *(f"**{r.budget.total_bytes:,}**" for r in runs)])
    return [*_table(["component", *(f"{r.label} bytes" for r in runs)], rows), "",
            "`code` is train_gpt.py and `overhead` model.bin's index, coder tables and header, both measured; "
            f"the split of model.bin between tensor classes is {METHOD.replace(': ', ' (', 1)}).", ""]


def _verify(verify: Mapping[str, Any] | None) -> list[str]:
    if verify is None:
        return ["No verify report (run `pgolf verify`).", ""]
    k = verify.get("counts", {})
    out = [f"**{'OK' if verify.get('ok') else 'NOT COMPLIANT'}** (rule set {verify.get('ruleset', '?')}, track "
           f"{verify.get('track', '?')}): {k.get('PASS', 0)} PASS, {k.get('WARN', 0)} WARN, {k.get('FAIL', 0)} FAIL, "
           f"{k.get('INFO', 0)} INFO.", ""]
    flagged = [c for c in verify.get("checks", []) if c.get("verdict") in ("FAIL", "WARN")]
    if flagged:
        out += _table(["verdict", "rule", "detail"],
                      [[c["verdict"], c["id"], str(c.get("detail", "")).replace("|", "\\|")] for c in flagged])
        out.append("")
    stats = verify.get("stats")
    if stats and stats.get("n", 0) > 1:
        seeds = ", ".join(f"{s}: {b:.4f}" for s, b in zip(stats.get("seeds", []), stats.get("val_bpb", [])))
        out += [f"Over {stats['n']} seeds ({seeds}): mean val_bpb {_n(stats.get('mean_bpb'), '.5f')}, sample std "
                f"{_n(stats.get('std_bpb'), '.5f')}; mean val_loss {_n(stats.get('mean_loss'), '.5f')} nats, std "
                f"{_n(stats.get('std_loss'), '.5f')}."
                + (f" Significance against the reference: {stats['verdict']}." if stats.get("verdict") else ""), ""]
    return out


def render(runs: Sequence[RunSummary], verify: Mapping[str, Any] | None, plots: Mapping[str, str],
           created_utc: str) -> str:
    """The whole report.md. `plots`: {key: file name} of the figures written (keys of PLOT_TITLES)."""
    names = ", ".join(f"`{r.label}` ({r.path})" for r in runs)
    lines = ["# pgolf report", "", f"{len(runs)} run(s): {names}. Generated {created_utc}.", "",
             "## Summary", "", *_summary(runs), "", *_image(plots, "compare"),
             "## Training", "", *_image(plots, "loss"),
             "## val_bpb at each stage", "", *_image(plots, "bpb"), *_stages(runs),
             "## Byte budget", "", *_image(plots, "budget"), *_budget(runs),
             "## Verify", "", *_verify(verify)]
    return "\n".join(lines).rstrip() + "\n"
