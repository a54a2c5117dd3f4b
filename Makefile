# One venv for everything; `make test` is the command the README and .ci/run use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup test validate bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

setup: $(PY)
	$(PY) -m pip install -q -e ".[dev]"

test: setup
	$(PY) -m pytest -q

validate: setup
	$(VENV)/bin/sprout validate taxonomy

bench: setup
	$(PY) bench/validate.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build *.egg-info
