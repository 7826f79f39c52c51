# guard LIMIT CMD...: run CMD under a time limit in its own process group, for scripts/gpu-paper-slice.sh
# (sourced). `timeout` puts itself and everything CMD starts into a new process group and, at LIMIT,
# sends SIGTERM to the whole group: an inline runner, and the local executor's submitit controllers
# (which forward SIGTERM to their workers) and workers; each stops at its next training step, writes
# its epoch checkpoint and records the cell `interrupted`. The workers outlive their parent (which
# SIGTERM ends at once), so guard then waits for the group to empty, GUARD_DRAIN_S (30) seconds at
# most, and SIGKILLs what is left. Returns CMD's exit code (124 when the limit was reached).
# Not SIGINT: submitit's controller turns it into a KeyboardInterrupt and SIGKILLs its workers about a
# second later (submitit/local/local.py, Controller.kill_tasks), often before they record the cell.
guard() {
  local lim=$1; shift
  timeout -s TERM -k 30 "$lim" "$@" &
  local pid=$! rc n=0
  wait "$pid"; rc=$?
  [ "$rc" = 124 ] && echo "  time limit ($lim s) reached: stopped; a cell in progress is recorded interrupted"
  [ "$rc" = 137 ] && echo "  still running 30 s after the time limit ($lim s): killed (records written before stay)"
  while kill -0 -- "-$pid" 2>/dev/null && [ "$n" -lt "${GUARD_DRAIN_S:-30}" ]; do sleep 1; n=$((n + 1)); done
  if kill -0 -- "-$pid" 2>/dev/null; then
    echo "  still running ${GUARD_DRAIN_S:-30} s after the limit: killed"; kill -KILL -- "-$pid" 2>/dev/null
  fi
  return "$rc"
}
