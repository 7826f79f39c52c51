#!/usr/bin/env bash
# Issue 20 in ONE device call of at most $BUDGET = 540 s of command time (run.sh's set-up included):
#
#   bash .device/run.sh scripts/gpu-paper-slice.sh               # the device call; carry [".device"]
#   MODE=quick bash .device/run.sh scripts/gpu-paper-slice.sh    # the same steps CPU-sized, here first
#
# Its plan (steps, limits, the slice's cells and when each is expected to end) is computed before
# anything runs, from the measured throughput rows (scripts/slice_plan.py), and printed first; at the
# end, planned and spent seconds side by side. Steps, each under its own time limit:
#  1. the GPU, torch and CUDA versions;
#  2. the smoke grid on the GPU (every registered method, tiny, seed 0; two runners walking the method
#     list from opposite ends, the three never run on CUDA first: pskd-simple, pskd-epsd, cskd-epsd)
#     BESIDE the slice's ResNet-50 teacher (python -m bench teacher): the tiny smoke leaves the GPU
#     mostly idle; the teacher's record says what its epochs cost with the smoke beside it;
#  3. the step profile, bounded by steps (40): a masked retraining step and a tgp-kd fine-tune step
#     (python -m bench speed --profile --steps 40);
#  4. the speed candidates toward 1.5 s per ResNet-18 epoch, 50 timed steps each, as s/epoch against
#     1.5 s (python -m bench speed --steps 50 --only ...: CUDA graphs, batch 512, teacher stream and
#     folded BatchNorm; docs/performance.md);
#  5. the slice: preset cifar10-gpu-slice (ResNet-18 students on all 50,000 JPEG-decoded CIFAR-10
#     training images, the ResNet-50 teacher, 98.41% overall sparsity, seeds 42-44; the core
#     comparison in priority order), K cells packed on the one GPU (--executor local --workers K, K
#     from the plan); if the local executor fails to start, K plain runners on one folder instead;
#  6. records, tables, claims and figures packed.
# Time guard (scripts/guard.sh): every step runs under `timeout -s TERM` in its own process group.
# SIGTERM reaches every process of the group: an inline runner, and the local executor's submitit
# controllers (which forward it to their workers) and workers; each stops at the next training step,
# writes its epoch checkpoint and records its cell `interrupted` (a rerun resumes it); cells not
# started stay pending. The workers outlive their parent, so the guard waits for the group to empty
# (30 s at most) before the next step. SIGINT is not used: submitit's controller turns it into a
# KeyboardInterrupt and SIGKILLs its workers a second later, often before they record the cell.
# MODE=quick: every step CPU-sized (the planner's QUICK settings), one thread per process (on the
# shared 2-core machine OpenMP's spinning threads made two-thread processes many times slower).
# Output in $OUT (7 files): run.log (everything, time-stamped steps, the plan first), device.txt,
# profile.txt, performance.md (rows for docs/performance.md), summary.md (the slice's table, claims,
# cell states, planned vs spent), slice.tgz (records, tables, claims, REPORT.md,
# figures, cell and worker logs; no checkpoints), smoke.tgz (the smoke grid's records and tables).
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
OUT=${OUT:-$PWD/.device/out}; mkdir -p "$OUT"
PY=${PY:-python3}
DATA=${DATA_DIR:-data}
MODE=${MODE:-full}
R=${RESULTS:-$(mktemp -d /tmp/bench-slice.XXXXXX)}; mkdir -p "$R"
# The call's clock started with run.sh, which exec'd this script (same pid): count its set-up too.
up=$(ps -o etimes= -p $$ 2>/dev/null | tr -d ' ')
T0=$(( $(date +%s) - ${up:-0} ))
exec > >(tee -a "$OUT/run.log") 2>&1

