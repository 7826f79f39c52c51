"""Fault injection: kill -9 at many points, several runners on one folder, stale claims, SIGTERM,
and a resumed run that ends bit for bit where an uninterrupted one does (CPU, synthetic data).

Kills come from ``BENCH_FAULT=point:n`` (bench/interrupt.py): the process SIGKILLs itself the n-th
time it reaches ``point``. Every subprocess is a real ``python -m bench run``.
"""
import json
import os
import random
import re
import signal
import subprocess
import sys
import time

import pytest
import torch

from bench.leases import HOST
from bench.store import load_runs, read_run

from conftest import REPO
from tiny import TINY, write_config

FAST = {"checkpoint_every_s": 0, "heartbeat_s": 0.2, "stale_after_s": 3, "device": "cpu", "deterministic": True}
GRID = {"methods": ["dense", "magnitude", "tgp"], "sparsities": [0.5, 0.9], "seeds": [0, 1]}
N_CELLS = 2 + 2 * 2 * 2          # dense per seed + (magnitude, tgp) x 2 sparsities x 2 seeds
pytestmark = pytest.mark.slow          # every test starts several `bench run` processes (20-90 s each)
POINTS = ["step", "checkpoint-write", "checkpoint-saved", "record-write", "lease-acquired", "artifact-write"]


def config(tmp_path, **kw):
    sections = {"runtime": FAST, "grid": GRID,
                "pretrain": {**TINY["pretrain"], "epochs": 3}, "retrain": {**TINY["retrain"], "epochs": 2}, **kw}
    return write_config(tmp_path / "grid.yaml", **sections)


def bench_run(cfg, results, fault=None, wait=True, extra=()):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("BENCH_FAULT", None)
    if fault:
        env["BENCH_FAULT"] = fault
    cmd = [sys.executable, "-m", "bench", "run", str(cfg), "--results", str(results), "--data-dir",
           str(results.parent), *extra]
    if not wait:
        return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)


def checkpoints(results):
    """{path: (epoch, step)} of every epoch checkpoint on disk."""
    out = {}
    for p in (results / "cache" / "epochs").glob("*/*.pt"):
        state = torch.load(p, map_location="cpu", weights_only=True)
        out[str(p)] = (state["epoch"], state["step"])
    return out


def check_no_restart_from_zero(before: dict, log: str):
    """A training call that started from epoch 1 had no checkpoint; one that resumed, resumed where
    the checkpoint said."""
    for path in re.findall(r"starting at epoch 1/\d+ \(epoch checkpoints: (\S+)\)", log):
        assert path not in before, f"restarted from epoch 0 although {path} existed: {before[path]}"
    for epoch, step, path in re.findall(r"resuming at epoch (\d+)/\d+, step (\d+) \((\S+)\)", log):
        assert before.get(path) == (int(epoch) - 1, int(step)), (path, epoch, step, before.get(path))


def test_kill_minus_nine_at_many_points_then_the_grid_completes(tmp_path):
    cfg, results = config(tmp_path), tmp_path / "results"
    rng = random.Random(2026)
    kills, runs, logs = [], 0, []
    while len(kills) < 10 and runs < 30:
        point = rng.choice(POINTS)
        fault = f"{point}:{rng.randint(1, 2 if point != 'step' else 8)}"
        before = checkpoints(results)
        proc = bench_run(cfg, results, fault)
        runs += 1
        logs.append(proc.stdout)
        check_no_restart_from_zero(before, proc.stdout)
        if proc.returncode == -signal.SIGKILL:
            kills.append(fault)
        else:
            assert proc.returncode == 0, proc.stdout[-3000:]
            if len(load_runs(results, status="ok")) == N_CELLS:
                break
    assert len(kills) >= 10, kills
    for _ in range(3):                      # finish whatever is left
        before = checkpoints(results)
        proc = bench_run(cfg, results)
        logs.append(proc.stdout)
        check_no_restart_from_zero(before, proc.stdout)
        assert proc.returncode == 0, proc.stdout[-3000:]
    files = list((results / "runs").glob("*/*.json"))
    recs = [read_run(p) for p in files]      # a torn record would raise here
    assert len(files) == N_CELLS and all(r["status"] == "ok" for r in recs)
    assert len({r["run_id"] for r in recs}) == N_CELLS           # no cell recorded twice
    assert not list((results / "claims").glob("*.claim"))      # every claim released or taken over
    # Some kill fell inside a training run after an epoch checkpoint (the fault sequence is seeded):
    # a later run resumed from it instead of starting over.
    assert any("resuming at epoch" in log for log in logs), kills


def _started(log: str) -> list[str]:
    return re.findall(r"^\[\d+/\d+\] \S+ \S+ sparsity \S+ seed \d+ \(([0-9a-f]{16})\)", log, re.M)


@pytest.mark.parametrize("runners", [2, 3])
def test_concurrent_runners_run_every_cell_once_and_share_artifacts(tmp_path, runners):
    cfg, results = config(tmp_path), tmp_path / "results"
    procs = [bench_run(cfg, results, wait=False) for _ in range(runners)]
    logs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), logs
    started = [rid for log in logs for rid in _started(log)]
    assert len(started) == N_CELLS and len(set(started)) == N_CELLS, started   # each cell run exactly once
    recs = load_runs(results, status="ok")
    assert len(recs) == N_CELLS
    everything = "\n".join(logs)
    assert len(re.findall(r"teacher epoch 1/", everything)) == 1           # one teacher for the grid
    assert len(re.findall(r"pretrain epoch 1/", everything)) == 2          # one dense model per seed
    assert len(re.findall(r"finetune epoch 1/", everything)) == 2          # one guided fine-tune per seed


