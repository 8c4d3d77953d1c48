# Developer entry points. Everything runs from the project's own virtualenv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Touched after a successful install: pip reruns only when pyproject.toml changes,
# or when the venv lost its entry point.
STAMP := $(VENV)/.agentrun-installed

.PHONY: venv demo test lint server worker clean FORCE

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

test: lint
	$(BIN)/pytest -q

server: venv
	$(BIN)/agentrun server

worker: venv
	$(BIN)/agentrun worker

# Leaves the virtualenv alone; remove .venv by hand to rebuild it from scratch.
clean:
	rm -rf .temporal build *.egg-info .mypy_cache .ruff_cache .pytest_cache
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +
