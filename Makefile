# Developer entry points. Everything runs from the project's own virtualenv.
PYTHON ?= python3
# The workflow sandbox re-imports workflow modules for every run: without cached
# bytecode each of those imports compiles the source again.
unexport PYTHONDONTWRITEBYTECODE
VENV := .venv
BIN := $(VENV)/bin
# Touched after a successful install: pip reruns only when pyproject.toml changes,
# or when the venv lost its entry point.
STAMP := $(VENV)/.agentrun-installed

.PHONY: venv demo test stress lint server worker clean bench screenshot FORCE

venv: $(STAMP)

$(STAMP): pyproject.toml $(if $(wildcard $(BIN)/agentrun),,FORCE)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -e '.[dev]'
	touch $@

FORCE:

demo: venv
	$(BIN)/agentrun demo

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Three pytest-xdist workers, each with its own dev server: the tests mostly wait on
# Temporal and on worker processes, so three keep two cores busy. The test_library
# module stays on one worker (xdist_group), which builds its wheel once.
# PYTEST_WORKERS=0 runs the suite in one process.
PYTEST_WORKERS ?= 3

test: lint
	$(BIN)/pytest -q -n $(PYTEST_WORKERS) --dist loadgroup

# Stress runs of minutes, not part of test: 50 trees of 10 runs on one worker, an owner
# with 10,000 runs listed, drawn and stopped (AGENTRUN_STRESS_OWNER_RUNS=N for another
# size), 200 closed runs listed with no worker and a tree of 30 read from visibility,
# a run of 600 turns, every example the property tests (isolation, fuzz) can draw, and
# a fan-out of 11,110 runs that the default per-tree cap stops at 1,000.
stress: venv
	AGENTRUN_STRESS=1 $(BIN)/pytest -q -s tests/test_load.py tests/test_isolation.py \
		tests/test_fuzz.py tests/test_listing.py tests/test_long_runs.py \
		tests/test_budgets.py

# Benchmarks (BENCHMARKS.md), not part of test: fresh embedded servers, about 12
# minutes. BENCH_QUICK=1 make bench for a short smoke run. The bench extra draws plots.
bench: venv
	$(BIN)/python -m pip install -q -e '.[dev,bench]'
	$(BIN)/python -m bench

# docs/webui-tree.png: a run tree in the Web UI, read and checked by headless Chromium
# (devtools/webui_check.py). Installs Debian's chromium when missing and run as root.
screenshot: venv
	@test -x /usr/bin/chromium || [ -n "$$AGENTRUN_CHROMIUM" ] || \
	if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium; \
	else echo "make screenshot needs Chromium: sudo apt-get install chromium" \
	"(or AGENTRUN_CHROMIUM=/path/to/chromium)" >&2; exit 1; fi
	$(BIN)/python -m devtools.webui_check docs/webui-tree.png

server: venv
	$(BIN)/agentrun server

worker: venv
	$(BIN)/agentrun worker

# Leaves the virtualenv alone; remove .venv by hand to rebuild it from scratch.
clean:
	rm -rf .temporal build *.egg-info .mypy_cache .ruff_cache .pytest_cache
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +
