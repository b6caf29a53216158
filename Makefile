# Two targets a user needs: `make demo` (set-up + the whole pipeline on the embedded corpus)
# and `make test`. Both create .venv when it is missing and install pgolf into it.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.pgolf-installed
DEMO_OUT ?= runs/demo

.PHONY: setup demo lint test clean

setup: $(STAMP)

# A torch that the system Python can already import is kept (the venv sees it); otherwise the
# CPU wheel named by TORCH_SPEC is installed, never a plain `torch` that would pull CUDA packages.
$(STAMP): pyproject.toml
	@if [ ! -x "$(PY)" ]; then \
	  if $(PYTHON) -c "import torch" >/dev/null 2>&1; then \
	    $(PYTHON) -m venv --system-site-packages $(VENV); \
	  else \
	    $(PYTHON) -m venv $(VENV); \
	  fi; \
	fi
	@$(PY) -c "import torch" >/dev/null 2>&1 || $(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[test]"
	@touch $(STAMP)

# One torch thread unless OMP_NUM_THREADS says otherwise: on a 2-core machine that anything else
# shares, two threads wait on each other and training runs ten times slower.
demo: $(STAMP)
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(PY) -m pgolf run configs/demo.toml --out $(DEMO_OUT)

# Lint before the tests: ruff over all the Python, mypy over the pure packages ([tool.mypy] in pyproject.toml).
lint: $(STAMP)
	$(PY) -m ruff check src tests bench
	$(PY) -m mypy

test: $(STAMP) lint
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) runs .pytest_cache .hypothesis .mypy_cache .ruff_cache
