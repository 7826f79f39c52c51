#!/usr/bin/env bash
# The GPU measurement of docs/performance.md in one device call (about 6-7 minutes on an H100;
# every step has its own time limit, 9.5 minutes in all):
#
#   bash scripts/gpu-speed.sh          # on the GPU machine, from the project root; carry .device
#   MODE=quick bash scripts/gpu-speed.sh   # the same steps CPU-sized, to try the script first
#
# CIFAR-10 comes from $DATA_DIR/cifar-10-batches-py, else is written there by
# .device/materialize.py (copied into .device/ by the prepared device check's `prepare` step).
# Steps, each under its own time limit so that one failure leaves the others' figures:
#   1. the GPU, torch and CUDA versions;
#   2. python -m bench speed: the official loop (0 workers), the engine with compile off and on,
#      the official loop with 8 workers, 1, 2 and 4 concurrent cells (ResNet-18, full CIFAR-10,
#      the cifar10-paper recipe's batch of 256): rows appended to $OUT/performance.md;
#   3. python -m bench speed --pipeline: the proposed method (tgp) at 0.985, every recipe cut to
#      6% of its epochs (3/1/3 epochs, teacher 3, trained without compile) and extrapolated per
#      phase to the full recipe (50/10/50, teacher 50); a row appended to $OUT/performance.md;
#   4. python -m bench speed --profile: a retraining step of the engine broken into parts.
# Everything printed is in $OUT/run.log; copy the rows of $OUT/performance.md into
# docs/performance.md (they have the same columns).
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
OUT=${OUT:-$PWD/.device/out}; mkdir -p "$OUT"
PY=${PY:-python3}
DATA=${DATA_DIR:-data}
R=${RESULTS:-/tmp/bench-speed}          # inductor's cache and the pipeline's runs (not sent back)
MODE=${MODE:-full}
if [ "$MODE" = quick ]; then
  SET=(--device cpu --set model.arch=resnet_small --set teacher.arch=resnet_small
       --set dataset.train_limit=1024 --set dataset.test_limit=512)
  SPEED=(--epochs 1 --official-steps 8 --official-warmup 2 --only official-0,engine,official-2,cells-1,cells-2)
  SCALE=0.04
else
  SET=()
  SPEED=(--epochs 1 --official-steps 60 --official-warmup 10 --workers 0,8 --cells 1,2,4)
  SCALE=0.06
fi
exec > >(tee -a "$OUT/run.log") 2>&1
step() { echo; echo "== $(date +%T) $*"; }

step "1. device"
{ nvidia-smi -L 2>/dev/null || echo "no nvidia-smi"
  "$PY" -c 'import torch, torchvision; print("torch", torch.__version__, "torchvision", torchvision.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU")'
  nproc; } | tee "$OUT/device.txt"

step "CIFAR-10"
if [ ! -d "$DATA/cifar-10-batches-py" ]; then
  "$PY" .device/materialize.py "$DATA" --only cifar10 >/dev/null || { echo "no CIFAR-10 folder and no .device/materialize.py"; exit 1; }
fi
ls "$DATA/cifar-10-batches-py"

step "2. throughput: official loop, engine (compile off, on), official loop with 8 workers, concurrent cells"
timeout 270 "$PY" -m bench speed --data-dir "$DATA" --results "$R" "${SPEED[@]}" "${SET[@]}" --output "$OUT/performance.md"

step "3. the proposed method's pipeline at 0.985, epochs x $SCALE, extrapolated to the full recipe"
timeout 210 "$PY" -m bench speed --pipeline --epochs-scale "$SCALE" --sparsity 0.985 --data-dir "$DATA" \
  --results "$R" "${SET[@]}" --output "$OUT/performance.md"

step "4. step profile of the engine (a retraining step)"
timeout 60 "$PY" -m bench speed --profile --epochs 1 --data-dir "$DATA" --results "$R" "${SET[@]}"

step "done"
cat "$OUT/performance.md" 2>/dev/null
