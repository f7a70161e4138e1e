#!/usr/bin/env bash
# Makes the virtual environment the PyTorch side of the benchmarks runs in: .venv-bench/
# (torch, numpy, safetensors from PyPI; about 1 GB with the CUDA wheels on Linux).
#   bench/setup.sh [--cpu]   --cpu: the CPU-only torch wheel from download.pytorch.org
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv-bench
if [ "${1:-}" = "--cpu" ]; then
  .venv-bench/bin/pip install torch --index-url https://download.pytorch.org/whl/cpu
else
  .venv-bench/bin/pip install torch
fi
.venv-bench/bin/pip install numpy safetensors
.venv-bench/bin/python -c 'import torch; print("torch", torch.__version__, "ready")'
