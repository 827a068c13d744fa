# The broker's two commands: `make run` and `make test`. Everything else is a helper.
# `make help` lists the targets.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
BENCH  ?=

.DEFAULT_GOAL := help

$(STAMP): pyproject.toml
	@# pyicu (under rigour, sanctions screening) builds from source: ICU headers and a C++ compiler.
	@dpkg -s libicu-dev g++ pkg-config >/dev/null 2>&1 || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libicu-dev g++ pkg-config)
	@# The console's browser tests drive Debian's Chromium (Playwright never downloads a browser).
	@dpkg -s chromium >/dev/null 2>&1 || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 $(BIN)/python -m pip install --quiet -e '.[dev,local]'
	@touch $(STAMP)

.PHONY: install
install: $(STAMP) ## Create .venv and install dependencies (only when pyproject.toml changed)

# Our packages' bytecode, written even where PYTHONDONTWRITEBYTECODE is set (as an installed package's is):
# Temporal's workflow sandbox re-imports a workflow's modules for every run, and without a .pyc that is a
# compile of the source each time. Only changed files are compiled again.
PACKAGES := activities api bench cli config devstack models providers sandbox services temporal tests workers workflows

.PHONY: bytecode
bytecode: $(STAMP)
	@$(BIN)/python -m compileall -q -j 0 $(PACKAGES) >/dev/null

.PHONY: run
run: bytecode ## Start PostgreSQL, Temporal (UI :8233), sandboxes, migrations, workers and the API (:8000)
	$(BIN)/python -m devstack run

.PHONY: test
test: bytecode ## Run the test suite on a throw-away PostgreSQL and Temporal
	$(BIN)/python -m pytest $(PYTEST_ARGS)

.PHONY: lint
lint: $(STAMP) ## ruff and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

.PHONY: format
format: $(STAMP) ## Format the code with ruff
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

.PHONY: migrate
migrate: $(STAMP) ## Apply migrations to the development database (starts embedded PostgreSQL if needed)
	$(BIN)/python -m devstack migrate

.PHONY: bench
bench: bytecode ## Run the benchmarks (all, or one with BENCH=name)
	$(BIN)/python -m bench $(BENCH)

.PHONY: demo
demo: $(STAMP) ## A scripted customer journey against a running `make run`
	$(BIN)/python -m devstack demo

.PHONY: clean
clean: ## Stop leftovers and remove .local (databases, Temporal state) and caches
	-$(BIN)/python -m devstack stop 2>/dev/null
	rm -rf .local .pytest_cache .mypy_cache .ruff_cache bench/results

.PHONY: help
help: ## This list
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'
