# oddsbatch: local development. Everything installs under git-ignored folders of the repo.
#   make install   .venv (3.11), .venv-bq (3.13, BigQuery emulator); checks the Cloud SDK emulators
#   make up/down   the local stack (emulators, event bridge, both functions) in .oddsbatch/
#   make test      install, then the whole pytest suite (the integration tests start their own stack)
#   make chaos     the chaos suite's long mode (20 seeds)
#   make demo      install, then the end-to-end demo
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
PY := .venv/bin/python
STATE ?= .oddsbatch
PYTEST_ARGS ?=

.PHONY: install test chaos demo up down status clean

install:
	@bash scripts/bootstrap.sh

test: install
	$(PY) -m pytest tests $(PYTEST_ARGS)

# The chaos suite's long mode: 20 seeds (make test runs 3). Prints one `chaos:` line per run.
# MERGEs run 2 s in the emulator (make test's 3 seeds: 1.5 s), so retries meet running MERGEs.
chaos: install
	ODDSBATCH_CHAOS_SEEDS=$${ODDSBATCH_CHAOS_SEEDS:-20} ODDSBATCH_CHAOS_DML_LATENCY_MS=$${ODDSBATCH_CHAOS_DML_LATENCY_MS:-2000} \
		$(PY) -m pytest tests/chaos -s $(PYTEST_ARGS)

# The interleaving explorer in full (make test runs it bounded): every service call a branching
# point and a larger preemption bound. Prints one `explore:` line per scenario.
.PHONY: prove
prove: install
	ODDSBATCH_PROVE=1 $(PY) -m pytest tests/explore -s $(PYTEST_ARGS)

demo: install
	$(PY) -m oddsbatch.local.demo

up: install
	$(PY) -m oddsbatch.cli up --state-dir $(STATE)

down:
	@if [ -x $(PY) ]; then $(PY) -m oddsbatch.cli down --state-dir $(STATE); else echo "nothing to stop"; fi

status:
	$(PY) -m oddsbatch.cli status --state-dir $(STATE)

# Stops the stack first, then removes every installed or generated folder.
clean: down
	rm -rf .venv .venv-bq $(STATE) .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
	rm -rf shared/*.egg-info

# Benchmark harness (not part of `make test`): batch mode vs the per-file baseline on the local
# stack; prints one `bench:` line per figure and writes bench/RESULTS.md. Pass BENCH_ARGS, e.g.
# BENCH_ARGS="--quick" (no per-file baseline on the 1,000-file date) or "--only transform --small".
BENCH_ARGS ?=
.PHONY: bench
bench: install
	$(PY) -m bench $(BENCH_ARGS)
