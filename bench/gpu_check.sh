#!/usr/bin/env bash
# The GPU check: one command, at most 8 minutes on one H100, every figure in one JSON file.
#
#   bench/gpu_check.sh                          # one GPU -> runs/gpu_check/gpu_check.json
#   bench/gpu_check.sh --out DIR --only eval    # rerun one section, keep the others' figures
#   bench/gpu_check.sh --dry-run --out DIR      # the same path on CPU at tiny shapes (~1.5 min)
#
# A thin wrapper over bench/gpu_check.py (see its --help): it picks the Python ($PYTHON, else the
# repository's .venv, else python3) and puts src/ on PYTHONPATH so an uninstalled checkout works.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
py="${PYTHON:-}"
if [[ -z "$py" ]]; then
    if [[ -x "$repo/.venv/bin/python" ]]; then py="$repo/.venv/bin/python"; else py="$(command -v python3)"; fi
fi
export PYTHONPATH="$repo/src${PYTHONPATH:+:$PYTHONPATH}"
exec "$py" "$here/gpu_check.py" "$@"
