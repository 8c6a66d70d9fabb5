# Afisha. `make help` lists the targets.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.DEFAULT_GOAL := help
.PHONY: help install run test unit integration e2e lint typecheck footprint clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP) ## Create the virtual environment and install Afisha with its dev tools

run: $(STAMP) ## Start the whole platform (embedded defaults for anything not configured)
	$(BIN)/afisha run

test: lint typecheck ## Lint, type-check and run every test (unit, integration, e2e)
	$(BIN)/pytest

unit: $(STAMP) ## Run the unit tests only (no services needed)
	$(BIN)/pytest tests/unit

integration: $(STAMP) ## Run the integration tests (real Postgres/RabbitMQ/Redis)
	$(BIN)/pytest tests/integration

e2e: $(STAMP) ## Start the platform and run the HTTP end-to-end tests
	$(BIN)/pytest tests/e2e

lint: $(STAMP) ## ruff
	$(BIN)/ruff check .

typecheck: $(STAMP) ## mypy
	$(BIN)/mypy

footprint: $(STAMP) ## Measure time from start to healthy and the idle memory of the platform
	$(BIN)/python benchmarks/footprint.py

clean: ## Remove the virtual environment and local data
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
