"""`--executor slurm` against a real single-node SLURM cluster (tests/slurm_cluster.py: slurmctld,
slurmd, slurmdbd on a private MariaDB, started here and stopped by pid). Deselected by default
(marker ``slurm``): run with ``make test-slurm`` (about 2-3 minutes, the cluster's start included).
Skipped, with the reason, where the packages cannot be installed or the daemons cannot start."""
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench import registry
from bench.config import load_config
from bench.grid import expand_grid
from bench.leases import read_lease
from bench.store import load_runs

from slurm_cluster import Cluster, Unavailable, install
from conftest import REPO
from tiny import TINY, write_config

pytestmark = pytest.mark.slurm

RUNTIME = {"device": "cpu", "deterministic": True, "checkpoint_every_s": 0, "heartbeat_s": 0.2, "stale_after_s": 5}
# CPU jobs of one CPU each: two run at once on a 2-core machine; one thread each, like the inline run.
SLURM = {"gpus_per_job": 0, "cpus_per_job": 1, "time_min": 30, "signal_delay_s": 60}
GRID = {"methods": ["dense", "magnitude", "tgp"], "sparsities": [0.5, 0.9], "seeds": [0]}


@pytest.fixture(scope="session")
def slurm(tmp_path_factory):
    pytest.importorskip("submitit", reason="--executor slurm needs submitit")
    cluster = None
    try:
        install()
        cluster = Cluster(tmp_path_factory.mktemp("slurm")).start()
    except Unavailable as e:
        pytest.skip(f"no SLURM test cluster: {e}")
    old = os.environ.get("SLURM_CONF")
    os.environ.update(cluster.env)
    yield cluster
    cluster.stop()
    if old is None:
        os.environ.pop("SLURM_CONF", None)
    else:
        os.environ["SLURM_CONF"] = old


def config(tmp_path, **kw):
    return write_config(tmp_path / "grid.yaml", **{"runtime": RUNTIME, "slurm": SLURM, "grid": GRID, **kw})


def bench(*args, wait=True):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "bench", *map(str, args)]
    if not wait:
        return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def run(cfg, results, *extra, wait=True):
    return bench("run", cfg, "--results", results, "--data-dir", Path(results).parent, *extra, wait=wait)


def wait_for_training(results, proc, epoch=2, timeout=180):
    t0 = time.time()
    while time.time() - t0 < timeout:
        assert proc.poll() is None, proc.stdout.read()
        for p in (Path(results) / "claims").glob("*.claim"):
            c = read_lease(p) or {}
            if c.get("job_id") and (c.get("progress") or {}).get("epoch", 0) >= epoch:
                return c
        time.sleep(0.1)
    raise AssertionError("no job reached a training epoch")


def cell_logs(results) -> dict[str, str]:
    return {p.stem: p.read_text() for p in (Path(results) / "logs").glob("*.log")}


def test_a_grid_through_slurm_makes_the_records_of_an_inline_run(slurm, tmp_path):
    cfg = config(tmp_path)
    inline = run(cfg, tmp_path / "inline")
    assert inline.returncode == 0, inline.stdout[-2000:]
    out = run(cfg, tmp_path / "slurm", "--executor", "slurm", "--workers", "2")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert re.search(r"slurm: submitted 2 worker\(s\) as job array \d+ \(0 GPU\(s\), 1 CPU\(s\), 30 min each\)", out.stdout)
    assert "5 done, 0 failed" in out.stdout
    a = {r["run_id"]: r for r in load_runs(tmp_path / "inline")}
    b = {r["run_id"]: r for r in load_runs(tmp_path / "slurm")}
    assert len(a) == 5 and a.keys() == b.keys()
    for rid in a:
        assert b[rid]["status"] == "ok"
        assert (a[rid]["top1_final"], a[rid]["final_weights_sha256"]) == (b[rid]["top1_final"], b[rid]["final_weights_sha256"])
    jobs = {r["provenance"]["job_id"] for r in b.values()}
    assert all(re.fullmatch(r"\d+_[01]", j) for j in jobs), jobs          # array tasks
    status = bench("status", cfg, "--results", tmp_path / "slurm")
    assert re.search(r"jobs \(slurm, submitted \S+\): 2 COMPLETED: \d+_0 COMPLETED, \d+_1 COMPLETED", status.stdout), \
        status.stdout


def test_a_job_cancelled_mid_run_is_resumed_by_a_rerun(slurm, tmp_path):
    # 150 epochs: long enough that `bench status` (seconds on a loaded machine) sees the job running.
    cfg = config(tmp_path, grid={"methods": ["dense"], "seeds": [0]}, pretrain={**TINY["pretrain"], "epochs": 150})
    results = tmp_path / "r"
    proc = run(cfg, results, "--executor", "slurm", "--workers", "1", wait=False)
    claim = wait_for_training(results, proc)
    status = bench("status", cfg, "--results", results)
    assert f"job {claim['job_id']} (RUNNING)" in status.stdout, status.stdout
    subprocess.run(["scancel", claim["job_id"]], check=True)
    out = proc.communicate(timeout=180)[0]
    # The job stops at the next step (SIGTERM), records the cell as interrupted and ends.
    assert proc.returncode == 1 and re.search(r"stopped by signal 15|ended without a result", out), out
    assert "0 done, 0 failed, 1 interrupted" in out
    (rec,) = load_runs(results)
    assert rec["status"] == "interrupted" and "SIGTERM" in rec["error"]          # stopped at a safe point
    again = run(cfg, results, "--executor", "slurm", "--workers", "1")
    assert again.returncode == 0, again.stdout[-3000:]
    (rec,) = load_runs(results)
    assert rec["status"] == "ok" and rec["previous_interruptions"][0]["job_id"] == claim["job_id"]
    assert rec["resumed_from"] and rec["resumed_from"][0]["epoch"] >= 1
    assert [h["epoch"] for h in rec["history"]] == list(range(1, 151))
    (log,) = cell_logs(results).values()
    assert log.count("=== attempt") == 2 and re.search(r"pretrain: resuming at epoch ([2-9]|[1-9]\d|1[0-4]\d)/150", log)


