"""PNG figures of runs (matplotlib's Agg renderer through `Figure`, never pyplot: no global state).

Each function takes `RunSummary`s and returns PNG bytes, or None when no run has the data it plots.
One run or several: several are overlaid (loss, stages) or stacked (bytes) in one figure.
"""

from __future__ import annotations

import io
import textwrap
from collections.abc import Sequence

from pgolf.report.summary import RunSummary, stage_bpb

DPI = 120
CLASS_COLORS = {"code": "#7f7f7f", "embed": "#1f77b4", "attn": "#ff7f0e", "mlp": "#2ca02c", "bigram": "#9467bd",
                "value_embed": "#8c564b", "control": "#e377c2", "other": "#bcbd22", "overhead": "#c7c7c7"}


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _png(fig) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})  # no version string: same data, same bytes
    return buf.getvalue()


def _color(i: int) -> str:
    return f"C{i % 10}"


def _thousands(axis) -> None:
    from matplotlib.ticker import FuncFormatter

    axis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:,.0f}"))


def loss_png(runs: Sequence[RunSummary]) -> bytes | None:
    """Train loss (lines) and val loss (markers) against the training step, one color per run."""
    runs = [r for r in runs if r.curves is not None and (r.curves.train or r.curves.val)]
    if not runs:
        return None
    multi = len(runs) > 1
    fig = _figure(8.0, 4.8)
    ax = fig.add_subplot()
    for i, run in enumerate(runs):
        c, name = run.curves, f"{run.label}: " if multi else ""
        if c.train:
            ax.plot([s for s, _ in c.train], [v for _, v in c.train], ".-", color=_color(i), lw=1.4, ms=4,
                    alpha=0.85, label=f"{name}train loss (logged steps)")
        if c.val:
            ax.plot([s for s, _, _ in c.val], [v for _, v, _ in c.val], "o--", color=_color(i), ms=4, lw=1,
                    label=f"{name}val loss")
            step, loss, bpb = c.val[-1]
            if not multi:  # the saved weights' score, written where it is
                text = f"val_loss {loss:.3f}" + (f"\nval_bpb {bpb:.3f}" if bpb is not None else "")
                if c.final_weights:
                    text += f"\n({c.final_weights} weights)"
                # Top right, boxed: losses fall, so that corner is usually empty, and the box stays readable.
                ax.annotate(text, (step, loss), xytext=(0.97, 0.72), textcoords="axes fraction", ha="right",
                            va="center", fontsize=8, bbox={"boxstyle": "round", "fc": "white", "ec": "0.7"},
                            arrowprops={"arrowstyle": "->", "lw": 0.7, "color": "0.3"})
    ax.set_title("Training and validation loss")
    ax.set_xlabel("training step")
    ax.set_ylabel("loss (nats per token)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncols=2 if multi and len(runs) > 2 else 1, loc="upper right")
    return _png(fig)


def bpb_png(runs: Sequence[RunSummary]) -> bytes | None:
    """val_bpb after training (float), after quantization and of the packed artifact (eval), per run.

    The stages may score different tokens (quantize's check can use a prefix of the validation set),
    so points are not joined; where a stage also scored the float model on its tokens, that value is
    drawn hollow beside it, joined by the gap.
    """
    points = [(run, stage_bpb(run)) for run in runs]
    points = [(run, p) for run, p in points if p]
    if not points:
        return None
    stages: list[str] = []
    details: dict[str, str] = {}
    for _, ps in points:
        for p in ps:
            if p.stage not in stages:
                stages.append(p.stage)
                details[p.stage] = p.detail
    multi = len(points) > 1
    width = 0.5 / len(points)  # runs side by side within a stage
    fig = _figure(max(8.0, 2.3 * len(stages)), 4.8)
    ax = fig.add_subplot()
    hollow_labeled = False
    for i, (run, ps) in enumerate(points):
        shift = (i - (len(points) - 1) / 2) * width
        for p in ps:
            x = stages.index(p.stage) + shift
            if p.float_bpb is not None:  # a ring, drawn first: it shows around the point when the gap is tiny
                ax.plot([x, x], [p.float_bpb, p.val_bpb], "-", color=_color(i), lw=1)
                ax.plot([x], [p.float_bpb], "o", mfc="white", color=_color(i), ms=11,
                        label=None if hollow_labeled else "float model on the same tokens")
                hollow_labeled = True
                if not multi:
                    ax.annotate(f"{p.float_bpb:.4f} float\n({p.val_bpb - p.float_bpb:+.4f})", (x, p.float_bpb),
                                xytext=(-10, 0), textcoords="offset points", ha="right", va="center", fontsize=8)
            ax.plot([x], [p.val_bpb], "o", color=_color(i), ms=7, label=run.label if multi and p is ps[0] else None)
            if not multi:
                ax.annotate(f"{p.val_bpb:.4f}", (x, p.val_bpb), xytext=(10, 0), textcoords="offset points",
                            va="center", fontsize=9)
    ticks = []
    for s in stages:  # "quantize: 20,000 val targets, plain windows" -> short lines
        who, _, how = details[s].partition(": ")
        ticks.append(f"{s}\n(pgolf {who})\n" + textwrap.fill(how, 26, break_on_hyphens=False))
    ax.set_xticks(range(len(stages)), ticks, fontsize=8)
    ax.set_xlim(-0.6, len(stages) - 0.4)
    ax.margins(y=0.2)
    ax.set_title("val_bpb at each stage (lower is better)")
    ax.set_ylabel("val_bpb (bits per byte)")
    ax.grid(axis="y", alpha=0.3)
    if multi or hollow_labeled:
        ax.legend(fontsize=8)
    return _png(fig)


def budget_png(runs: Sequence[RunSummary]) -> bytes | None:
    """One stacked horizontal bar per run: code bytes, then model.bin bytes by tensor class, then overhead."""
    runs = [r for r in runs if r.budget is not None]
    if not runs:
        return None
    parts = [r.budget.parts() for r in runs]
    names: list[str] = []
    for ps in parts:
        names += [n for n, _ in ps if n not in names]
    fig = _figure(8.5, 1.9 + 0.45 * len(runs))
    ax = fig.add_subplot()
    single = len(runs) == 1
    total = runs[0].budget.total_bytes
    for name in names:
        lefts, widths = [], []
        for ps in parts:
            before = 0.0
            for n, b in ps:
                if n == name:
                    lefts.append(before)
                    widths.append(b)
                    break
                before += b
            else:
                lefts.append(0.0)
                widths.append(0.0)
        label = f"{name}: {widths[0]:,.0f} B ({100 * widths[0] / total:.1f}%)" if single else name
        ax.barh(range(len(runs)), widths, left=lefts, color=CLASS_COLORS.get(name, "#17becf"), edgecolor="white",
                height=0.6, label=label, hatch="//" if name == "overhead" else None)
    ax.set_yticks(range(len(runs)), [r.label for r in runs])
    ax.invert_yaxis()
    limits = [int(r.pack["limit_bytes"]) for r in runs if r.pack and r.pack.get("limit_bytes")]
    biggest = max(r.budget.total_bytes for r in runs)
    title = "Artifact bytes: code + model.bin by tensor class"
    if limits:
        limit = max(limits)
        if limit <= 3 * biggest:
            ax.axvline(limit, color="red", ls="--", lw=1, label=f"limit {limit:,} B")
        else:
            what = "total" if single else "largest"
            title += f"\n({what} {biggest:,} B = {100 * biggest / limit:.1f}% of the {limit:,}-byte limit)"
    ax.set_title(title)
    ax.set_xlabel("bytes (decimal); class shares of model.bin are estimates (see report.md)")
    _thousands(ax.xaxis)
    ax.grid(axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    fig.legend(loc="outside lower center", ncols=3 if single else min(len(names) + bool(limits), 6), fontsize=8,
               frameon=False)
    return _png(fig)


def compare_png(runs: Sequence[RunSummary]) -> bytes | None:
    """val_bpb of the packed artifact against its total bytes, one labeled point per run (needs two)."""
    runs = [r for r in runs if r.val_bpb is not None and r.total_bytes is not None]
    if len(runs) < 2:
        return None
    fig = _figure(7.0, 4.6)
    ax = fig.add_subplot()
    for i, run in enumerate(runs):
        ax.scatter([run.total_bytes], [run.val_bpb], color=_color(i), s=40, zorder=3)
        ax.annotate(run.label, (run.total_bytes, run.val_bpb), xytext=(6, 5), textcoords="offset points", fontsize=8)
    ax.margins(x=0.25, y=0.25)
    ax.set_title("val_bpb against artifact size (lower left is better)")
    ax.set_xlabel("total bytes (code + model, decimal)")
    ax.set_ylabel("val_bpb (final eval, bits per byte)")
    _thousands(ax.xaxis)
    ax.grid(alpha=0.3)
    return _png(fig)
