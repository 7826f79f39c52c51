"""The runner: records, skip/resume after a kill, failures, and method sanity on the smoke data."""
import json
import re
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from bench import registry
from bench.cli import main
from bench.config import Config, from_dict
from bench.grid import expand_grid
from bench.context import Artifacts, CorruptCheckpointError, RunContext
from bench.data import load_dataset
from bench.masks import sparsity_stats
from bench.runner import run_grid
from bench.provenance import code_fingerprint
from bench.store import load_runs

from conftest import REPO, quiet, run_ids
from tiny import TINY, write_config

REQUIRED = ["run_id", "status", "dataset", "model", "method", "target_sparsity", "seed", "sparsity_prunable",
            "sparsity_overall", "top1_final", "top1_best", "time_total_s", "time_train_s", "device_name", "config",
            "provenance", "data", "phases", "layer_density", "started_at", "ended_at"]


def core(counts):
    """The ok / failed / skipped counts of a grid (interrupted and elsewhere are zero here)."""
    assert counts["interrupted"] == 0 and counts["elsewhere"] == 0
    return {k: counts[k] for k in ("ok", "failed", "skipped")}


@pytest.mark.slow
def test_grid_records_every_field_and_skips_finished_runs(tmp_path):
    cfg = from_dict(Config, TINY)
    counts = run_grid(cfg, tmp_path, tmp_path / "data", log=quiet)
    assert core(counts) == {"ok": 5, "failed": 0, "skipped": 0}
    runs = load_runs(tmp_path)
    assert len(runs) == 5
    for r in runs:
        assert not [k for k in REQUIRED if k not in r]
        assert r["status"] == "ok" and r["data"]["official"] is False
        for k in ("git_commit", "git_dirty", "python", "torch", "cuda", "gpu_name", "gpu_count", "hostname"):
            assert k in r["provenance"]
        assert r["provenance"]["code_fingerprint"] == code_fingerprint()
        if r["method"] != "dense":        # on the overall target, all of it taken from the conv weights
            assert abs(r["sparsity_overall"] - r["target_sparsity"]) < 1e-4 and r["sparsity_on_target"] is True
            assert r["sparsity_overall"] < r["sparsity_prunable"] and r["sparsity_realised"] == r["sparsity_overall"]
    mtimes = {r["_path"]: os.path.getmtime(r["_path"]) for r in runs}
    assert core(run_grid(cfg, tmp_path, tmp_path / "data", log=quiet)) == {"ok": 0, "failed": 0, "skipped": 5}
    assert {p: os.path.getmtime(p) for p in mtimes} == mtimes


@pytest.mark.slow
def test_killed_grid_resumes_without_redoing_or_duplicating(tmp_path):
    cfg_path = write_config(tmp_path / "tiny.yaml", grid={**TINY["grid"], "sparsities": [0.3, 0.5, 0.7, 0.9]})
    results = tmp_path / "results"
    cmd = [sys.executable, "-m", "bench", "run", str(cfg_path), "--results", str(results), "--data-dir", str(tmp_path)]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(results.glob("runs/*/*.json"))) < 3:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = {p: p.read_bytes() for p in results.glob("runs/*/*.json")}
    assert 3 <= len(before) < 9, "the kill should land mid-grid"
    assert subprocess.run(cmd, cwd=REPO, capture_output=True).returncode == 0
    after = {p: p.read_bytes() for p in results.glob("runs/*/*.json")}
    assert len(after) == 9  # 1 dense + 2 methods x 4 sparsities, each exactly once
    assert all(after[p] == b for p, b in before.items())  # finished runs untouched
    ids = [json.loads(b)["run_id"] for b in after.values()]
    assert len(set(ids)) == len(ids)
    dry = subprocess.run(cmd + ["--dry-run"], cwd=REPO, capture_output=True, text=True)
    assert "9 runs on cpu: 9 done, 0 failed, 0 interrupted, 0 pending" in dry.stdout


def test_failed_run_is_recorded_and_the_grid_goes_on(tmp_path):
    grid = {"methods": ["dense", {"name": "magnitude", "label": "exploding", "set": {"retrain.lr": 1.0e12}},
                        "random"], "sparsities": [0.5], "seeds": [0]}
    cfg = from_dict(Config, {**TINY, "grid": grid})
    counts = run_grid(cfg, tmp_path, tmp_path, log=quiet)
    assert core(counts) == {"ok": 2, "failed": 1, "skipped": 0}
    failed = load_runs(tmp_path, status="failed")
    assert len(failed) == 1 and failed[0]["method"] == "exploding"
    assert "NonFiniteLossError" in failed[0]["error"] and failed[0]["traceback"]
    assert failed[0]["sparsity_measure"] == cfg.prune.measure       # a failed cell is on its grid's measure
    # A rerun retries only the failed run, and keeps the earlier failure on record.
    assert core(run_grid(cfg, tmp_path, tmp_path, log=quiet)) == {"ok": 0, "failed": 1, "skipped": 2}
    again = load_runs(tmp_path, status="failed")[0]
    assert len(again["previous_failures"]) == 1 and "NonFiniteLossError" in again["previous_failures"][0]["error"]


