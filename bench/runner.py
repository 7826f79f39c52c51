"""Execute a grid: skip finished runs, retry failed ones, record every outcome atomically.

A run's record is written only when the run ends (ok or failed), with an atomic rename, so killing
the process loses at most the run in progress and never leaves a half-written file.
"""
from __future__ import annotations

import datetime as dt
import json
import time
import traceback
from pathlib import Path
from typing import Callable

import torch

from . import methods
from .config import Config, RunSpec, expand_grid, precision, to_dict
from .context import Artifacts, RunContext
from .engine import resolve_device
from .masks import sparsity_stats
from .provenance import device_name, provenance
from .store import atomic_write_json, iter_run_files, read_run, run_path


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def status_of(results_dir: Path, spec: RunSpec) -> tuple[str, dict | None]:
    rec = read_run(run_path(results_dir, spec.dataset, spec.method.display, spec.sparsity, spec.seed, spec.run_id))
    if rec is None:
        return "pending", None
    return ("done" if rec.get("status") == "ok" else "failed"), rec


def _base_record(spec: RunSpec, device: torch.device) -> dict:
    mod = methods.get(spec.method.name)
    return {
        "run_id": spec.run_id, "dataset": spec.dataset, "model": spec.config.model.arch,
        "method": spec.method.display, "method_name": spec.method.name, "method_version": mod.VERSION,
        "target_sparsity": spec.sparsity, "seed": spec.seed, "config": to_dict(spec.config),
        "identity": spec.identity, "device_type": device.type, "precision": precision(spec.config.runtime, device.type),
        "device_name": device_name(device), "device_count": 1,
        "provenance": provenance(device),
    }


def check_sparsity(mod, masks, stats: dict, target: float) -> bool:
    """Raise when pruned weights were revived or the mask misses the target; return whether the
    method hits targets exactly (its ``SPARSITY_TOLERANCE`` is 0)."""
    mask_sparsity = 1 - sum(float(m.sum()) for m in masks.masks) / masks.numel
    # Weights may be zero where the mask is one (never the reverse): realized >= masked.
    if stats["sparsity_prunable"] + 1e-12 < mask_sparsity:
        raise RuntimeError(f"pruned weights were revived: mask sparsity {mask_sparsity:.6f}, "
                           f"weights {stats['sparsity_prunable']:.6f}")
    tolerance = float(getattr(mod, "SPARSITY_TOLERANCE", 0.0))
    if abs(mask_sparsity - target) > tolerance + 1.0 / masks.numel:
        allowed = f"within {tolerance:g} of" if tolerance else "exactly"
        raise RuntimeError(f"mask sparsity {mask_sparsity:.6f} misses the target {target}; {mod.NAME} must hit "
                           f"it {allowed} (SPARSITY_TOLERANCE)")
    return tolerance == 0


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
    # A method may prune another set than prune.layers (the SD baselines prune conv + linear, as
    # ProsPr does): the record's "prunable" sparsity is over the set its masks cover.
    layers = outcome.masks.layers if outcome.masks is not None else cfg.prune.layers
    stats = sparsity_stats(outcome.model, layers)
    exact = True
    if outcome.masks is not None:
        exact = check_sparsity(mod, outcome.masks, stats, cfg.prune.sparsity)
    phases = ctx.phases()
    res = outcome.result
    train_group = "retrain" if mod.PRUNES else "pretrain"
    return {
        "status": "ok",
        "sparsity": stats["sparsity"], "sparsity_exact": exact, "prunable_set": layers,
        "sparsity_prunable": stats["sparsity_prunable"], "sparsity_overall": stats["sparsity_overall"],
        "prunable_weights": stats["prunable_weights"], "overall_weights": stats["overall_weights"],
        "layer_density": stats["layer_density"],
        "top1_final": res.top1_final, "top1_best": res.top1_best, "top5_final": res.top5_final,
        "top5_best": res.top5_best, "best_epoch": res.best_epoch, "history": res.history,
        "phases": phases, "rounds": ctx.rounds, "artifacts": ctx.artifacts_used,
        "time_total_s": time.perf_counter() - t0,
        "time_train_s": sum(p["seconds"] for p in phases.values() if p["group"] == train_group and not p["reused"]),
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


def stale_records(results_dir: Path, specs: list[RunSpec]) -> list[Path]:
    """Stored records of the grid's datasets whose run id is not a cell of ``specs``."""
    ids = {s.run_id for s in specs}
    out = []
    for ds in sorted({s.dataset for s in specs}):
        out += [p for p in iter_run_files(results_dir, ds) if p.stem.rsplit("__", 1)[-1] not in ids]
    return out


def run_grid(cfg: Config, results_dir: Path, data_dir: Path, *, download: bool = False, dry_run: bool = False,
             log: Callable[[str], None] = print) -> dict:
    """Run every pending or failed cell of ``cfg``'s grid. Returns counts by final status."""
    from .data import DatasetNotFoundError

    results_dir = Path(results_dir)
    device = resolve_device(cfg.runtime)
    specs = expand_grid(cfg, methods.get, device.type)
    states = [status_of(results_dir, s) for s in specs]
    if dry_run:
        for spec, (state, _) in zip(specs, states):
            log(f"{state:8s} {spec.dataset:12s} {spec.method.display:14s} sparsity {spec.sparsity:<6g} "
                f"seed {spec.seed:<4d} {spec.run_id}")
        counts = {s: sum(st == s for st, _ in states) for s in ("done", "failed", "pending")}
        log(f"{len(specs)} runs on {device.type}: {counts['done']} done, {counts['failed']} failed, "
            f"{counts['pending']} pending")
        stale = stale_records(results_dir, specs)
        if stale:
            log(f"{len(stale)} stored record(s) of these datasets match no cell of this grid on {device.type} "
                "(another config, device or precision, or an older code version); they are kept and "
                "not counted:")
            for p in stale:
                log(f"  {p}")
        counts["stale"] = len(stale)
        return counts
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
