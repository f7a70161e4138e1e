#!/usr/bin/env bash
# Fixed-seed outputs of the user-facing commands, hashed, so that a refactor can show it changed
# nothing: `scripts/behaviour_check.sh record BASE.txt` before, `scripts/behaviour_check.sh
# compare BASE.txt` after (exit 1 and a diff when an output differs).
#
# Runs: daed demo --steps 20, daed sample (ancestral and DDIM), daed analyze snr / recon / losses /
# dynamics / transfer, a two-stage DAE and its samples, and daed eval (when the Inception weights are
# at hand). Timing fields (steps_per_sec, elapsed_s, seconds, images_per_s) are removed before hashing.
set -euo pipefail
mode=${1:?record|compare}
file=${2:?file of hashes}
cd "$(dirname "$0")/.."
daed=${DAED_BIN:-target/release/daed}
work=$(mktemp -d /tmp/daed-behaviour.XXXXXX)
trap 'rm -rf "$work"' EXIT
export RAYON_NUM_THREADS=${RAYON_NUM_THREADS:-2}
q() { "$daed" "$@" > /dev/null 2>&1 || { echo "failed: daed $*" >&2; "$daed" "$@" >&2; exit 2; }; }

run="$work/demo"
q demo --out "$run" --steps 20
q sample --checkpoint "$run" --n 8 --steps 10 --seed 3 --out "$work/sample"
q sample --checkpoint "$run" --n 8 --steps 10 --ddim --eta 0.5 --seed 3 --out "$work/sample_ddim"
q analyze snr --dataset demo --schedule linear,cosine --steps 100,50 --out "$work/snr"
q analyze recon --checkpoint "$run" --dataset demo --n 16 --points 4 --out "$work/recon"
q analyze losses --checkpoint "$run" --dataset demo --n 16 --out "$work/losses"
sed -e 's/^steps = 600/steps = 4/' -e 's/^checkpoint_every = 200/checkpoint_every = 4\ndynamics_every = 2/' \
    -e 's/^model_channels = 16/model_channels = 8/' -e 's/^num_heads = 2/num_heads = 1/' \
    -e 's/^respacing = "100"/respacing = "5"/' -e 's/^n = 64/n = 4/' configs/demo.toml > "$work/dyn.toml"
q train --config "$work/dyn.toml" --out "$work/dyn"
q analyze dynamics "$work/dyn" --out "$work/dynamics"
cat > "$work/dae.toml" <<TOML
name = "dae"
model = "daed"
[data]
dataset = "demo"
[diffusion]
steps = 500
[unet]
model_channels = 16
channel_mult = [1, 2, 2]
num_res_blocks = 1
attention_resolutions = [7]
num_heads = 2
[train]
steps = 4
batch_size = 8
checkpoint_every = 4
[sample]
n = 4
respacing = "5"
[daed]
beta1 = 0.1
mode = "two-stage"
ddgm = "$run"
TOML
q train --config "$work/dae.toml" --out "$work/dae"
q sample --checkpoint "$work/dae" --n 4 --steps 5 --seed 1 --out "$work/dae_sample"
q analyze transfer --ddgm "$run" --dae "$work/dae" --target demo --n 8 --out "$work/transfer"
if [ -e ../shared/data/inception ] || [ -n "${DAED_INCEPTION:-}" ]; then
  q eval --samples "$work/sample/n8_ancestral10_seed3.npz" --reference demo --n 8 \
     --metrics fid,pr --no-cache --out "$work/eval"
fi

# Hash every output file; JSON and JSONL without the timing fields.
hashes() {
  cd "$work"
  find . -type f ! -name '*.tmp-*' ! -name '.lock' ! -name 'latest' ! -name 'state.json' ! -name 'config.toml' \
       ! -name 'cfg.toml' ! -name '*.toml' | sort | while read -r f; do
    case "$f" in
      *.json|*.jsonl)
        h=$(python3 -c '
import json, sys
drop = {"steps_per_sec", "elapsed_s", "seconds", "images_per_s", "total_seconds", "metrics_seconds", "source"}
def clean(v):
    if isinstance(v, dict):
        return {k: clean(x) for k, x in v.items() if k not in drop}
    if isinstance(v, list):
        return [clean(x) for x in v]
    return v
text = open(sys.argv[1]).read()
try:
    docs = [json.loads(text)]
except ValueError:
    docs = [json.loads(l) for l in text.splitlines() if l.strip()]
print(json.dumps([clean(d) for d in docs], sort_keys=True))' "$f" | sha256sum | cut -c1-16);;
      *) h=$(sha256sum "$f" | cut -c1-16);;
    esac
    echo "$h $f"
  done
}

case "$mode" in
  record) hashes > "$file"; echo "recorded $(wc -l < "$file") outputs in $file";;
  compare)
    now=$(mktemp /tmp/daed-behaviour-now.XXXXXX)
    hashes > "$now"
    if diff "$file" "$now"; then echo "identical: $(wc -l < "$file") outputs"; else exit 1; fi;;
  *) echo "record|compare" >&2; exit 2;;
esac
