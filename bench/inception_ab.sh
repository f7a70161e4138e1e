#!/usr/bin/env bash
# A/B images/s of the FID Inception-v3 (pool3): PyTorch (bench/inception_torch.py) vs daed,
# run alternately A B A B. daed's figure is the `samples:` line of `daed eval` (150 Fashion-MNIST
# test images, batch 50); it includes the 28x28 -> 299x299 resize (pytorch-fid resizes too), the
# torch figure times the network alone on random 299x299 input.
# Usage (from the repo root): bench/inception_ab.sh   [PY=/tmp/torchvenv/bin/python] [DAED=...]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-/tmp/torchvenv/bin/python}
DAED=${DAED:-target/release/daed}
export OMP_WAIT_POLICY=PASSIVE
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

torch_ips=() daed_ips=()
for round in 1 2; do
  echo "== round $round: torch"
  t=$("$PY" bench/inception_torch.py --threads 2 --batch 50 2>&1); echo "$t"
  torch_ips+=("$(sed -nE 's/.*\(([0-9.]+) images\/s\).*/\1/p' <<<"$t" | tail -1)")
  echo "== round $round: daed"
  d=$("$DAED" eval --samples fashion-mnist:test --reference fashion-mnist:train --n 150 \
        --metrics fid --no-cache --batch-size 50 --out "$OUT/r$round" 2>&1); echo "$d"
  daed_ips+=("$(sed -nE 's/^samples: .*\(([0-9.]+) images\/s\).*/\1/p' <<<"$d" | tail -1)")
  echo "   load: $(uptime | sed 's/.*load/load/')"
done

echo "== summary (images/s)"
for i in 0 1; do
  echo "round $((i + 1)): torch ${torch_ips[i]}  daed ${daed_ips[i]}  daed/torch $(awk -v a="${daed_ips[i]}" -v b="${torch_ips[i]}" 'BEGIN{printf "%.3f", a/b}')"
done
awk -v t="${torch_ips[*]}" -v d="${daed_ips[*]}" 'BEGIN{split(t,T);split(d,D);
  printf "mean:    torch %.2f  daed %.2f  daed/torch %.3f\n", (T[1]+T[2])/2, (D[1]+D[2])/2, (D[1]+D[2])/(T[1]+T[2])}'
