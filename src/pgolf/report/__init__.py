"""Run reports (pure): summaries of runs, the byte budget by tensor class, PNG figures, markdown.

Everything here works on data passed in (manifest dicts, metrics events, report.json contents) and
returns values (dataclasses, PNG bytes, markdown text); `pgolf.stages.report` reads the run
directories and writes the files.

- `summary`: `RunSummary` (what one run's artifacts say), `loss_curves(events)`, `stage_bpb(run)`;
- `budget`: `class_budget(...)`: code bytes + model.bin bytes apportioned to tensor classes;
- `figures`: `loss_png`, `bpb_png`, `budget_png`, `compare_png` (matplotlib, Agg, no pyplot);
- `markdown`: `render(runs, verify, plots)`.

Importing this package imports neither torch nor matplotlib; `figures` imports matplotlib.
"""
