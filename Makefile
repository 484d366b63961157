# minimamba: two commands set everything up.
#   make lab    create .venv if missing, install, open the notebooks in JupyterLab
#   make test   create .venv if missing, install, run lint + every test + the notebooks
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.minimamba-installed
# On a machine without CUDA we pin the CPU build of torch (a bare `torch` pulls a multi-GB CUDA build).
# Where CUDA is present, pip keeps or picks a CUDA build through pyproject's `torch>=` range.
TORCH_CPU ?= torch==2.13.0
HAS_CUDA  := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo 1)
NPROC     := $(shell $(PYTHON) -c 'import os; print(min(4, os.cpu_count() or 1))')
export FAST ?= 1

.PHONY: lab test lint pytest nbval notebooks figures bench info clean browser-deps

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
ifneq ($(HAS_CUDA),1)
	$(BIN)/python -m pip install -q "$(TORCH_CPU)"
endif
	$(BIN)/python -m pip install -q -e '.[dev]'
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks/

test: $(STAMP) lint browser-deps pytest nbval

# The browser test (tests/test_browser.py) drives Debian's Chromium with Playwright (never a downloaded
# browser). Install it where apt-get can; elsewhere the test skips and says why.
browser-deps:
	@if [ -x /usr/bin/chromium ]; then :; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  echo "installing Debian's chromium for the browser test"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	    || echo "could not install chromium: the browser test will be skipped"; \
	else echo "no /usr/bin/chromium and no root apt-get: the browser test will be skipped"; fi

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

pytest: $(STAMP)
	$(BIN)/python -m pytest -n $(NPROC) --dist loadfile tests

nbval: $(STAMP)
	$(BIN)/python -m pytest -n $(NPROC) --dist loadfile --nbval-lax --nbval-current-env notebooks

# Execute every notebook in place, top to bottom, from a fresh kernel (outputs are committed).
notebooks: $(STAMP)
	cd notebooks && for nb in [0-9]*.ipynb; do \
	  echo "== $$nb"; \
	  ../$(BIN)/jupyter nbconvert --to notebook --execute --inplace \
	    --ExecutePreprocessor.timeout=900 --ExecutePreprocessor.kernel_name=python3 "$$nb" || exit 1; \
	done

figures: $(STAMP)
	$(BIN)/python -m minimamba.viz figures/

bench: $(STAMP)
	$(BIN)/python -m pip install -q -e '.[bench]'
	$(BIN)/python -m minimamba.bench

info: $(STAMP)
	$(BIN)/python -m minimamba info

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache .hypothesis
