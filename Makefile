# One venv for everything; `make test` is the command the README and .ci/run use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup test validate demo bench clean

STAMP := $(VENV)/.sprout-installed

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# Installs only when pyproject.toml, the install script (shared with the container images) or the
# Makefile changed since the last install: every other `make` target starts at once.
$(STAMP): pyproject.toml deploy/install.sh Makefile | $(PY)
	deploy/install.sh $(PY) dev --torch --student --editable
	@touch $(STAMP)

setup: $(STAMP)

# Fast tests quietly, then the slow end-to-end ones by name (each takes up to ~2 min).
test: setup
	$(PY) -m pytest -q -m "not slow"
	$(PY) -m pytest -v -m slow --durations=20

validate: setup
	$(VENV)/bin/sprout validate taxonomy

# The main job end to end on embedded defaults: sample taxonomy -> validate -> generate -> filter
# -> mix -> train -> evaluate -> report (offline teacher, SmolLM2-135M-Instruct student, local CPU).
# A finished run is a success whatever its verdict (exit 3: rejected, and the report says why).
demo: setup
	$(VENV)/bin/sprout run taxonomy --out runs/demo || [ $$? -eq 3 ]

bench: setup  # every benchmark once (filter: --quick; its full run with the 5k baseline takes ~20 min)
	$(PY) bench/validate.py
	$(PY) bench/webhook.py
	$(PY) bench/filter.py --quick
	$(PY) bench/train.py
	$(PY) bench/train_precision.py --quick
	$(PY) bench/rerun.py
	$(PY) bench/serve.py
	$(PY) bench/sdg.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build *.egg-info