"$PY" scripts/slice_plan.py --mode "$MODE" || { echo "the plan does not fit its budget: fix the preset or the plan"; exit 2; }
eval "$("$PY" scripts/slice_plan.py --mode "$MODE" --shell)"
BUDGET=${BUDGET:-$PLAN_BUDGET}
SET=("${PLAN_SET[@]}")
[ "$PLAN_THREADS" -gt 0 ] && export OMP_NUM_THREADS=$PLAN_THREADS
DEV=$([ "$MODE" = quick ] && echo cpu || echo cuda)
source scripts/guard.sh
elapsed() { echo $(( $(date +%s) - T0 )); }
left() { echo $(( BUDGET - $(elapsed) )); }
# limit WANT: WANT seconds, or what is left before the packing (and the slice's drain) if less; at least 5
limit() { local l; l=$(( $(left) - PLAN_PACK - 10 )); [ "$l" -lt "$1" ] && set -- "$l"; [ "$1" -lt 5 ] && set -- 5; echo "$1"; }
SPENT=()
step() { echo; echo "== $(date +%T) (+$(elapsed) s, $(left) s left) $*"; STEP_T=$(date +%s); }
done_step() { SPENT+=("$1|$2|$(( $(date +%s) - STEP_T ))"); }
echo "results: $R; budget $BUDGET s, $(elapsed) s spent before this script (run.sh)"

step "1. device"
{ nvidia-smi -L 2>/dev/null || echo "no nvidia-smi"
  "$PY" -c 'import torch, torchvision; print("torch", torch.__version__, "torchvision", torchvision.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU")'
  echo "cpus $(getconf _NPROCESSORS_ONLN)"; "$PY" -c 'import submitit; print("submitit", submitit.__version__)' 2>&1 | tail -n 1
  ls "$DATA/cifar-10-batches-py" | tr '\n' ' '; echo; } | tee "$OUT/device.txt"
done_step "1. device" "$PLAN_T_DEVICE"

step "2. smoke grid on $DEV ($("$PY" -c 'import json,sys; print(len(json.loads(sys.argv[1])))' "$PLAN_SMOKE_ORDER") methods), beside the slice's teacher"
L=$(limit "$PLAN_LIMIT_SMOKE")
guard "$L" "$PY" -m bench teacher cifar10-gpu-slice --data-dir "$DATA" --results "$R/slice" "${SET[@]}" \
  > "$R/teacher.log" 2>&1 &
tpid=$!
spids=()
for order in "$PLAN_SMOKE_ORDER" "$PLAN_SMOKE_REVERSED"; do
  guard "$L" "$PY" -m bench run smoke --data-dir "$DATA" --results "$R/smoke" "${PLAN_SMOKE_SET[@]}" --set "grid.seeds=[0]" \
    --set "grid.methods=$order" > "$R/smoke-runner-${#spids[@]}.log" 2>&1 &
  spids+=($!)
done
wait "${spids[@]}"; echo "smoke runners: $(tail -qn 1 "$R"/smoke-runner-*.log | tr '\n' ' ')"
wait "$tpid"; echo "teacher: $(tail -n 2 "$R/teacher.log" | tr '\n' ' ')"
"$PY" - "$R/smoke" <<'PYEOF'
import collections, glob, json, sys
recs = [json.load(open(p)) for p in glob.glob(sys.argv[1] + "/runs/*/*.json")]
by = collections.defaultdict(collections.Counter)
for r in recs:
    by[r["method"]][r["status"]] += 1
print(f"smoke: {len(recs)} records, {len(by)} methods on {sorted({r.get('device_name') for r in recs})}")
for m in sorted(by):
    print(f"  {m:22s} " + ", ".join(f"{n} {s}" for s, n in sorted(by[m].items())))
for r in recs:
    if r["status"] == "failed":
        print(f"  FAILED {r['method']} {r['target_sparsity']}: {r.get('error')}")
PYEOF
done_step "2. smoke + teacher" "$PLAN_T_SMOKE"

step "3. step profile (bounded by steps)"
guard "$(limit "$PLAN_LIMIT_PROFILE")" "$PY" -m bench speed --profile --steps "$PLAN_PROFILE_STEPS" --data-dir "$DATA" \
  --results "$R/speed" "${PLAN_SPEED_SET[@]}" --output "" | tee "$OUT/profile.txt"
done_step "3. profile" "$PLAN_T_PROFILE"

step "4. speed candidates toward 1.5 s per ResNet-18 epoch (one cell)"
guard "$(limit "$PLAN_LIMIT_SPEED")" "$PY" -m bench speed --steps "$PLAN_SPEED_STEPS" --only "$PLAN_SPEED_ONLY" \
  --data-dir "$DATA" --results "$R/speed" "${PLAN_SPEED_SET[@]}" --output "$OUT/performance.md"
