# The two commands of the README: `make run` and `make test`. Both create ./.venv and install
# everything dlog needs on a fresh machine (Python 3.10+ with venv is the only prerequisite).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test bench install clean

$(STAMP): setup.cfg setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

## Start a three-broker cluster on 127.0.0.1:8082 with data in ./dlog-data.
run: $(STAMP)
	$(BIN)/dlog serve --data-dir ./dlog-data --brokers 3

## Run the test suite (a few minutes). PYTEST_ARGS="--run-slow" adds the full-size runs.
test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## Run the benchmarks and print ratios against the same-run baselines.
bench: $(STAMP)
	$(BIN)/python benchmarks/produce_read.py
	$(BIN)/python benchmarks/delivery.py

clean:
	rm -rf $(VENV) build *.egg-info
