# Two entry points (see README Quickstart): `make demo` and `make test`.
# Each creates or refreshes the virtual environment in .venv, then runs.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# Offline mirror of weights and datasets: ../shared/assets when present (tests, CI), else downloads.
ifneq ($(wildcard ../shared/assets/catalog.json),)
export YOLOX_SDK_ASSETS ?= $(abspath ../shared/assets)
endif

.PHONY: demo test lint venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## Finetune yolox-nano on BCCD, evaluate the best checkpoint, export ONNX (CPU, a few minutes).
demo: $(STAMP)
	$(BIN)/yolox-sdk run examples/bccd_voc.yaml

## Lint and run the whole test suite, slow tests included.
test: $(STAMP)
	$(BIN)/ruff check yolox_sdk tests benchmarks plugins
	$(BIN)/python -m pytest -q --durations=30

## Build the documentation site into build/site/ strictly (a warning or broken link fails), as the tests do.
.PHONY: docs
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs build --strict --site-dir build/site

lint: $(STAMP)
	$(BIN)/ruff check yolox_sdk tests benchmarks plugins
	$(BIN)/ruff format --check yolox_sdk tests benchmarks plugins

clean:
	rm -rf $(VENV) runs .pytest_cache
