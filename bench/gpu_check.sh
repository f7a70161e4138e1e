#!/usr/bin/env bash
# Issue #12's GPU check in one go, on a machine with an NVIDIA GPU, CUDA driver + NVRTC and
# PyTorch (it builds nothing there):
#
#   DAED=./daed-cuda PY=python3 bench/gpu_check.sh OUT_DIR
#
# 1. parity: the paper's Fashion-MNIST and CIFAR-10 U-Nets train 2 steps from the same seed on
#    REF (flex) and DEV (cuda): the weights after the steps (forward, gradients and AdamW) and the
#    forward on fixed inputs are compared;
#    data-parallel: the Fashion-MNIST U-Net trains 2 steps with --devices DEV,DEV (and
#    cuda:0,cuda:1 when there are two GPUs) against one DEV in micro-batches of half the batch
#    (the same bits expected);
# 2. side by side with PyTorch on the same GPU: bench/ab.sh (training step, sampling forward,
#    peak memory), PyTorch also under bf16 autocast and with SDPA + channels-last (--variants);
# 3. the FID Inception on the GPU when INCEPTION points at its weights (../shared does not travel).
# Everything lands in OUT_DIR (log.txt, parity.md, ab/, torch_variants/, inception/).
# Environment: DAED (a daed built with --features cuda), PY (python with torch and numpy),
# DEV (default cuda), REF (default flex), ROUNDS (default 2), INCEPTION (optional), PARITY
# (default fmnist,cifar10).
# A dry run of the parity part on a CPU machine: DEV=flex SKIP_BENCH=1 PARITY=fmnist bench/gpu_check.sh /tmp/gpu-dry.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-gpu-results}
DAED=${DAED:-target/release/daed} PY=${PY:-python3} DEV=${DEV:-cuda} REF=${REF:-flex}
ROUNDS=${ROUNDS:-2}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/log.txt") 2>&1
step() { echo; echo "== $* ($(date -u +%H:%M:%S))"; }
step "machine"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 || echo "no nvidia-smi"
"$DAED" --version
"$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available())' 2>&1

step "parity: 2 training steps and a forward, $REF vs $DEV"
P="$OUT/parity"; mkdir -p "$P"
"$PY" bench/gpu_parity.py imagenet32 "$P/data32" 64 0
echo "| U-Net | weights after 2 steps (rel) | forward (rel) |" > "$OUT/parity.md"
echo "|---|---|---|" >> "$OUT/parity.md"
parity() { # name config dataset data-path channels size steps
  local name=$1 cfg=$2 ds=$3 path=$4 c=$5 s=$6 T=$7 dev side
  for side in ref dev; do
    [ $side = ref ] && dev=$REF || dev=$DEV
    "$PY" bench/gpu_parity.py config "$cfg" "$P/$name-$side.toml" \
      "data.dataset=\"$ds\"" "data.limit=16" "train.batch_size=8" "train.micro_batch=0" \
      "train.steps=2" "train.checkpoint_every=2" "train.sample_every=0" "sample.n=2" \
      "sample.batch_size=2" "train.dynamics_every=0" "device=\"$dev\"" \
      "train.out_dir=\"$P/$name-$side\"" ${path:+"data.path=\"$path\""}
    "$DAED" train --config "$P/$name-$side.toml" || echo "FAILED: train $name on $dev"
  done
  "$PY" bench/gpu_parity.py inputs "$P/in-$name.npz" 4 "$c" "$s" "$T" 1
  for side in ref dev; do
    [ $side = ref ] && dev=$REF || dev=$DEV
    "$DAED" forward --checkpoint "$P/$name-ref" --input "$P/in-$name.npz" --out "$P/out-$name-$side.npz" --device "$dev" || echo "FAILED: forward $name on $dev"
  done
  local w f
  w=$("$PY" bench/gpu_parity.py weights "$P/$name-ref/checkpoints/step_00000002/model.safetensors" "$P/$name-dev/checkpoints/step_00000002/model.safetensors" 2>&1 | tail -1)
  f=$("$PY" bench/gpu_parity.py npz "$P/out-$name-ref.npz" "$P/out-$name-dev.npz" out 2>&1 | tail -1)
  echo "| $name | $w | $f |" | tee -a "$OUT/parity.md"
}
case ",${PARITY:-fmnist,cifar10}," in *,fmnist,*)
  parity fmnist configs/fashion_mnist_ddgm_simple.toml fashion-mnist-demo "" 1 28 500 ;; esac
case ",${PARITY:-fmnist,cifar10}," in *,cifar10,*)
  parity cifar10 configs/cifar10_ddgm_simple.toml imagenet32 "$P/data32" 3 32 1000 ;; esac

step "data-parallel: --devices against one $DEV in micro-batches of half the batch"
dp() { # name micro-batch [train flags...]
  local name=$1 micro=$2; shift 2
  "$PY" bench/gpu_parity.py config configs/fashion_mnist_ddgm_simple.toml "$P/dp-$name.toml" \
    "data.dataset=\"fashion-mnist-demo\"" "data.limit=16" "train.batch_size=8" "train.micro_batch=$micro" \
    "train.steps=2" "train.checkpoint_every=2" "train.sample_every=0" "sample.n=2" \
    "sample.batch_size=2" "train.dynamics_every=0" "device=\"$DEV\"" "train.out_dir=\"$P/dp-$name\""
  "$DAED" train --config "$P/dp-$name.toml" "$@" || echo "FAILED: data-parallel $name"
}
dp one 4
dp two 0 --devices "$DEV,$DEV"
DP_RUNS="two"
if [ "$(nvidia-smi -L 2>/dev/null | wc -l)" -ge 2 ]; then dp gpus 0 --devices cuda:0,cuda:1; DP_RUNS="two gpus"; fi
for name in $DP_RUNS; do
  w=$("$PY" bench/gpu_parity.py weights "$P/dp-one/checkpoints/step_00000002/model.safetensors" "$P/dp-$name/checkpoints/step_00000002/model.safetensors" 2>&1 | tail -1)
  echo "| data-parallel $name vs one device (fmnist) | $w | - |" | tee -a "$OUT/parity.md"
done

if [ -n "${SKIP_BENCH:-}" ]; then step "done (SKIP_BENCH): $OUT"; exit 0; fi
step "side by side with PyTorch on $DEV"
DAED="$DAED" PY="$PY" bench/ab.sh --rounds "$ROUNDS" --out "$OUT/ab" -- --models fmnist,cifar10 --cases train,sample --device "$DEV" || echo "FAILED: ab"
"$PY" bench/bench_torch.py --models fmnist,cifar10 --cases train,sample --device "$DEV" --variants bf16,best,best-bf16 --out "$OUT/torch_variants" || echo "FAILED: torch variants"

if [ -n "${INCEPTION:-}" ]; then
  step "FID Inception on $DEV"
  "$DAED" bench --models '' --cases inception --device "$DEV" --inception "$INCEPTION" --out "$OUT/inception" || echo "FAILED: inception"
fi
step "done: $OUT"