done_step "4. speed" "$PLAN_T_SPEED"

step "5. the slice: cifar10-gpu-slice, $PLAN_WORKERS workers on one device, $(limit 100000) s"
# The local executor (submitit) first; if it fails to start (exit code other than 0, 124 or 137, and
# nothing recorded), PLAN_WORKERS plain runners share the folder instead (they claim cells and wait for
# each other's artifacts: docs/reliability.md). FORCE_EXECUTOR_FAILURE=1 takes the fallback (the CPU test).
if [ -n "${FORCE_EXECUTOR_FAILURE:-}" ]; then
  echo "FORCE_EXECUTOR_FAILURE: the local executor is not started" > "$R/slice-runner.log"; rc=3
else
  guard "$(limit 100000)" "$PY" -m bench run cifar10-gpu-slice --executor local --workers "$PLAN_WORKERS" \
    --data-dir "$DATA" --results "$R/slice" "${SET[@]}" > "$R/slice-runner.log" 2>&1
  rc=$?
fi
tail -n 12 "$R/slice-runner.log"
if [ "$rc" != 0 ] && [ "$rc" != 124 ] && [ "$rc" != 137 ] && ! ls "$R"/slice/runs/*/*.json >/dev/null 2>&1; then
  echo "the local executor failed to start (exit $rc, no record): $PLAN_WORKERS plain runners instead, $(limit 100000) s"
  fpids=()
  for k in $(seq 1 "$PLAN_WORKERS"); do
    guard "$(limit 100000)" "$PY" -m bench run cifar10-gpu-slice --data-dir "$DATA" --results "$R/slice" "${SET[@]}" \
      > "$R/slice-runner-inline-$k.log" 2>&1 &
    fpids+=($!); sleep 2
  done
  wait "${fpids[@]}"
  echo "plain runners: $(tail -qn 1 "$R"/slice-runner-inline-*.log | tr '\n' ' ')"
fi
done_step "5. slice" "$PLAN_T_SLICE"

step "6. records, tables, claims, figures"
S=$R/slice
timeout 20 "$PY" -m bench collect --results "$S" >/dev/null
timeout 30 "$PY" -m bench table --dataset cifar10 --results "$S" --accuracy final >/dev/null
timeout 40 "$PY" -m bench claims --dataset cifar10 --results "$S" --plots "$S/plots" --format png >/dev/null
timeout 60 "$PY" -m bench report --results "$S" --plots "$S/plots" >/dev/null
timeout 20 "$PY" -m bench run cifar10-gpu-slice --dry-run --verbose --data-dir "$DATA" --results "$S" "${SET[@]}" \
  > "$S/cells.txt" 2>&1
{ echo "# GPU slice ($MODE mode)"; echo; cat "$OUT/device.txt"; echo
  echo "## Cells"; echo; echo '```'; cat "$S/cells.txt"; echo '```'; echo
  echo "## Table (final top-1)"; echo; cat "$S/tables/cifar10.md" 2>/dev/null; echo
  echo "## Claims with pairs (all rows: tables/claims.md in slice.tgz)"; echo
  grep -E '^\| (claim|:?---)|\| (holds|contradicted|inconclusive)' "$S/tables/claims.md" 2>/dev/null; echo
  echo "## Planned and spent seconds"; echo; echo "| step | planned s | spent s |"; echo "|---|---|---|"
  for s in "${SPENT[@]}"; do IFS='|' read -r a b c <<<"$s"; echo "| $a | $b | $c |"; done
  echo "| total (run.sh included) | $PLAN_TOTAL | $(elapsed) |"; } > "$OUT/summary.md"
tar czf "$OUT/slice.tgz" --exclude=cache --exclude=claims/*.claim -C "$R" slice teacher.log \
  $(cd "$R" && ls slice-runner*.log) 2>/dev/null
tar czf "$OUT/smoke.tgz" --exclude=cache --exclude=claims/*.claim -C "$R" smoke smoke-runner-0.log smoke-runner-1.log 2>/dev/null
ls -la "$OUT"
cat "$OUT/summary.md"
echo "== done at +$(elapsed) s of $BUDGET"