def test_the_warning_signal_checkpoints_and_requeues_the_job(slurm, tmp_path):
    """USR2 is what SLURM sends ``signal_delay_s`` before the time limit (submitit's --signal):
    the job checkpoints at the next step, requeues itself, and the requeued job resumes."""
    # 60 epochs: the signal reaches the job a few epochs after it is sent (about 3 on this machine);
    # with 20, a fast run could end before it, and nothing is requeued.
    epochs = 60
    cfg = config(tmp_path, grid={"methods": ["dense"], "seeds": [0]}, pretrain={**TINY["pretrain"], "epochs": epochs})
    results = tmp_path / "r"
    proc = run(cfg, results, "--executor", "slurm", "--workers", "1", wait=False)
    claim = wait_for_training(results, proc)
    subprocess.run(["scancel", "--signal=USR2", claim["job_id"]], check=True)
    # SLURM holds a requeued job for about two minutes (squeue reason BeginTime); let it start sooner.
    # Not at once: slurmd refuses to launch a job in the same second as it killed the job's previous
    # run ("Job 5 already killed, do not launch batch job"; the new run then fails without a result).
    t0 = time.time()
    while time.time() - t0 < 60:
        reason = subprocess.run(["squeue", "-h", "-j", claim["job_id"], "-o", "%r"], capture_output=True,
                                text=True).stdout.strip()
        if reason == "BeginTime":
            time.sleep(2)
            subprocess.run(["scontrol", "update", f"JobId={claim['job_id']}", "StartTime=now"], check=True)
            break
        time.sleep(0.2)
    else:
        state = subprocess.run(["sacct", "-X", "-P", "-j", claim["job_id"], "-o", "JobID,State"], capture_output=True,
                               text=True).stdout
        raise AssertionError(f"the job was not requeued within 60 s; sacct: {state!r}; cell log:\n"
                             + "\n".join(cell_logs(results).values())[-3000:])
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0, out
    (rec,) = load_runs(results)
    assert rec["status"] == "ok" and "SIGUSR2" in rec["previous_interruptions"][0]["error"]
    assert [h["epoch"] for h in rec["history"]] == list(range(1, epochs + 1))
    logs = "\n".join(p.read_text() for p in (results / "submitit").glob("*_log.*"))
    assert "requeueing" in logs and f"Requeued job {claim['job_id']}" in logs
    resumed = re.search(r"pretrain: resuming at epoch (\d+)/60", logs)
    assert resumed and 2 <= int(resumed.group(1)) < epochs, logs[-3000:]


def test_a_failing_cell_and_a_crashing_job_leave_their_tracebacks(slurm, tmp_path):
    grid = {"methods": [{"name": "dense", "label": "diverges", "set": {"pretrain.lr": 1.0e12}}, "magnitude"],
            "sparsities": [0.5], "seeds": [0]}
    cfg = config(tmp_path, grid=grid, runtime={**RUNTIME, "nonfinite_check_steps": 1})
    results = tmp_path / "r"
    diverges, magnitude = expand_grid(load_config(cfg), "cpu")
    damaged = results / "cache" / "epochs" / f"run-{magnitude.run_id}" / "retrain.pt"
    damaged.parent.mkdir(parents=True)
    damaged.write_bytes(b"not a checkpoint")
    out = run(cfg, results, "--executor", "slurm", "--workers", "1")
    assert out.returncode == 1, out.stdout
    # The cell that raised is recorded as failed, its traceback in the record and in its log.
    (rec,) = load_runs(results, status="failed")
    assert rec["method"] == "diverges" and "NonFiniteLossError" in rec["traceback"]
    logs = cell_logs(results)
    assert "Traceback (most recent call last)" in logs[diverges.run_id] and "NonFiniteLossError" in logs[diverges.run_id]
    # A damaged cache file stops the worker: the job fails with the traceback in its log.
    assert re.search(r"worker 0 \(job \d+\) CRASHED: .*CorruptEpochCheckpointError: epoch checkpoint", out.stdout), \
        out.stdout
    assert "the runner stopped during this attempt" in logs[magnitude.run_id]
    assert "CorruptEpochCheckpointError" in logs[magnitude.run_id]
    err = "\n".join(p.read_text() for p in (results / "submitit").glob("*_log.err"))
    assert "Traceback" in err and "CorruptEpochCheckpointError" in err
