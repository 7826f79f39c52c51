"""Execute a grid: skip finished runs, retry failed ones, record every outcome atomically.

A run's record is written only when the run ends (ok or failed), with an atomic rename, so killing
the process loses at most the run in progress and never leaves a half-written file.
"""
from __future__ import annotations

import datetime as dt
import functools
import json
import os
import platform
import socket
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Callable

import torch

from . import methods
from .config import Config, RunSpec, expand_grid, to_dict
from .context import Artifacts, RunContext
from .engine import resolve_device
from .masks import sparsity_stats
from .store import atomic_write_json, read_run, run_path

REPO_ROOT = Path(__file__).resolve().parent.parent


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


@functools.lru_cache(maxsize=1)
def _git() -> tuple[str | None, bool | None]:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                                    capture_output=True, text=True, check=True).stdout.strip())
        return commit, dirty
    except (OSError, subprocess.CalledProcessError):
        return None, None


def provenance(device: torch.device) -> dict:
    commit, dirty = _git()
    cuda = device.type == "cuda"
    return {
        "git_commit": commit, "git_dirty": dirty,
        "python": platform.python_version(), "torch": torch.__version__,
        "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version() if cuda else None,
        "gpu_name": torch.cuda.get_device_name(device) if cuda else None,
        "gpu_count": torch.cuda.device_count() if cuda else 0,
        "hostname": socket.gethostname(), "platform": platform.platform(), "cpu_count": os.cpu_count(),
        "argv": sys.argv,
    }


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def status_of(results_dir: Path, spec: RunSpec) -> tuple[str, dict | None]:
    rec = read_run(run_path(results_dir, spec.dataset, spec.method.display, spec.sparsity, spec.seed, spec.run_id))
    if rec is None:
        return "pending", None
    return ("done" if rec.get("status") == "ok" else "failed"), rec


def _base_record(spec: RunSpec, device: torch.device) -> dict:
    return {
        "run_id": spec.run_id, "dataset": spec.dataset, "model": spec.config.model.arch,
        "method": spec.method.display, "method_name": spec.method.name,
        "target_sparsity": spec.sparsity, "seed": spec.seed, "config": to_dict(spec.config),
        "device_name": device_name(device), "device_count": torch.cuda.device_count() if device.type == "cuda" else 1,
        "provenance": provenance(device),
    }


def execute(spec: RunSpec, data, artifacts: Artifacts, device: torch.device,
            log: Callable[[str], None] = print) -> dict:
    """Run one grid cell and return its record (status ok); exceptions propagate to the caller."""
    mod = methods.get(spec.method.name)
    cfg = spec.config
    if cfg.runtime.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    ctx = RunContext(cfg, data, device, artifacts, log)
    t0 = time.perf_counter()
    outcome = mod.run(ctx)
    stats = sparsity_stats(outcome.model, cfg.prune.layers)
    if outcome.masks is not None:
        mask_sparsity = 1 - sum(float(m.sum()) for m in outcome.masks.masks) / outcome.masks.numel
        # Weights may be zero where the mask is one (never the reverse): realized >= masked.
        if stats["sparsity_prunable"] + 1e-12 < mask_sparsity:
            raise RuntimeError(f"pruned weights were revived: mask sparsity {mask_sparsity:.6f}, "
                               f"weights {stats['sparsity_prunable']:.6f}")
        if abs(mask_sparsity - cfg.prune.sparsity) > 1.0 / outcome.masks.numel:
            raise RuntimeError(f"mask sparsity {mask_sparsity:.6f} differs from the target {cfg.prune.sparsity}")
    phases = ctx.phases()
    res = outcome.result
    train_phase = "retrain" if mod.PRUNES else "pretrain"
    return {
        "status": "ok",
        "sparsity_prunable": stats["sparsity_prunable"], "sparsity_overall": stats["sparsity_overall"],
        "prunable_weights": stats["prunable_weights"], "overall_weights": stats["overall_weights"],
        "layer_density": stats["layer_density"],
        "top1_final": res.top1_final, "top1_best": res.top1_best, "top5_final": res.top5_final,
        "top5_best": res.top5_best, "best_epoch": res.best_epoch, "history": res.history,
        "phases": phases, "time_total_s": time.perf_counter() - t0,
        "time_train_s": phases.get(train_phase, {}).get("seconds", 0.0),
        "data": data.info, "teacher": ctx.teacher_info, "extra": {**ctx.extra, **outcome.extra},
    }


