# minimamba: two commands set everything up.
#   make lab    create .venv if missing, install the locked versions, open the notebooks in JupyterLab
#   make test   create .venv if missing, install the locked versions, run lint + every test + the notebooks
#
# Versions: development and CI install exactly what requirements/lock.txt pins (`make lock` regenerates it
# with uv from pyproject.toml). `make test-latest` runs the suite on the newest releases pyproject allows (the
# canary to run before `make lock`); `make test-oldest` on the lowest ones (pyproject's lower bounds).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.minimamba-installed
LOCK   := requirements/lock.txt
# How .venv gets its packages: locked (requirements/lock.txt as constraints), latest, or lowest-direct.
RESOLUTION ?= locked
# torch is installed first, on its own: on Linux without a GPU, its CPU build from the PyTorch CPU index
# (PyPI's Linux build is the CUDA one). The version is the lock's, unless given. The download sizes printed
# below are measured by scripts/torch_download_size.py (torch 2.13.0, Python 3.11).
TORCH_VERSION ?= $(shell sed -n 's/^torch==\([0-9][0-9.]*\).*/\1/p' $(LOCK) | head -n 1)
TORCH_FLOOR   := $(shell sed -n 's/^ *"torch>=\([0-9.]*\)".*/\1/p' pyproject.toml)
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
HAS_CUDA  := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo 1)
# pytest workers: one more than the cores, at most 4. The browser test's worker spends about half its time
# waiting on Chromium and the kernel; with 2 cores, 3 workers take the suite from about 12 to 9 minutes.
NPROC     := $(shell $(PYTHON) -c 'import os; print(min(4, (os.cpu_count() or 1) + 1))')
# Threads per test process: the cores shared among the workers, at least one (an OMP_NUM_THREADS already set
# wins). Three workers each starting two threads oversubscribe 2 cores: there, one thread each takes the
# notebooks from about 110 to 85 s (two runs each); the tests (about 10 minutes) move less than between runs.
TEST_THREADS := $${OMP_NUM_THREADS:-$(shell $(PYTHON) -c 'import os; print(max(1, (os.cpu_count() or 1) // $(NPROC)))')}
# JupyterLab refuses to start as root (Docker, Colab-like boxes) unless told to.
ALLOW_ROOT := $(shell [ "$$(id -u)" = 0 ] && echo --allow-root)
export FAST ?= 1

ifeq ($(RESOLUTION),locked)
PIP_INSTALL := $(BIN)/python -m pip install -q -c $(LOCK)
else ifeq ($(RESOLUTION),latest)
PIP_INSTALL := $(BIN)/python -m pip install -q
else
PIP_INSTALL := $(BIN)/python -m uv pip install -q --python $(BIN)/python --resolution $(RESOLUTION)
endif

.PHONY: lab test test-latest test-oldest lock lint pytest pytest-fast nbval notebooks figures bench info \
	clean browser-deps torch

$(STAMP): pyproject.toml $(LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(MAKE) --no-print-directory VENV=$(VENV) TORCH_VERSION=$(TORCH_VERSION) torch
ifneq ($(RESOLUTION),locked)
ifneq ($(RESOLUTION),latest)
	$(BIN)/python -m pip install -q -c $(LOCK) uv
endif
endif
	$(PIP_INSTALL) -e '.[dev]'
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

# torch alone, before everything else (so that pip keeps it): the CPU build on Linux without a GPU.
torch:
	@if [ "$(HAS_CUDA)" = 1 ] || [ "$$(uname -s)" != Linux ]; then \
	  echo "installing torch==$(TORCH_VERSION) from PyPI ($$( [ '$(HAS_CUDA)' = 1 ] && echo 'the CUDA build: about 2.7 GB of downloads' || echo 'the CPU build: about 120 MB of downloads'))"; \
	  $(BIN)/python -m pip install -q "torch==$(TORCH_VERSION)"; \
	elif $(BIN)/python -c "import urllib.request as u; u.urlopen('$(TORCH_CPU_INDEX)/torch/', timeout=5)" 2>/dev/null; then \
	  echo "installing torch==$(TORCH_VERSION), the CPU build, from $(TORCH_CPU_INDEX) (about 190 MB)"; \
	  $(BIN)/python -m pip install -q --no-deps --index-url $(TORCH_CPU_INDEX) "torch==$(TORCH_VERSION)"; \
	else \
	  echo "$(TORCH_CPU_INDEX) cannot be reached: installing torch==$(TORCH_VERSION) from pip's configured"; \
	  echo "index. On PyPI that is the CUDA build for Linux: about 2.7 GB of downloads."; \
	  $(BIN)/python -m pip install -q "torch==$(TORCH_VERSION)"; \
	fi

lab: $(STAMP)
	$(BIN)/jupyter lab $(ALLOW_ROOT) notebooks/

test: $(STAMP) lint browser-deps pytest nbval

# The same suite on the newest releases pyproject.toml allows (torch stays at the lock's version: a torch
# upgrade is a deliberate `make lock TORCH_VERSION=...`). Run it before `make lock`.
test-latest:
	$(MAKE) VENV=.venv-latest RESOLUTION=latest pytest nbval

# The lowest versions pyproject.toml allows (its lower bounds, torch included): fast tests and notebooks.
test-oldest:
	$(MAKE) VENV=.venv-oldest RESOLUTION=lowest-direct TORCH_VERSION=$(TORCH_FLOOR) pytest-fast nbval

# Regenerate requirements/lock.txt from pyproject.toml: every extra, every platform, torch pinned.
lock: $(STAMP)
	echo "torch==$(TORCH_VERSION)" | $(BIN)/python -m uv pip compile - pyproject.toml --all-extras --universal \
	  --python-version 3.11 --custom-compile-command "make lock" -q -o $(LOCK)

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

# `pytest` (not `python -m pytest`): the repository root stays off sys.path, as for a user's script.
pytest: $(STAMP)
	OMP_NUM_THREADS=$(TEST_THREADS) $(BIN)/pytest -n $(NPROC) --dist loadfile tests

pytest-fast: $(STAMP)
	OMP_NUM_THREADS=$(TEST_THREADS) $(BIN)/pytest -n $(NPROC) --dist loadfile -m "not slow and not browser" tests

# A cell still running after 600 s (the slowest takes about a minute on 2 cores) is interrupted, and nbval
# reports the line it was on; pytest-timeout's 900 s (pyproject.toml) is the backstop.
nbval: $(STAMP)
	OMP_NUM_THREADS=$(TEST_THREADS) $(BIN)/pytest -n $(NPROC) --dist loadfile --nbval-lax --nbval-current-env \
	  --nbval-cell-timeout 600 --nbval-sanitize-with notebooks/nbval_sanitize.cfg notebooks

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
	$(PIP_INSTALL) -e '.[bench]'
	$(BIN)/python -m minimamba.bench

info: $(STAMP)
	$(BIN)/python -m minimamba info

clean:
	rm -rf $(VENV) .venv-latest .venv-oldest build dist *.egg-info .pytest_cache .ruff_cache .hypothesis
