#!/usr/bin/env bash
# daed vs PyTorch, side by side: `daed bench` and bench/bench_torch.py run alternately
# (A B A B ...) with the same models, cases, batch and repeats; prints and writes the ratios.
#
#   bench/ab.sh [--rounds 2] [--out DIR] [-- BENCH ARGS...]
#   e.g. bench/ab.sh --rounds 2 -- --models tiny,fmnist --cases train,sample --runs 3
#
# BENCH ARGS go to both sides (--models --cases --batch --micro-batch --inception-batch
# --warmup --runs --device). Environment: PY (default .venv-bench/bin/python, made by
# bench/setup.sh), DAED (default target/release/daed), THREADS (default: all cores),
# TORCH_ARGS (PyTorch's side only, e.g. "--variants eager,best,bf16,best-bf16": its tuned rows),
# DAED_PRECISIONS (daed's side, default f32; "f32,bf16" adds daed's bf16 rows, NAME-bf16, on
# CPUs with AVX512-BF16).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=2 OUT=bench/results/$(date +%Y%m%d-%H%M%S)
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --) shift; break ;;
    *) echo "unknown option $1 (bench args go after --)" >&2; exit 2 ;;
  esac
done
PY=${PY:-.venv-bench/bin/python}
DAED=${DAED:-target/release/daed}
THREADS=${THREADS:-$(nproc)}
[ -x "$PY" ] || { echo "no python at $PY: run bench/setup.sh first (or set PY)" >&2; exit 2; }
[ -x "$DAED" ] || { echo "no daed at $DAED: run cargo build --release first (or set DAED)" >&2; exit 2; }
export OMP_WAIT_POLICY=PASSIVE RAYON_NUM_THREADS=$THREADS
mkdir -p "$OUT"
{ echo "machine: $(lscpu | sed -n 's/^Model name: *//p') ($(nproc) cores), $(date -u)"
  echo "daed: $(git rev-parse --short HEAD 2>/dev/null || echo '?'), torch: $("$PY" -c 'import torch; print(torch.__version__)')"
  echo "args: $*; torch only: ${TORCH_ARGS:-}"; } | tee "$OUT/machine.txt"
for r in $(seq 1 "$ROUNDS"); do
  for p in $(echo "${DAED_PRECISIONS:-f32}" | tr ',' ' '); do
    echo "== round $r: daed ($p)"
    "$DAED" bench "$@" --precision "$p" --out "$OUT/daed_${p}_$r"
  done
  echo "== round $r: torch"
  # shellcheck disable=SC2086  # TORCH_ARGS is a list of words
  "$PY" bench/bench_torch.py --threads "$THREADS" "$@" ${TORCH_ARGS:-} --out "$OUT/torch_$r"
done
"$PY" bench/compare.py "$OUT" | tee "$OUT/ratios.md"