@pytest.mark.slow
def test_cli_reports_bad_config_and_missing_dataset(tmp_path, capsys):
    assert main(["run", "smoke", "--set", "prune.sparsity=1.5", "--results", str(tmp_path)]) == 2
    assert "'prune.sparsity' has value 1.5" in capsys.readouterr().err
    # --allow-cpu: cifar10-fast is over the CPU-hours limit here, which would be refused before the data check.
    assert main(["run", "cifar10-fast", "--results", str(tmp_path), "--data-dir", str(tmp_path / "nowhere"),
                 "--allow-cpu"]) == 2
    err = capsys.readouterr().err
    assert "nowhere" in err and "--download" in err
    assert not list(tmp_path.glob("runs/*/*.json"))  # nothing recorded for a set-up error


def test_corrupt_cached_checkpoint_is_an_error_not_a_retrain(tmp_path):
    cfg = from_dict(Config, {**TINY, "grid": {"methods": ["magnitude"], "sparsities": [0.5], "seeds": [0]}})
    run_grid(cfg, tmp_path, tmp_path, log=quiet)
    (pt,) = (tmp_path / "cache" / "dense").glob("*.pt")
    pt.write_bytes(pt.read_bytes()[:-10] + b"corrupted!")
    spec = expand_grid(from_dict(Config, {**TINY, "grid": {"methods": ["random"], "sparsities": [0.5], "seeds": [0]}}))[0]
    data = load_dataset(spec.config.dataset, tmp_path, "cpu")
    ctx = RunContext(spec.config, data, torch.device("cpu"), Artifacts(tmp_path / "cache"), quiet)
    with pytest.raises(CorruptCheckpointError, match="sha256.*delete"):
        ctx.dense_model()


@pytest.mark.slow
def test_magnitude_beats_random_at_high_sparsity(tmp_path):
    """On the smoke data (seed fixed), magnitude pruning keeps far more accuracy than random."""
    cfg = from_dict(Config, {**TINY, "grid": {"methods": ["magnitude", "random"], "sparsities": [0.95], "seeds": [0]},
                             "dataset": {**TINY["dataset"], "synthetic": {"num_classes": 4, "image_size": 8,
                                                                           "train_size": 512, "test_size": 256}},
                             "pretrain": {**TINY["pretrain"], "epochs": 6},
                             "retrain": {**TINY["retrain"], "epochs": 2}})
    run_grid(cfg, tmp_path, tmp_path, log=quiet)
    acc = {r["method"]: r["top1_final"] for r in load_runs(tmp_path)}
    assert acc["magnitude"] > acc["random"] + 10, acc


@pytest.mark.slow
def test_tgp_end_to_end_prunes_exactly_and_never_revives(tmp_path):
    """The proposed method on the synthetic dataset at a high sparsity."""
    for name in ("tgp", "tgp-kd"):
        spec = expand_grid(from_dict(Config, {**TINY, "grid": {"methods": [name], "sparsities": [0.95], "seeds": [0]}}))[0]
        data = load_dataset(spec.config.dataset, tmp_path, "cpu")
        ctx = RunContext(spec.config, data, torch.device("cpu"), Artifacts(tmp_path / "cache"), quiet)
        out = registry.get(name).run(ctx)
        pruned = [m == 0 for m in out.masks.masks]
        stats = sparsity_stats(out.model)
        assert sum(int(z.sum()) for z in pruned) == round(0.95 * stats["overall_weights"])    # exactly, overall
        assert all(torch.count_nonzero(p[z]) == 0 for p, z in zip(out.masks.params, pruned))
        assert abs(stats["sparsity_overall"] - 0.95) < 1e-5
        assert ctx.teacher_info["sha256"] and ctx.teacher_info["top1"] > 0
        assert 0 < ctx.extra["kd_gamma"] <= 1
    # The scoring stage is shared: the second variant reused the cached fine-tuned student.
    assert len(list((tmp_path / "cache" / "tgp-finetune").glob("*.pt"))) == 1


def test_random_scores_do_not_replay_the_weight_initialisation(tmp_path, monkeypatch):
    """Regression: a score generator seeded with the run seed replays the draws the initial weights
    were made from, so 'random' pruning removed the most negative initial weights."""
    spec = expand_grid(from_dict(Config, {**TINY, "grid": {"methods": ["random"], "sparsities": [0.5], "seeds": [0]}}))[0]
    data = load_dataset(spec.config.dataset, tmp_path, "cpu")
    ctx = RunContext(spec.config, data, torch.device("cpu"), Artifacts(tmp_path / "cache"), quiet)
    init = ctx.build()  # the dense model starts from exactly this initialisation
    captured = {}
    monkeypatch.setattr(ctx, "dense_model", lambda: (init, None))
    monkeypatch.setattr(ctx, "prune_and_retrain", lambda model, scores, objective=None: captured.update(s=scores))
    registry.get("random").run(ctx)
    w = torch.cat([p.detach().flatten() for p in ctx.masks(init).params])
    s = torch.cat([x.flatten() for x in captured["s"]])
    assert abs(float(torch.corrcoef(torch.stack([w, s]))[0, 1])) < 0.02


