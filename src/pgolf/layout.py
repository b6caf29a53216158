"""The run directory's names: one place that knows where each stage writes by default.

```
runs/<run>/
  run.json                     the pipeline record of `pgolf run` (pgolf.artifacts.run_record)
  data/ train/ quant/ pack/ eval/ verify/ report/
  train.partial/               an interrupted training (resume.json + checkpoint.safetensors)
  seed-<N>/{train,quant,pack,eval}/   with `pgolf run --seeds`
  .<dir>.lock                  held while a process writes <dir> (pgolf.stages.runner)
```

A stage's default `--out` is its directory next to its input's (quant/ -> pack/ in the same run).
"""

from __future__ import annotations

import re
from pathlib import Path

# The pipeline's stages (the config's tables and `pgolf run --from` names) and their directories;
# each directory holds an artifact of the kind it is named after.
STAGES = ("data", "train", "quantize", "pack", "eval", "verify")
DIRS = {"data": "data", "train": "train", "quantize": "quant", "pack": "pack", "eval": "eval", "verify": "verify",
        "report": "report"}
KIND_OF_STAGE = DIRS
RUN_FILE = "run.json"
SEED_DIR = re.compile(r"seed-\d+")
PARTIAL_SUFFIX = ".partial"


def seed_dir(seed: int) -> str:
    return f"seed-{seed}"


def next_to(upstream: str | Path, kind: str) -> Path:
    """The default output of the stage writing `kind`: beside its input, e.g. RUN/quant -> RUN/pack."""
    return Path(upstream).parent / DIRS.get(kind, kind)


def train_work_dir(out: str | Path) -> Path:
    """Where `pgolf train --out OUT` works until it publishes: OUT.partial beside it (kept for --resume)."""
    out = Path(out)
    return out.parent / f"{out.name}{PARTIAL_SUFFIX}"
