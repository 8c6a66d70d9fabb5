# Afisha. `make help` lists the targets.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.DEFAULT_GOAL := help
.PHONY: help install install-bench run test unit integration e2e chaos cluster lint typecheck footprint bench clean

help: ## List the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP) ## Create the virtual environment and install Afisha with its dev tools

run: $(STAMP) ## Start the whole platform (embedded defaults for anything not configured)
	$(BIN)/afisha run

test: lint typecheck ## Lint, type-check, run every test (unit, integration, e2e, chaos), then make cluster
	$(BIN)/pytest
	$(MAKE) cluster

unit: $(STAMP) ## Run the unit tests only (no services needed)
	$(BIN)/pytest tests/unit

integration: $(STAMP) ## Run the integration tests (real Postgres/RabbitMQ/Redis)
	$(BIN)/pytest tests/integration

e2e: $(STAMP) ## Start the platform and run the HTTP end-to-end tests
	$(BIN)/pytest tests/e2e

lint: $(STAMP) ## ruff, and imports point one way (tests/layers.py)
	$(BIN)/ruff check .
	$(BIN)/python tests/layers.py

typecheck: $(STAMP) ## mypy
	$(BIN)/mypy

chaos: $(STAMP) ## Faults during a sale (host and replica killed, broker and database connections cut), then an audit
	$(BIN)/pytest -s tests/chaos

cluster: $(STAMP) ## A head and two worker nodes on this machine, Afisha deployed with afisha deploy: placement tests, the e2e suite, then a worker node lost during a sale
	$(BIN)/python -m tests.multinode.local_cluster $(CLUSTER_ARGS)

footprint: $(STAMP) ## Measure time from start to healthy and the idle memory of the platform
	$(BIN)/python benchmarks/footprint.py

BENCH_STAMP := $(VENV)/.bench-stamp
$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	@touch $(BENCH_STAMP)

install-bench: $(BENCH_STAMP) ## Install the benchmark tools (Locust, matplotlib, aiohttp, uvloop; wrk comes from apt)

bench: $(BENCH_STAMP) ## Ticket-sale benchmark: Afisha against the row-lock baseline (benchmarks/README.md); BENCH_ARGS=--quick for a smoke run
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	  && apt-get install -y -q wrk >/dev/null; } || command -v wrk >/dev/null || \
	  { echo "make bench needs wrk: sudo apt-get install -y wrk (Debian/Ubuntu), brew install wrk (macOS)"; exit 1; }
	$(BIN)/python -m benchmarks.bench $(BENCH_ARGS)

clean: ## Remove the virtual environment and local data
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