def test_teacher_command_trains_once_then_reports(tmp_path, capsys):
    cfg_path = write_config(tmp_path / "tiny.yaml")
    args = ["teacher", str(cfg_path), "--results", str(tmp_path), "--data-dir", str(tmp_path)]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert "teacher resnet_small top1" in first and "sha256" in first and "teacher epoch" in first
    assert main(args) == 0
    second = capsys.readouterr().out
    assert "reused teachers checkpoint" in second and "teacher epoch" not in second
    (meta,) = (tmp_path / "cache" / "teachers").glob("*.json")
    assert json.loads(meta.read_text())["sha256"][:16] in second


def test_corrupt_result_file_is_moved_aside_never_overwritten(tmp_path, capsys):
    cfg_path = write_config(tmp_path / "tiny.yaml", grid={"methods": ["dense"], "seeds": [0]})
    args = ["run", str(cfg_path), "--results", str(tmp_path), "--data-dir", str(tmp_path)]
    assert main(args) == 0
    (rec,) = tmp_path.glob("runs/*/*.json")
    rec.write_text('{"status": "ok", "trunc')
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "Unterminated string" in err and f"moved the corrupt record {rec}" in err
    (kept,) = (tmp_path / "quarantine").iterdir()
    assert kept.read_text() == '{"status": "ok", "trunc' and '"status": "ok"' in rec.read_text()


@pytest.mark.slow
def test_gpu_code_paths_bf16_autocast_and_channels_last_run_on_cpu(tmp_path):
    """The settings a GPU turns on by default (bf16 autocast, channels_last), forced on the CPU:
    masks on channels_last weights stay exact and the distillation objective runs under autocast."""
    cfg = from_dict(Config, {**TINY, "runtime": {"device": "cpu", "amp": "bf16", "channels_last": "on"},
                             "grid": {"methods": ["tgp-kd"], "sparsities": [0.9], "seeds": [0]}})
    assert core(run_grid(cfg, tmp_path, tmp_path, log=quiet)) == {"ok": 1, "failed": 0, "skipped": 0}
    (rec,) = load_runs(tmp_path)
    assert abs(rec["sparsity_overall"] - 0.9) < 1e-4 and rec["top1_final"] > 0


def test_nan_loss_is_caught_within_a_few_steps_with_step_and_lr(tmp_path):
    data = {**TINY, "runtime": {"device": "cpu", "nonfinite_check_steps": 2},
            "grid": {"methods": [{"name": "magnitude", "label": "exploding", "set": {"retrain.lr": 1.0e12}}],
                     "sparsities": [0.5], "seeds": [0]}}
    run_grid(from_dict(Config, data), tmp_path, tmp_path, log=quiet)
    (rec,) = load_runs(tmp_path, status="failed")
    m = re.search(r"NaN or infinite at step (\d+) \(epoch 1, lr 1e\+12\)", rec["error"])
    assert m and int(m.group(1)) <= 4, rec["error"]       # found within the check interval, not at epoch end
    assert "retrain:" in rec["error"]


def test_status_lists_done_failed_running_and_pending_cells(tmp_path, capsys):
    cfg_path = write_config(tmp_path / "tiny.yaml",
                            grid={"methods": ["dense", {"name": "magnitude", "label": "exploding",
                                                        "set": {"retrain.lr": 1.0e12}}, "random"],
                                  "sparsities": [0.5], "seeds": [0]})
    base = ["--results", str(tmp_path / "r")]
    assert main(["run", str(cfg_path), *base, "--data-dir", str(tmp_path), "--set", "grid.methods=[dense, "
                 "{name: magnitude, label: exploding, set: {retrain.lr: 1.0e12}}]"]) == 1
    capsys.readouterr()
    # A live claim on the pending random cell, as another runner would hold it.
    rid = run_ids(cfg_path)["random"]
    claims = tmp_path / "r" / "claims"
    claims.mkdir(exist_ok=True)
    (claims / f"{rid}.claim").write_text(json.dumps({"host": "gpu-node-7", "pid": 4242, "job_id": "991",
                                                      "started_at": "2026-11-26T10:00:00+00:00",
                                                      "progress": {"phase": "retrain", "epoch": 3, "epochs": 9}}))
    assert main(["status", str(cfg_path), *base]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "1 running, 1 failed, 1 done"
    assert re.search(r"running .*random .*gpu-node-7 pid 4242 job 991 since 2026-11-26T10:00:00\+00:00, "
                     r"retrain epoch 3/9", out)
    assert re.search(r"failed .*exploding .*NonFiniteLossError", out)
    assert re.search(r"done .*dense .*top1 \d+\.\d\d% on cpu", out)
    assert main(["status", *base]) == 0                    # without a config: what is stored
    assert "1 running, 1 failed, 1 done" in capsys.readouterr().out