class DataCache:
    """Load each distinct dataset config once per grid (datasets stay on the device between runs)."""

    def __init__(self, data_dir: Path, device: torch.device, download: bool):
        self.data_dir, self.device, self.download = data_dir, device, download
        self._cache: dict[str, object] = {}

    def get(self, cfg: Config):
        from .data import load_dataset

        key = json.dumps(to_dict(cfg.dataset), sort_keys=True)
        if key not in self._cache:
            self._cache.clear()  # one dataset on the device at a time
            self._cache[key] = load_dataset(cfg.dataset, self.data_dir, self.device, download=self.download)
        return self._cache[key]


def run_grid(cfg: Config, results_dir: Path, data_dir: Path, *, download: bool = False, dry_run: bool = False,
             log: Callable[[str], None] = print) -> dict:
    """Run every pending or failed cell of ``cfg``'s grid. Returns counts by final status."""
    from .data import DatasetNotFoundError

    results_dir = Path(results_dir)
    specs = expand_grid(cfg, methods.get)
    states = [status_of(results_dir, s) for s in specs]
    if dry_run:
        for spec, (state, _) in zip(specs, states):
            log(f"{state:8s} {spec.dataset:12s} {spec.method.display:14s} sparsity {spec.sparsity:<6g} "
                f"seed {spec.seed:<4d} {spec.run_id}")
        counts = {s: sum(st == s for st, _ in states) for s in ("done", "failed", "pending")}
        log(f"{len(specs)} runs: {counts['done']} done, {counts['failed']} failed, {counts['pending']} pending")
        return counts
    device = resolve_device(cfg.runtime)
    artifacts = Artifacts(results_dir / "cache")
    data_cache = DataCache(Path(data_dir), device, download)
    counts = {"ok": 0, "failed": 0, "skipped": 0}
    todo = [(s, rec) for s, (state, rec) in zip(specs, states) if state != "done"]
    counts["skipped"] = len(specs) - len(todo)
    log(f"grid {cfg.name!r}: {len(specs)} runs, {counts['skipped']} already done, {len(todo)} to run "
        f"on {device_name(device)}")
    for i, (spec, old) in enumerate(todo, 1):
        path = run_path(results_dir, spec.dataset, spec.method.display, spec.sparsity, spec.seed, spec.run_id)
        log(f"[{i}/{len(todo)}] {spec.dataset} {spec.method.display} sparsity {spec.sparsity:g} seed {spec.seed} "
            f"({spec.run_id})")
        record = _base_record(spec, device)
        record["started_at"] = _now()
        try:
            data = data_cache.get(spec.config)
        except DatasetNotFoundError:
            raise  # a missing dataset is a set-up problem for the whole grid, not a failed run
        try:
            record.update(execute(spec, data, artifacts, device, log))
            counts["ok"] += 1
            log(f"  ok: top1 {record['top1_final']:.2f}% (best {record['top1_best']:.2f}%), sparsity "
                f"{record['sparsity_prunable']:.4f} prunable / {record['sparsity_overall']:.4f} overall")
        except Exception as e:  # noqa: BLE001 - record any failure and go on with the grid
            record.update({"status": "failed", "error": f"{type(e).__name__}: {e}",
                           "traceback": traceback.format_exc()})
            counts["failed"] += 1
            log(f"  FAILED: {record['error']}")
        if old is not None:  # a retry of a failed run keeps the earlier failures on record
            record["previous_failures"] = old.get("previous_failures", []) + [
                {k: old.get(k) for k in ("error", "started_at", "ended_at")}]
        record["ended_at"] = _now()
        atomic_write_json(path, record)
    log(f"grid {cfg.name!r} finished: {counts['ok']} ok, {counts['failed']} failed, {counts['skipped']} skipped")
    return counts
