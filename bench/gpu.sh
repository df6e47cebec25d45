#!/usr/bin/env bash
# One script for a lent CUDA machine (within 8 minutes): prints one table and appends it to
# bench/RESULTS.md with the device name.
#
#   bench/gpu.sh              the CUDA tests, Embedder fp32/fp16/channels-last at batch 32-256, the embed
#                             job end to end, faiss GPU at 1M vectors, AdaIN and cin26 at 512 px
#   bench/gpu.sh --dry-run    every step tiny, on the CPU (how it is tested where no GPU is lent);
#                             the table is printed, RESULTS.md is left alone
#   bench/gpu.sh --train      also: train adain (from the shipped decoder) and johnson (one style) for 5 minutes
#                             each on the GPU, E/C before and after; the decoder goes to runs/gpu-train/
#
# Each step has its own time limit; a step that fails or times out becomes a row saying so, and the
# script goes on. Run it from the repository root with the venv's python (PYTHON=... to override).
set -u
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
DRY=""
TRAIN=0
for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY="--dry-run" ;;
    --train) TRAIN=1 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "unknown argument: $arg (use --dry-run, --train)" >&2; exit 2 ;;
  esac
done
ROWS="$(mktemp -t styleaxis-gpu-rows.XXXXXX)"
LOG="$(mktemp -t styleaxis-gpu-log.XXXXXX)"
trap 'rm -f "$ROWS"' EXIT

row() {  # step case value note
  "$PYTHON" -c 'import json,sys; print(json.dumps(dict(zip(("step","case","value","note"), sys.argv[1:]))))' \
    "$@" >> "$ROWS"
}

step() {  # limit_s name command...: run a step, keep its JSON rows, or record why it gave none
  local limit="$1" name="$2"; shift 2
  local start=$SECONDS
  if timeout "$limit" "$@" > "$LOG.out" 2> "$LOG.err"; then
    grep '^{' "$LOG.out" >> "$ROWS"
  else
    local rc=$?
    grep '^{' "$LOG.out" >> "$ROWS"
    row "$name" "failed (exit $rc after $((SECONDS - start)) s)" "-" "$(tail -n 1 "$LOG.err" | tr '|' '/' | cut -c1-160)"
  fi
  echo "# $name: $((SECONDS - start)) s" >&2
}

# 1. the CUDA tests: every test module that checks for CUDA
CUDA_TESTS=$(grep -l "cuda" tests/test_*.py | tr '\n' ' ')
start=$SECONDS
if [ -n "$DRY" ]; then PYTEST_ARGS=(-q -x -m "not slow" -k "cuda or gpu"); else PYTEST_ARGS=(-q -x -m ""); fi
timeout 240 "$PYTHON" -m pytest $CUDA_TESTS "${PYTEST_ARGS[@]}" -p no:cacheprovider > "$LOG.out" 2>&1
rc=$?
row "CUDA tests" "$(echo "$CUDA_TESTS" | wc -w) modules naming CUDA" "$(tail -n 1 "$LOG.out" | tr -d '=' | sed 's/^ *//' | cut -c1-100)" \
  "exit $rc in $((SECONDS - start)) s$([ -n "$DRY" ] && echo '; dry run: only tests named cuda/gpu')"

# 2-5. throughput and latency
step 150 "Embedder" "$PYTHON" bench/gpu_table.py embedder $DRY
step 240 "embed job" "$PYTHON" bench/gpu_table.py job $DRY
step 90 "faiss" "$PYTHON" bench/gpu_table.py faiss $DRY
step 90 "stylize" "$PYTHON" bench/gpu_table.py stylize $DRY

# 6. optional: a few minutes of GPU training, E/C before and after
if [ "$TRAIN" = 1 ]; then
  if [ -n "$DRY" ]; then TRAIN_OUT="$(mktemp -d -t styleaxis-gpu-train.XXXXXX)"; else TRAIN_OUT="runs/gpu-train"; fi
  step 700 "train" "$PYTHON" bench/gpu_train.py $DRY --out "$TRAIN_OUT"
fi

if [ -n "$DRY" ]; then
  "$PYTHON" bench/gpu_table.py table "$ROWS"
else
  "$PYTHON" bench/gpu_table.py table "$ROWS" --results bench/RESULTS.md
fi
rm -f "$LOG" "$LOG.out" "$LOG.err"
