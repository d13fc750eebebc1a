# `make run` and `make test` set everything up themselves: a .venv with the pinned dependency set.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
RUN_DIR := var/run
CUSTOMERS ?= 2000
DAYS ?= 30
SEED ?= 7
BENCH_EVENTS ?= 200000

.PHONY: help setup run test test-unit bench clean

help:
	@echo "make run    simulate $(CUSTOMERS) customers over $(DAYS) days, run the journey job on them, print the summary"
	@echo "make test   run the whole test suite (unit and Flink integration)"
	@echo "make bench  measure the job and the pure core on $(BENCH_EVENTS) simulated signals"

$(INSTALLED): requirements.lock setup.py scripts/check-prereqs.sh
	@python_cmd=$$(scripts/check-prereqs.sh $(PYTHON)) && \
	  { [ -x $(PY) ] || $$python_cmd -m venv $(VENV); }
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $@

setup: $(INSTALLED)
	@scripts/check-prereqs.sh $(PYTHON) >/dev/null

run: setup
	@mkdir -p $(RUN_DIR)
	$(VENV)/bin/journeys simulate --customers $(CUSTOMERS) --days $(DAYS) --seed $(SEED) --out $(RUN_DIR)/signals.jsonl
	@rm -rf $(RUN_DIR)/decisions $(RUN_DIR)/journeys $(RUN_DIR)/late $(RUN_DIR)/dead-letter $(RUN_DIR)/checkpoints
	$(PY) jobs/journey_job.py \
	  --signals file://$(CURDIR)/$(RUN_DIR)/signals.jsonl \
	  --decisions file://$(CURDIR)/$(RUN_DIR)/decisions \
	  --journeys file://$(CURDIR)/$(RUN_DIR)/journeys \
	  --late file://$(CURDIR)/$(RUN_DIR)/late \
	  --dead-letter file://$(CURDIR)/$(RUN_DIR)/dead-letter \
	  --checkpoints $(RUN_DIR)/checkpoints \
	  --summary $(RUN_DIR)/summary.json

test: setup
	$(PY) -m pytest

test-unit: setup
	$(PY) -m pytest -m "not flink"

bench: setup
	$(PY) bench/run_bench.py --events $(BENCH_EVENTS) --results bench/results.json

clean:
	rm -rf var .pytest_cache bench/results.json bench/work