def test_stale_claims_are_taken_over_and_live_ones_respected(tmp_path):
    cfg = config(tmp_path, grid={"methods": ["dense"], "seeds": [0, 1, 2]},
                 runtime={**FAST, "stale_after_s": 30})        # the live claim must not age out meanwhile
    results = tmp_path / "results"
    dry = subprocess.run([sys.executable, "-m", "bench", "run", str(cfg), "--results", str(results), "--dry-run", "--verbose",
                          "--data-dir", str(tmp_path)], cwd=REPO, capture_output=True, text=True)
    ids = re.findall(r"seed (\d)\s+([0-9a-f]{16})", dry.stdout)
    claims = results / "claims"
    claims.mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (claims / f"{ids[0][1]}.claim").write_text(json.dumps({"host": HOST, "pid": dead.pid, "token": "x"}))
    old = claims / f"{ids[1][1]}.claim"
    old.write_text(json.dumps({"host": "elsewhere", "pid": 1, "token": "y"}))
    os.utime(old, (time.time() - 300, time.time() - 300))
    live = claims / f"{ids[2][1]}.claim"
    live.write_text(json.dumps({"host": HOST, "pid": os.getpid(), "token": "z"}))
    proc = bench_run(cfg, results)
    assert proc.returncode == 0, proc.stdout
    assert proc.stdout.count("taking over from") == 2
    assert f"being run by {HOST} pid {os.getpid()}" in proc.stdout and "1 left to other runners" in proc.stdout
    assert len(load_runs(results)) == 2 and live.exists()


def test_sigterm_mid_epoch_records_interrupted_and_the_rerun_resumes(tmp_path):
    cfg = config(tmp_path, grid={"methods": ["dense"], "seeds": [0]},
                 pretrain={**TINY["pretrain"], "epochs": 40})
    results = tmp_path / "results"
    proc = bench_run(cfg, results, wait=False)
    for line in proc.stdout:
        if "pretrain epoch 2/40" in line:
            proc.send_signal(signal.SIGTERM)
            break
    rest = proc.communicate(timeout=120)[0]
    assert proc.returncode == 128 + signal.SIGTERM, rest
    (rec,) = load_runs(results)
    assert rec["status"] == "interrupted" and "SIGTERM" in rec["error"]
    (ckpt,) = checkpoints(results).values()
    assert ckpt[0] >= 2
    again = bench_run(cfg, results)
    assert again.returncode == 0 and "resuming at epoch" in again.stdout
    (rec,) = load_runs(results)
    assert rec["status"] == "ok" and rec["resumed_from"][0]["phase"] == "pretrain"
    assert rec["previous_interruptions"] and [h["epoch"] for h in rec["history"]] == list(range(1, 41))
    assert not list((results / "cache" / "epochs").glob("*/*.pt"))     # removed once the record is written


def test_sigint_ends_with_interrupted_and_the_command_that_resumes(tmp_path):
    """Ctrl-C: the last line says interrupted and gives the exact command that resumes the grid."""
    cfg = config(tmp_path, grid={"methods": ["dense"], "seeds": [0, 1]}, pretrain={**TINY["pretrain"], "epochs": 40})
    results = tmp_path / "results"
    proc = bench_run(cfg, results, wait=False)
    for line in proc.stdout:
        if "pretrain epoch 2/40" in line:
            proc.send_signal(signal.SIGINT)
            break
    rest = proc.communicate(timeout=120)[0]
    assert proc.returncode == 128 + signal.SIGINT, rest
    lines = rest.strip().splitlines()
    assert lines[-1].startswith("interrupted: ") and lines[-1].endswith(
        f"resume with: python -m bench run {cfg} --results {results} --data-dir {results.parent}"), lines[-3:]
    assert any(re.match(r"grid 'tiny' interrupted after \d+ s: 0 ok", x) for x in lines), lines


def test_killed_and_resumed_ends_bit_for_bit_like_uninterrupted(tmp_path):
    """The run is stopped twice: SIGTERM at an exact step (a mid-epoch checkpoint) and kill -9 after an
    epoch checkpoint. Weights, history and accuracy equal those of an uninterrupted run."""
    grid = {"methods": ["tgp-kd"], "sparsities": [0.9], "seeds": [0]}
    cfg = config(tmp_path, grid=grid, retrain={**TINY["retrain"], "epochs": 3})
    clean, broken = tmp_path / "clean", tmp_path / "broken"
    assert bench_run(cfg, clean).returncode == 0
    first = bench_run(cfg, broken, fault="step:5:term")           # a clean stop at step 5: the teacher's 2nd epoch, step 1
    assert first.returncode == 128 + signal.SIGTERM, first.stdout[-2000:]
    second = bench_run(cfg, broken, fault="checkpoint-saved:3")   # a kill right after an epoch checkpoint
    assert second.returncode == -signal.SIGKILL and "resuming at epoch 2/2, step 1" in second.stdout
    third = bench_run(cfg, broken)
    assert third.returncode == 0 and "resuming at epoch" in third.stdout
    (a,), (b,) = load_runs(clean), load_runs(broken)
    assert b["resumed_from"] and a["final_weights_sha256"] == b["final_weights_sha256"]
    assert a["history"] == b["history"] and a["top1_final"] == b["top1_final"]
