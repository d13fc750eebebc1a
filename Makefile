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
FEATURES ?= sqlite
BENCH_EVENTS ?= 200000

JARS := jars/.verified

.PHONY: help setup jars run run-kafka redis cluster-up cluster-down submit test test-chaos test-unit bench clean

help:
	@echo "make run    simulate $(CUSTOMERS) customers over $(DAYS) days, run the journey job on them, print the summary"
	@echo "make test   run the test suite (unit and integration), all but the long chaos tests"
	@echo "make test-chaos   the chaos tests alone: ten TaskManager kills in one cluster run (4 to 9 minutes on 2 cores)"
	@echo "make test-unit   the unit tests alone (no engine, no service)"
	@echo "make bench  measure the job, the pure core, Feast lookups and the Beam replay on $(BENCH_EVENTS) simulated signals"
	@echo "make run FEATURES=redis   the same with Redis as the feature store's online store"
	@echo "make run-kafka   the same job from Kafka to Kafka on a local Tansu broker"
	@echo "make cluster-up / submit / cluster-down   a local standalone Flink cluster, and the Kafka job on it"

# pip's own output goes to var/log/setup.log, and its last lines to the terminal when it fails.
$(INSTALLED): requirements.lock setup.py scripts/check-prereqs.sh
	@python_cmd=$$(scripts/check-prereqs.sh $(PYTHON)) && \
	  { [ -x $(PY) ] || $$python_cmd -m venv $(VENV); }
	@mkdir -p var/log
	@echo "setting up .venv with the pinned dependency set (requirements.lock): a few minutes the first time"
	@{ $(PY) -m pip install --quiet --disable-pip-version-check -r requirements.lock && \
	   $(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e . ; } \
	  >var/log/setup.log 2>&1 || { tail -30 var/log/setup.log; echo "setup failed: see var/log/setup.log"; exit 1; }
	@touch $@

setup: $(INSTALLED)
	@scripts/check-prereqs.sh $(PYTHON) >/dev/null

# The Flink Kafka connector jars, fetched from PyPI and checked against scripts/kafka-jars.sha256.
$(JARS): $(INSTALLED) scripts/fetch-kafka-jars.sh scripts/kafka-jars.sha256
	@scripts/fetch-kafka-jars.sh $(PY)
	@touch $@

jars: $(JARS)

# FEATURES=redis uses Redis as the feature store's online store (Debian's redis-server, installed when missing).
run: setup
	@CUSTOMERS=$(CUSTOMERS) DAYS=$(DAYS) SEED=$(SEED) FEATURES=$(FEATURES) scripts/run.sh

redis: setup
	@$(PY) -m scripts.local_redis start --dir var/redis | sed 's/^/export JOURNEYS_REDIS=/'

run-kafka: setup $(JARS)
	CUSTOMERS=$(CUSTOMERS) DAYS=$(DAYS) SEED=$(SEED) scripts/run-kafka.sh

cluster-up: setup
	@scripts/cluster.sh up

cluster-down: setup
	@scripts/cluster.sh down

submit: setup $(JARS)
	CUSTOMERS=$(CUSTOMERS) DAYS=$(DAYS) SEED=$(SEED) scripts/run-kafka.sh --cluster

# Debian's redis-server (the Redis online store) and chromium (the journey map's browser test),
# installed with apt-get when missing.
test: setup $(JARS)
	@$(PY) -m scripts.debian redis-server chromium >/dev/null
	$(PY) -m pytest -m "not chaos"

# The long fault-injection runs (pytest marker `chaos`), which `make test` leaves out.
test-chaos: setup $(JARS)
	$(PY) -m pytest -m chaos

test-unit: setup
	$(PY) -m pytest tests/unit

bench: setup $(JARS)
	$(PY) bench/run_bench.py --events $(BENCH_EVENTS) --results bench/results.json

clean:
	@scripts/cluster.sh down >/dev/null 2>&1 || true
	rm -rf var .pytest_cache bench/results.json bench/work
