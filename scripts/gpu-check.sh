#!/usr/bin/env bash
# Every GPU measurement and check of the project in one device call, within $BUDGET seconds
# (default 530; each step has its own time limit and the last step gets what is left, so one
# failure or overrun leaves the other steps' figures):
#
#   bash scripts/gpu-check.sh              # on the GPU machine, from the project root; carry .device
#   MODE=quick bash scripts/gpu-check.sh   # the same steps CPU-sized, to try the script first
#
# 1. the GPU, torch and CUDA versions;
# 2. python -m bench speed: the official loop (0 and 8 workers), the engine with compile off and
#    on, 1, 2 and 4 concurrent cells (ResNet-18, full CIFAR-10, the cifar10-paper recipe's batch);
# 3. python -m bench speed --pipeline: tgp at 0.985, recipes cut to 6% of their epochs and
#    extrapolated per phase to the full cifar10-paper recipe;
# 4. scripts/device_checks.py: CPU-then-GPU identity in one folder, SIGTERM at a step and resume;
# 5. python -m bench speed --profile: a retraining step broken into parts;
# 6. the small comparison grid (cifar10-cpu preset: every method of the registry at 0.9 and 0.98,
#    3 seeds, 5,000 train images) on the GPU, compile off, six runners sharing one results folder
#    (two per seed, walking the method list from opposite ends); whatever finishes in the time
#    left is recorded, the rest is recorded as interrupted.
# Output in $OUT: device.txt, performance.md (rows for docs/performance.md), throughput.csv (rows for
# bench/throughput.csv), device-checks.txt, profile.txt, grid.tgz (records, tables; no checkpoints),
# run.log (everything, time-stamped).
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
OUT=${OUT:-$PWD/.device/out}; mkdir -p "$OUT"
PY=${PY:-python3}
DATA=${DATA_DIR:-data}
R=${RESULTS:-/tmp/bench-gpu}
MODE=${MODE:-full}
BUDGET=${BUDGET:-530}
T0=$(date +%s)
left() { echo $(( BUDGET - ($(date +%s) - T0) )); }
limit() { local want=$1 reserve=$2 l; l=$(( $(left) - reserve )); [ "$l" -lt "$want" ] && want=$l; [ "$want" -lt 5 ] && want=5; echo "$want"; }
if [ "$MODE" = quick ]; then
  SET=(--device cpu --set model.arch=resnet_small --set teacher.arch=resnet_small
       --set dataset.train_limit=1024 --set dataset.test_limit=512)
  SPEED=(--epochs 1 --official-steps 8 --official-warmup 2 --only official-0,engine,official-2,cells-1,cells-2)
  SCALE=0.04; DEV=cpu
  GRIDSET=(--set runtime.device=cpu --set dataset.train_limit=600 --set dataset.test_limit=300
           --set pretrain.epochs=1 --set retrain.epochs=1 --set teacher.train.epochs=1 --set tgp.finetune.epochs=1
           --set colt.train.epochs=1 --set egp.dense.epochs=1 --set egp.finetune.epochs=1 --set grid.seeds=[0])
  SEEDS="0"
else
  SET=()
  SPEED=(--epochs 1 --official-steps 50 --official-warmup 10 --workers 0,8 --cells 1,2,4)
  SCALE=0.06; DEV=cuda
  GRIDSET=(--set runtime.device=cuda --set runtime.compile=off)
  SEEDS="0 1 2"
fi
exec > >(tee -a "$OUT/run.log") 2>&1
step() { echo; echo "== $(date +%T) (+$(( $(date +%s) - T0 )) s) $*"; }

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
timeout "$(limit 200 300)" "$PY" -m bench speed --data-dir "$DATA" --results "$R" "${SPEED[@]}" "${SET[@]}" --output "$OUT/performance.md" \
  --throughput "$OUT/throughput.csv"

step "3. the proposed method's pipeline at 0.985, epochs x $SCALE, extrapolated to the full recipe"
timeout "$(limit 130 175)" "$PY" -m bench speed --pipeline --epochs-scale "$SCALE" --sparsity 0.985 --data-dir "$DATA" \
  --results "$R" "${SET[@]}" --output "$OUT/performance.md"

step "4. identity and stop/resume on the device"
timeout "$(limit 40 135)" "$PY" scripts/device_checks.py "$OUT" --device "$DEV"

step "5. step profile of the engine (a retraining step)"
timeout "$(limit 20 115)" "$PY" -m bench speed --profile --epochs 1 --data-dir "$DATA" --results "$R" "${SET[@]}" | tee "$OUT/profile.txt"

step "6. the small comparison grid, six runners on one results folder, $(left) s left"
G=$R/grid
METHODS=$("$PY" - <<'PYEOF'
import json, yaml
print(json.dumps(yaml.safe_load(open("bench/configs/cifar10-cpu.yaml"))["grid"]["methods"]))
PYEOF
)
REVERSED=$("$PY" -c "import json,sys; print(json.dumps(json.loads(sys.argv[1])[::-1]))" "$METHODS")
GL=$(limit 600 15)
pids=()
for s in $SEEDS; do
  for order in "$METHODS" "$REVERSED"; do
    timeout -s TERM -k 10 "$GL" "$PY" -m bench run cifar10-cpu --data-dir "$DATA" --results "$G" "${GRIDSET[@]}" \
      --set "grid.seeds=[$s]" --set "grid.methods=$order" > "$OUT/grid-runner-$s-${#pids[@]}.log" 2>&1 &
    pids+=($!)
  done
done
wait "${pids[@]}"
tail -n 2 "$OUT"/grid-runner-*.log
"$PY" -m bench collect --results "$G" >/dev/null && "$PY" -m bench table --dataset cifar10 --results "$G" --accuracy final >/dev/null; cat "$G"/tables/cifar10.md
tar czf "$OUT/grid.tgz" --exclude=cache --exclude=claims -C "$R" grid

step "done"
cat "$OUT/performance.md" "$OUT/device-checks.txt" 2>/dev/null
