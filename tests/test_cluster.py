"""Executors on the CPU: submitit's local executor (real worker processes) and its debug executor
(workers in this process) run a tiny grid to the same records as an inline run; a worker killed
mid-run, or preempted (USR2), loses nothing and runs nothing twice. SLURM: tests/test_slurm.py."""
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench import registry
from bench.config import ConfigError, load_config
from bench.grid import expand_grid
from bench.leases import read_lease
from bench.report.aggregate import grid_totals
from bench.store import load_runs

from conftest import REPO
from tiny import TINY, write_config

submitit = pytest.importorskip("submitit", reason="the local and slurm executors need submitit (pip install submitit)")

RUNTIME = {"device": "cpu", "deterministic": True, "checkpoint_every_s": 0, "heartbeat_s": 0.2, "stale_after_s": 3}
GRID = {"methods": ["dense", "magnitude", "tgp"], "sparsities": [0.5, 0.9], "seeds": [0]}
N_CELLS = 1 + 2 * 2


def config(tmp_path, **kw):
    return write_config(tmp_path / "grid.yaml", **{"runtime": RUNTIME, "grid": GRID, **kw})


def bench(cfg, results, *extra, wait=True, env=None):
    # One thread in every process: CPU results are bit-exact only at equal thread counts.
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", **(env or {})}
    env.pop("BENCH_FAULT", None)
    cmd = [sys.executable, "-m", "bench", "run", str(cfg), "--results", str(results), "--data-dir",
           str(Path(results).parent), *extra]
    if not wait:
        return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def by_id(results):
    return {r["run_id"]: r for r in load_runs(results)}


def attempts(results):
    """{run_id: [attempt text, ...]} from the per-cell logs."""
    out = {}
    for p in (Path(results) / "logs").glob("*.log"):
        out[p.stem] = [a for a in re.split(r"^=== attempt ", p.read_text(), flags=re.M) if a.strip()]
    return out


