# Copytrade: the two commands a newcomer needs are `make start` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: install gen start test lint clean bench bench-quick bench-gateway

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	$(PY) scripts/repair_otel_protos.py
	touch $@

## install: a virtualenv with every dependency, the real servers included, and generated code
install: $(VENV)/.installed gen

## gen: Python API package and Envoy descriptor set from protos/ (one command, one source)
gen: $(VENV)/.installed
	$(PY) scripts/gen_protos.py

## start: the whole platform on embedded defaults (Ctrl-C stops it all)
start: install
	$(PY) -m stack

## test: every test, unit and end to end, against embedded servers or DATABASE_URL/REDIS_URL/NATS_URL
test: install
	$(PY) -m pytest -q

## lint: the API definitions (buf lint, STANDARD; buf breaking against the previous commit), generated
## code and descriptor sets matching the protos, and the Python (ruff; mypy, configured in pyproject.toml)
lint: install
	$(VENV)/bin/buf lint
	if git rev-parse -q --verify HEAD~1 >/dev/null; then $(VENV)/bin/buf breaking --against '.git#ref=HEAD~1'; fi
	$(PY) scripts/gen_protos.py --check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

clean:
	rm -rf build .pytest_cache

## bench: the whole pipeline, N = 10 to 5,000 followers, REST and gRPC, vs the bare limit (table, JSON, PNG)
bench: install
	$(PY) -m bench.pipeline

## bench-quick: the same, small (N = 10 and 30, 2 orders each): a minute
bench-quick: install
	$(PY) -m bench.pipeline --quick

## bench-gateway: ExecuteFanout of 500 and 5,000 orders vs bare HTTP clients (prints a table, writes bench-results/)
bench-gateway: install
	$(PY) -m bench.broker_fanout

## fuzz: the long fuzzing run, >= 10,000 generated inputs (REST via Envoy, gRPC direct, odd headers); prints the tallies
.PHONY: fuzz
fuzz: install
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-160} $(PY) -m pytest -q -s -p no:cacheprovider tests/fuzz

## faults: the full fault suite (issue 6): kill -9 / restart of stack processes and broker faults during
## 500-follower fan-outs; prints per scenario the faults injected and the invariant's result
.PHONY: faults
faults: install
	FAULTS_FULL=1 $(PY) -m pytest -q -s -p no:cacheprovider tests/faults
