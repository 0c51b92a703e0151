# Datafix Hub: every developer and CI entry point. GNU make; `make` alone lists the targets.
#
# Variables you may override: PYTHON (interpreter that creates .venv), DATAFIX_HOME (the hub's
# state folder, exported to every target), PYTEST_ARGS (extra pytest arguments),
# PYTEST_WORKERS (pytest-xdist workers).

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:
# Targets run one after the other, in the order given, even under `make -j`.
.NOTPARALLEL:
MAKEFLAGS += --no-builtin-rules --no-print-directory

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Written after a successful install; rebuilt only when the dependencies' declarations change.
INSTALL_STAMP := $(VENV)/.installed
# The sandbox's Node.js peer: `npm ci` there, again when its lock file changes.
NODE_PEER := connectors/sandbox/erp_node
NODE_STAMP := $(NODE_PEER)/node_modules/.installed

DATAFIX_HOME ?= $(CURDIR)/.datafix
export DATAFIX_HOME

PYTEST_WORKERS ?= 2
PYTEST_ARGS ?=

.PHONY: help install demo ui test system-deps services lint prod-check fmt bench lock clean distclean

help: ## List the targets
	@echo "Datafix Hub: make <target>"
	@awk 'BEGIN {FS = ":.*## "} /^[a-z][a-z-]*:.*## / {printf "  %-12s %s\n", $$1, $$2}' \
		$(MAKEFILE_LIST)

install: $(INSTALL_STAMP) $(NODE_STAMP) ## Create .venv and install the hub with its dev tools, pinned by constraints.txt; npm ci for the sandbox's Node.js peer
	@# the hub's own modules byte-compiled (pip compiles the dependencies, not an editable
	@# project): a shell with PYTHONDONTWRITEBYTECODE=1 would otherwise compile them again in
	@# every `datafix` process (0.6 s of CPU of an unchanged rerun's 3 s); unchanged ones are
	@# skipped
	$(BIN)/python -m compileall -q pipelines connectors schemas >/dev/null

$(INSTALL_STAMP): pyproject.toml constraints.txt
	@[ -x $(BIN)/python ] || { echo "Creating $(VENV) with $(PYTHON)"; $(PYTHON) -m venv $(VENV); }
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -c constraints.txt -e '.[dev]'
	@touch $@

# The sandbox's works-order ERP peer runs on Node.js (npm package soap, pinned by its lock file).
$(NODE_STAMP): $(NODE_PEER)/package.json $(NODE_PEER)/package-lock.json
	@command -v npm >/dev/null || { echo "npm not found: install Node.js 20 or later with npm" \
		"(the sandbox's works-order ERP peer, $(NODE_PEER), runs on it)"; exit 1; }
	cd $(NODE_PEER) && npm ci --no-audit --no-fund
	@touch $@

demo: install ## Generate the demo landlords' files, run the nightly job on SQLite, print the summary
	$(BIN)/datafix demo

# The sandbox peers (`datafix sandbox`) serve the web-service demo landlords while the UI runs:
# started in the background, stopped by the trap when the UI exits (Ctrl-C included). A sandbox
# already running elsewhere is reused (the background one then exits at once). The hub offers
# no sandbox defaults: the UI gets the peers' DATAFIX_SANDBOX_* addresses from `--env`.
ui: install ## Open the Dagster UI on http://127.0.0.1:3000 with the sandbox peers up (state in $DATAFIX_HOME/dagster)
	mkdir -p "$(DATAFIX_HOME)/dagster"
	DATAFIX_HOME="$(DATAFIX_HOME)" $(BIN)/python -c "from pipelines.lib.instance import ensure_instance; ensure_instance()"
	sandbox_env="$$($(BIN)/datafix sandbox --env)" || exit 1; eval "$$sandbox_env"; \
	$(BIN)/datafix sandbox & sandbox_pid=$$!; \
	trap 'kill -TERM $$sandbox_pid 2>/dev/null || true; wait $$sandbox_pid 2>/dev/null || true' EXIT; \
	DAGSTER_HOME="$(DATAFIX_HOME)/dagster" $(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

test: system-deps services lint prod-check ## Everything CI runs: ODBC packages, databases, lint, the production check, the whole test suite
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

system-deps: ## Install the Debian ODBC packages the tests need when missing; psqlODBC logs off (root only)
	bash .ci/system-deps.sh

services: ## Start PostgreSQL and MariaDB when they are not accepting connections
	bash .ci/services.sh

lint: install ## Check code and formatting with ruff (changes nothing)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

prod-check: install ## Check the production deployment in deploy/ offline (Dagster's own schemas, compose and Helm structure)
	$(BIN)/python -m pipelines.lib.production deploy

fmt: install ## Apply ruff's fixes, then format the code
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: system-deps services install ## Run the benchmark (whole process, stages, ODBC, push); BENCH_ARGS="--only process" for one group
	$(BIN)/python tests/bench/run.py $(BENCH_ARGS)

lock: ## Regenerate constraints.txt from a fresh throwaway venv (unconstrained -e '.[dev]')
	@lock_venv="$$(mktemp -d)"; trap 'rm -rf "$$lock_venv"' EXIT; \
	$(PYTHON) -m venv "$$lock_venv"; \
	"$$lock_venv/bin/python" -m pip install --quiet --upgrade pip; \
	"$$lock_venv/bin/python" -m pip install -e '.[dev]'; \
	{ \
	  echo "# Pinned versions of every distribution in the project's virtualenv (CPython 3.11, Linux x86_64),"; \
	  echo "# used as pip constraints: \`pip install -c constraints.txt -e '.[dev]'\` (what \`make install\` runs)."; \
	  echo "#"; \
	  echo "# Do not edit by hand. Regenerate with \`make lock\`: it installs \`-e '.[dev]'\` without constraints"; \
	  echo "# into a throwaway venv and writes its \`pip freeze --exclude-editable\` here (the project itself,"; \
	  echo "# pip and setuptools are not listed). Commit the result with the pyproject.toml change that caused it."; \
	  "$$lock_venv/bin/python" -m pip freeze --exclude-editable | grep -v -i '^datafix[-_]hub'; \
	} > constraints.txt.new; \
	mv constraints.txt.new constraints.txt; \
	echo "constraints.txt: $$(grep -c '==' constraints.txt) pins written"
	@echo "Reinstall with: make install"

clean: ## Remove the hub's local state (.datafix) and caches; keeps .venv
	rm -rf .datafix .pytest_cache .ruff_cache build dist *.egg-info
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -prune -exec rm -rf {} +

distclean: clean ## clean, and remove .venv too
	rm -rf $(VENV)