@pytest.fixture(scope="module")
def inline_and_local(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("grid")
    cfg = config(tmp)
    inline = bench(cfg, tmp / "inline")
    local = bench(cfg, tmp / "local", "--executor", "local", "--workers", "2")
    return cfg, tmp, inline, local


@pytest.mark.slow
def test_local_workers_make_the_records_of_an_inline_run(inline_and_local):
    cfg, tmp, inline, local = inline_and_local
    assert inline.returncode == 0, inline.stdout[-3000:]
    assert local.returncode == 0, local.stdout[-3000:] + local.stderr[-3000:]
    assert "local executor: 2 CPU worker(s), 1 thread(s) each" in local.stdout
    assert len(re.findall(r"^worker \d \(job \d+\) on \S+: \d ok", local.stdout, re.M)) == 2
    assert f"{N_CELLS} done, 0 failed" in local.stdout
    a, b = by_id(tmp / "inline"), by_id(tmp / "local")
    assert len(a) == N_CELLS and a.keys() == b.keys()
    for rid in a:
        assert b[rid]["status"] == "ok"
        for key in ("top1_final", "top1_best", "final_weights_sha256", "history"):
            assert a[rid][key] == b[rid][key], (rid, key)
    jobs = {r["provenance"]["job_id"] for r in b.values()}
    assert len(jobs) == 2 and all(j.startswith("local-") for j in jobs)        # both workers ran cells
    assert {r["provenance"]["job_id"] for r in a.values()} == {None}
    # Every cell ran once, in one attempt, and each shared artifact was made once.
    assert all(len(v) == 1 for v in attempts(tmp / "local").values()) and len(attempts(tmp / "local")) == N_CELLS
    logs = "\n".join(p.read_text() for p in (tmp / "local" / "submitit").glob("*_log.out"))
    assert len(re.findall(r"teacher epoch 1/", logs)) == 1 and len(re.findall(r"pretrain epoch 1/", logs)) == 1
    submission = json.loads(next((tmp / "local" / "jobs").glob("*.json")).read_text())
    assert submission["executor"] == "local" and len(submission["jobs"]) == 2


@pytest.mark.slow
def test_grid_total_counts_each_shared_artifact_once(inline_and_local):
    cfg, tmp, *_ = inline_and_local
    runs = load_runs(tmp / "local")
    (total,) = grid_totals(runs)
    made = list((tmp / "local" / "cache").glob("*/*.json"))       # the dense model, the teacher, the tgp fine-tune
    assert total.artifacts == len(made) and total.shared >= 2 and total.runs == N_CELLS
    counted = {}
    for r in runs:
        for a in r["artifacts"]:
            for ph in a["phases"]:
                counted.setdefault((a["key"], ph), r["phases"][ph]["seconds"])
    own = sum(p["seconds"] for r in runs for name, p in r["phases"].items()
              if p["group"] != "eval" and not any(name in a["phases"] for a in r["artifacts"]))
    assert total.minutes == pytest.approx((own + sum(counted.values())) / 60)
    assert total.per_run_sum > total.minutes


@pytest.mark.slow
def test_status_shows_the_workers_and_their_states(inline_and_local):
    cfg, tmp, *_ = inline_and_local
    out = subprocess.run([sys.executable, "-m", "bench", "status", str(cfg), "--results", str(tmp / "local")],
                         cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert f"{N_CELLS} done" in out.stdout and ", job local-" in out.stdout
    assert re.search(r"jobs \(local, submitted \S+\): 2 ENDED: local-\d+ ENDED, local-\d+ ENDED", out.stdout)


@pytest.mark.slow
def test_debug_executor_runs_the_workers_in_this_process(tmp_path):
    from bench.cluster import run_with_workers

    cfg = load_config(config(tmp_path, grid={"methods": ["dense", "magnitude"], "sparsities": [0.5], "seeds": [0]}))
    lines = []
    code = run_with_workers(cfg, tmp_path / "r", tmp_path, executor="debug", workers=2, log=lines.append, poll_s=0)
    text = "\n".join(lines)
    assert code == 0, text
    assert re.search(r"worker 0 \(job DEBUG_\d+\) on \S+: 2 ok, 0 failed, 0 skipped", text)
    assert re.search(r"worker 1 \(job DEBUG_\d+\) on \S+: 0 ok, 0 failed, 2 skipped", text)   # found both done
    assert len(load_runs(tmp_path / "r", status="ok")) == 2


def _claims(results):
    return [c for c in (read_lease(p) for p in (Path(results) / "claims").glob("*.claim")) if c and c.get("pid")]


def _wait_for_training(results, proc, epoch=2, timeout=120):
    """A live claim whose holder has reached ``epoch`` of some training phase."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        assert proc.poll() is None, proc.stdout.read()
        for c in _claims(results):
            if (c.get("progress") or {}).get("epoch", 0) >= epoch:
                return c
        time.sleep(0.05)
    raise AssertionError("no worker reached a training epoch")


@pytest.mark.slow
def test_a_killed_worker_loses_nothing_and_a_rerun_runs_nothing_twice(tmp_path):
    cfg = config(tmp_path, pretrain={**TINY["pretrain"], "epochs": 8})
    results = tmp_path / "r"
    proc = bench(cfg, results, "--executor", "local", "--workers", "2", wait=False)
    victim = _wait_for_training(results, proc, epoch=3)
    os.kill(victim["pid"], signal.SIGKILL)
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode == 1, out
    assert re.search(r"worker \d \(job \d+\) ended without a result", out)
    assert re.search(r"1 worker\(s\) crashed", out)
    # The other worker takes over the dead one's claim and lock (same host, dead pid) when it gets
    # to them; whatever it did not get to is left for the rerun.
    done_first = {rid for rid, r in by_id(results).items() if r["status"] == "ok"}
    tries_first = attempts(results)
    again = bench(cfg, results, "--executor", "local", "--workers", "2")
    assert again.returncode == 0, again.stdout[-3000:]
    recs = by_id(results)
    assert len(recs) == N_CELLS and all(r["status"] == "ok" for r in recs.values())
    tries = attempts(results)
    for rid in done_first:                                   # finished cells were not run again
        assert len(tries[rid]) == len(tries_first[rid]), rid
    assert all(sum(bool(re.search(r"^  ok in \d+ s: top1", a, re.M)) for a in tries[rid]) == 1 for rid in tries)   # each cell finished once
    assert sum(map(len, tries.values())) == N_CELLS + 1      # one attempt was cut short: the victim's
    # The killed worker's training resumed from its epoch checkpoint instead of starting over.
    logs = "\n".join(p.read_text() for p in (results / "submitit").glob("*_log.out"))
    assert re.search(r"pretrain: resuming at epoch ([2-9]|\d\d)/8", logs), logs[-3000:]


@pytest.mark.slow
def test_preemption_signal_checkpoints_requeues_and_resumes(tmp_path):
    """USR2 (what SLURM sends before the time limit or on preemption): the worker stops at the next
    step, writes its epoch checkpoint and an interrupted record, and requeues itself; the requeued
    worker resumes the cell and the grid completes within the same command."""
    cfg = config(tmp_path, grid={"methods": ["dense"], "seeds": [0]}, pretrain={**TINY["pretrain"], "epochs": 6})
    results = tmp_path / "r"
    proc = bench(cfg, results, "--executor", "local", "--workers", "1", wait=False)
    victim = _wait_for_training(results, proc, epoch=2)
    os.kill(victim["pid"], signal.SIGUSR2)
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0, out
    (rec,) = load_runs(results)
    assert rec["status"] == "ok" and rec["previous_interruptions"] and "SIGUSR2" in rec["previous_interruptions"][0]["error"]
    assert [h["epoch"] for h in rec["history"]] == list(range(1, 7))
    logs = "\n".join(p.read_text() for p in (results / "submitit").glob("*_log.*"))
    assert "requeueing" in logs and re.search(r"pretrain: resuming at epoch \d+/6", logs)
    (tries,) = attempts(results).values()
    assert len(tries) == 2 and "INTERRUPTED" in tries[0]


@pytest.mark.slow
def test_cli_errors_are_one_line(tmp_path):
    cfg = config(tmp_path)
    no_workers = bench(cfg, tmp_path / "r", "--executor", "local")
    assert no_workers.returncode == 2 and "needs --workers N" in no_workers.stderr
    stray = bench(cfg, tmp_path / "r", "--workers", "2")
    assert stray.returncode == 2 and "--workers and --no-wait go with --executor" in stray.stderr


def test_slurm_section_is_validated_and_never_part_of_a_run_id(tmp_path):
    cfg = config(tmp_path)
    base = [s.run_id for s in expand_grid(load_config(cfg), "cuda")]
    moved = load_config(cfg, ["slurm.partition=gpu", "slurm.time_min=30", "slurm.gpus_per_job=0",
                              "slurm.sbatch={account: abc}", "slurm.setup=['module load cuda']"])
    assert [s.run_id for s in expand_grid(moved, "cuda")] == base
    assert moved.slurm.sbatch == {"account": "abc"}
    with pytest.raises(ConfigError, match="slurm.signal_delay_s"):
        load_config(cfg, ["slurm.time_min=1", "slurm.signal_delay_s=90"])
    with pytest.raises(ConfigError, match="slurm.gpus_per_job.*a cell trains on one device"):
        load_config(cfg, ["slurm.gpus_per_job=2"])


def test_queued_reads_squeue_ids(monkeypatch):
    from bench import cluster
    listed = {"12": "12|RUNNING\n", "13": "13_0|PENDING\n13_2|RUNNING\n", "14": "", "15": None}
    monkeypatch.setattr(cluster, "_run", lambda cmd, **kw: listed[cmd[cmd.index("-j") + 1]])
    assert cluster._queued(["12_0"]) == {"12_0": "RUNNING"}              # a one-task array shows its base id
    assert cluster._queued(["13_1", "13_2"]) == {"13_2": "RUNNING"}
    assert cluster._queued(["14"]) == {} and cluster._queued(["15"]) is None


def test_job_states_prefer_squeue_while_queued_and_sacct_once_ended(monkeypatch):
    """sacct lags behind the controller: a job running for a while can still read PENDING there."""
    from bench import cluster
    answers = {"squeue": "21|RUNNING\n", "sacct": "21|PENDING\n22|CANCELLED by 0\n"}
    monkeypatch.setattr(cluster, "_run", lambda cmd, **kw: answers[cmd[0]])
    assert cluster.job_states(["21", "22", "23"]) == {"21": "RUNNING", "22": "CANCELLED", "23": "unknown"}
    answers["sacct"] = None                                              # no accounting
    assert cluster.job_states(["21", "22"]) == {"21": "RUNNING", "22": "not in queue (ended)"}
    answers["squeue"] = None                                             # no controller answers
    assert cluster.job_states(["21"]) == {"21": "unknown"}


def test_run_reads_a_named_failure_as_an_empty_answer(tmp_path, monkeypatch):
    from bench import cluster
    tool = tmp_path / "squeue"
    tool.write_text("#!/bin/sh\necho 'slurm_load_jobs error: Invalid job id specified' >&2\nexit 1\n")
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    assert cluster._run(["squeue", "-j", "9"], empty_if="Invalid job id") == ""
    assert cluster._run(["squeue", "-j", "9"]) is None
    assert cluster._run(["squeue", "-j", "9"], empty_if="Unable to contact") is None
