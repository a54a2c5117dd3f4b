#!/usr/bin/env bash
# The one-shot GPU check of Sprout's training loop (not a CI test: CI has no GPU). Runs once,
# unattended, in under 8 minutes on one H100/H200, and writes ONE JSON line to $OUT/gpu_train.json
# (default bench/out/; rewritten after every part, so a run cut short keeps what it measured),
# also printed as the last line. What it measures: see bench/gpu_check.py's docstring —
# (a) environment probe, failing fast; (b) bf16 packed vs unpacked loss and gradients; (c) the
# attention kernel alone at 16k-32k tokens with 50-300 samples (CUDA events); (d) Sprout end to
# end at ~100M and ~1B with SmolLM2's real 49k vocabulary: loss tokens/s, MFU, peak memory;
# (e) HF Trainer + DataCollatorWithFlattening with default sdpa, and with Sprout's varlen kernel,
# each in its own process; (f) ZeRO-3 + frozen layers + export + reload, memory after each phase.
#
# The GPU host is air-gapped (no package index; Python 3.12, torch 2.11+cu130, transformers
# 5.17, no DeepSpeed, hjson, pydantic or Ray). What it lacks travels with the tree:
#
#   bash bench/gpu_wheels.sh      # HERE, where PyPI is reachable: -> bench/gpu-wheels/ (~9 MB,
#                                 # ignored by git; DeepSpeed 0.19.8 py3-none-any, its deps for
#                                 # cp312 manylinux, SmolLM2's tokenizer files)
#   # then carry bench/gpu-wheels with the tree (the device tool: carry=["bench/gpu-wheels"])
#   bash bench/gpu_train.sh       # THERE: unpacks the wheels into a private folder on PYTHONPATH
#
#   SMOKE=1 bash bench/gpu_train.sh   # tiny sizes on a CPU: checks the script end to end
#   PEAK_TFLOPS=989 (dense bf16 peak for MFU), GPU_CHECK_SECONDS=470 (total budget)
#   bash bench/gpu_train.sh --only kernel,correctness   # some parts only
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if [ -z "${PYTHON:-}" ] && [ -x .venv/bin/python ]; then PY=.venv/bin/python; fi
if [ -d bench/gpu-wheels ] && ! "$PY" -c "import deepspeed, hjson, pydantic" >/dev/null 2>&1; then
    # unpack, not pip install: no index, no pip needed, nothing written outside this folder
    SITE="${TMPDIR:-/tmp}/sprout-gpu-site"
    "$PY" - "$SITE" bench/gpu-wheels <<'PY'
import os, stat, sys, zipfile
from pathlib import Path
site, wheels = Path(sys.argv[1]), Path(sys.argv[2])
site.mkdir(parents=True, exist_ok=True)
for w in sorted(wheels.glob("*.whl")):
    with zipfile.ZipFile(w) as z:
        z.extractall(site)
        for info in z.infolist():  # zip keeps Unix modes in external_attr: restore executables (ninja)
            mode = info.external_attr >> 16
            if mode & 0o111:
                p = site / info.filename
                p.chmod(p.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    print(f"unpacked {w.name}", file=sys.stderr)
# a wheel's scripts (ninja's binary) go where pip would put them: bin/, executable
(site / "bin").mkdir(exist_ok=True)
for script in site.glob("*.data/scripts/*"):
    target = site / "bin" / script.name
    target.write_bytes(script.read_bytes())
    target.chmod(0o755)
PY
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
    export PATH="$SITE/bin:$PATH"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec "$PY" bench/gpu_check.py "$@"
