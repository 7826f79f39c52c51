"""Execute a grid: skip finished runs, retry failed ones, record every outcome atomically.

A run's record is written only when the run ends (ok or failed), with an atomic rename, so killing
the process loses at most the run in progress and never leaves a half-written file.
"""
from __future__ import annotations

import hashlib
import json
import os
import signal
import time
import traceback
from pathlib import Path
from typing import Callable

import torch

from . import budget as B, registry, estimate
from .artifacts import Artifacts, CorruptCheckpointError
from .checkpoint import CorruptEpochCheckpointError
from .config import Config, to_dict
from .context import RunContext
from .data import check_dataset, load_dataset
from .datasets import get as dataset_spec
from .estimate import plan_cells, precision_of, speed_for, this_device_name
from .grid import RunSpec, declared_sections, expand_grid
from .interrupt import Interrupted, stop_on_signals, stop_requested, stop_signal
from .leases import Lease, HOST, job_id
from .masks import TOLERANCE, UnreachableSparsity, sparsity_stats
from .provenance import device_name, numerics, provenance
from .runtime import persistent_compile_cache, resolve_device, precision
from .store import ResultsDirError, atomic_write_json, iter_run_files, run_path, status_of, utc_now


def _base_record(spec: RunSpec, device: torch.device) -> dict:
    mod = registry.get(spec.method.name)
    return {
        "run_id": spec.run_id, "dataset": spec.dataset, "model": spec.config.model.arch,
        "method": spec.method.display, "method_name": spec.method.name, "method_version": mod.VERSION,
        "target_sparsity": spec.sparsity, "sparsity_measure": spec.config.prune.measure, "seed": spec.seed,
        "config": to_dict(spec.config),
        "identity": spec.identity, "device_type": device.type, "precision": precision(spec.config.runtime, device.type),
        "device_name": device_name(device), "device_count": 1,
        "provenance": provenance(device), "numerics": numerics(device),
    }


def check_sparsity(outcome, stats: dict, measure: str, target: float) -> bool:
    """Raise when pruned weights were revived, or when the realised sparsity on ``measure`` misses the
    target by more than ``masks.TOLERANCE`` and the method gave no reason (``Outcome.off_target``);
    return whether it is on the target."""
    masks = outcome.masks
    mask_sparsity = 1 - sum(float(m.sum()) for m in masks.masks) / masks.numel
    # Weights may be zero where the mask is one (never the reverse): realized >= masked.
    if stats["sparsity_prunable"] + 1e-12 < mask_sparsity:
        raise RuntimeError(f"pruned weights were revived: mask sparsity {mask_sparsity:.6f}, "
                           f"weights {stats['sparsity_prunable']:.6f}")
    realised = stats["sparsity"][measure]
    on_target = abs(realised - target) <= TOLERANCE
    if not on_target and outcome.off_target is None:
        raise RuntimeError(f"realised sparsity {realised:.6f} ({measure}) misses the target {target} by more "
                           f"than {TOLERANCE} (0.05 percentage points)")
    return on_target


def weights_digest(model) -> str:
    """sha256 (16 hex digits) of a model's state dict, tensor by tensor: identical weights, identical digest."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        t = t.detach().cpu().contiguous().reshape(-1)
        h.update(f"{name}{tuple(t.shape)}{t.dtype};".encode())
        h.update(t.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def execute(spec: RunSpec, ctx: RunContext) -> dict:
    """Run one grid cell in ``ctx`` and return its record fields (status ok); exceptions propagate."""
    mod = registry.get(spec.method.name)
    cfg, device, data = spec.config, ctx.device, ctx.data
    if cfg.runtime.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    t0 = time.perf_counter()
    outcome = mod.run(ctx)
    # A method may prune another set than prune.layers (the SD baselines prune conv + linear, as
    # ProsPr does): the record's "prunable" sparsity is over the set its masks cover.
    layers = outcome.masks.layers if outcome.masks is not None else cfg.prune.layers
    stats = sparsity_stats(outcome.model, layers)
    measure = cfg.prune.measure
    on_target = True
    if outcome.masks is not None:
        on_target = check_sparsity(outcome, stats, measure, cfg.prune.sparsity)
    phases = ctx.phases()
    res = outcome.result
    train_group = "retrain" if mod.PRUNES else "pretrain"
    return {
        "status": "ok",
        "sparsity": stats["sparsity"], "prunable_set": layers,
        "sparsity_measure": measure, "sparsity_realised": stats["sparsity"][measure],
        "sparsity_on_target": on_target, "off_target_reason": None if on_target else outcome.off_target,
        "sparsity_prunable": stats["sparsity_prunable"], "sparsity_overall": stats["sparsity_overall"],
        "prunable_weights": stats["prunable_weights"], "overall_weights": stats["overall_weights"],
        "layer_density": stats["layer_density"],
        "top1_final": res.top1_final, "top1_best": res.top1_best, "top5_final": res.top5_final,
        "top5_best": res.top5_best, "best_epoch": res.best_epoch, "history": res.history,
        "phases": phases, "rounds": ctx.ledger.round_records, "artifacts": ctx.ledger.artifacts_used,
        "time_total_s": time.perf_counter() - t0,
        "time_train_s": sum(p["seconds"] for p in phases.values() if p["group"] == train_group and not p["reused"]),
        "final_weights_sha256": weights_digest(outcome.model),
        "budget": budget(ctx.ledger.budget, cfg, len(data.train_y)), "data": data.info, "teacher": ctx.teacher_info,
        "extra": {**ctx.extra, **outcome.extra}, "numerics": numerics(device),
    }


def budget(phases: dict, cfg: Config, n_train: int) -> dict:
    """What the run trained, by phase (epochs, images, full-data-epoch equivalents, augmentation; reused
    cached phases included, as made), and its sums: the student's from a randomly initialised network to
    the final pruned model (dense pre-training included) and the teacher's; then the grid's budget basis,
    the reference student budget (the proposed pipeline's on this config) and this run's ratio to it
    (bench/budget.py)."""
    student = {k: v for k, v in phases.items() if k != "teacher"}
    teacher = phases.get("teacher", {})
    epochs = round(sum(v["full_data_epochs"] for v in student.values()), 6)
    return {"phases": phases, "student_epochs": epochs,
            "student_images": sum(v["images"] for v in student.values()),
            "teacher_epochs": teacher.get("epochs", 0), "teacher_images": teacher.get("images", 0),
            **B.summary(cfg, epochs, n_train)}


class DataCache:
    """Load each distinct dataset config once per grid (datasets stay on the device between runs)."""

    def __init__(self, data_dir: Path, device: torch.device, download: bool):
        self.data_dir, self.device, self.download = data_dir, device, download
        self._cache: dict[str, object] = {}

    def get(self, cfg: Config):
        return self.dataset(cfg.dataset)

    def dataset(self, dcfg):
        """The data of dataset section ``dcfg``; at most two on the device at a time (a grid's split,
        and the whole training split a teacher with ``teacher.data: full`` trains on)."""
        key = json.dumps(to_dict(dcfg), sort_keys=True)
        if key not in self._cache:
            while len(self._cache) >= 2:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = load_dataset(dcfg, self.data_dir, self.device, download=self.download)
        return self._cache[key]


def stale_records(results_dir: Path, specs: list[RunSpec]) -> list[Path]:
    """Stored records of the grid's datasets whose run id is not a cell of ``specs``."""
    ids = {s.run_id for s in specs}
    out = []
    for ds in sorted({s.dataset for s in specs}):
        out += [p for p in iter_run_files(results_dir, ds) if p.stem.rsplit("__", 1)[-1] not in ids]
    return out


def check_results_dir(results_dir: Path) -> None:
    """The results folder must be a writable directory (created if absent)."""
    if results_dir.exists() and not results_dir.is_dir():
        raise ResultsDirError(f"results path {results_dir} is a file, not a folder; give --results a folder")
    try:
        (results_dir / "runs").mkdir(parents=True, exist_ok=True)
        probe = results_dir / "runs" / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise ResultsDirError(f"results folder {results_dir} is not writable ({e.strerror}); give --results a "
                              "folder you can write to") from None


def run_grid(cfg: Config, results_dir: Path, data_dir: Path, *, download: bool = False, dry_run: bool = False,
             keep_checkpoints: bool = False, log: Callable[[str], None] = print, workers: int | None = None,
             verbose: bool = False, config_name: str | None = None) -> dict:
    """Run every pending or failed cell of ``cfg``'s grid that no other live runner holds.

    Returns counts by final status; ``counts["interrupted"]`` is the signal number when a stop was
    requested (the run in progress is then recorded as ``interrupted`` and resumes on a rerun).
    ``dry_run``: list the cells and preview their cost (``workers`` cells per device) instead."""
    results_dir = Path(results_dir)
    device = resolve_device(cfg.runtime)
    specs = expand_grid(cfg, device.type)
    datasets = {json.dumps(to_dict(s.config.dataset), sort_keys=True): s.config.dataset for s in specs}
    if dry_run:
        if results_dir.exists() and not results_dir.is_dir():
            raise ResultsDirError(f"results path {results_dir} is a file, not a folder; give --results a folder")
        return _dry_run(cfg, specs, datasets.values(), results_dir, Path(data_dir), device, log, workers, verbose,
                        config_name)
    if results_dir.exists() and not results_dir.is_dir():
        raise ResultsDirError(f"results path {results_dir} is a file, not a folder; give --results a folder")
    for dcfg in datasets.values():         # a missing dataset stops the grid before anything is read or made
        check_dataset(dcfg, data_dir, download)
    check_results_dir(results_dir)
    persistent_compile_cache(results_dir / "cache" / "inductor")    # used only where runtime.compile is on
    data_cache = DataCache(Path(data_dir), device, download)
    for spec in {json.dumps(to_dict(s.config.dataset), sort_keys=True): s for s in specs}.values():
        data_cache.get(spec.config)        # ... and unreadable data files before any training
    artifacts = Artifacts(results_dir / "cache")
    rt = cfg.runtime
    counts = {"ok": 0, "unreachable": 0, "failed": 0, "skipped": 0, "elsewhere": 0, "interrupted": 0}
    todo = [s for s in specs if status_of(results_dir, s)[0] != "done"]
    counts["skipped"] = len(specs) - len(todo)
    log(f"grid {cfg.name!r}: {len(specs)} runs, {counts['skipped']} already done, {len(todo)} to run "
        f"on {device_name(device)}")
    clock = GridClock(todo, device, log)
    elsewhere: set[str] = set()
    with stop_on_signals():
        for i, spec in enumerate(todo, 1):
            if stop_requested():           # asked to stop between two cells: start no other
                counts["interrupted"] = stop_signal() or signal.SIGTERM
                log("stopped before the next run; rerun to go on")
                break
            claim = Lease(results_dir / "claims" / f"{spec.run_id}.claim",
                          f"{spec.dataset} {spec.method.display} sparsity {spec.sparsity:g} seed {spec.seed}",
                          rt.heartbeat_s, rt.stale_after_s)
            if not claim.try_acquire():
                log(f"[{i}/{len(todo)}] {spec.method.display} sparsity {spec.sparsity:g} seed {spec.seed} "
                    f"({spec.run_id}): being run by {claim.holder()}")
                elsewhere.add(spec.run_id)
                clock.finished(spec, None)
                continue
            try:
                # it may have finished while we looked; a corrupt record is moved aside and the cell rerun
                state, old = status_of(results_dir, spec, move_corrupt=True)
                if state == "done":
                    counts["skipped"] += 1
                    clock.finished(spec, None)
                    continue
                with CellLog(results_dir, spec.run_id, log) as cell_log:
                    cell_log(f"[{i}/{len(todo)}] {spec.dataset} {spec.method.display} sparsity {spec.sparsity:g} "
                             f"seed {spec.seed} ({spec.run_id})" + (
                                 f", taking over from {claim.took_over.get('host')} pid {claim.took_over.get('pid')}"
                                 if claim.took_over else "") + clock.eta_text())
                    t_cell = time.perf_counter()
                    record = _run_one(spec, old, data_cache, artifacts, device, results_dir, keep_checkpoints,
                                      cell_log)
                    clock.finished(spec, time.perf_counter() - t_cell)
                    if record.get("traceback"):
                        cell_log.file_only(record["traceback"])
                    status = record["status"]
            finally:
                claim.release()
            if status == "interrupted":
                counts["interrupted"] = stop_signal() or signal.SIGTERM
                log("stopped: the run in progress is recorded as interrupted and resumes on a rerun")
                break
            counts[status] += 1
    counts["elsewhere"] = len(elsewhere)
    more = f", {len(elsewhere)} left to other runners" if elsewhere else ""
    unreachable = f", {counts['unreachable']} unreachable" if counts["unreachable"] else ""
    for line in unreachable_summary(results_dir, specs):
        log(line)
    ended = "interrupted" if counts["interrupted"] else "finished"
    log(f"grid {cfg.name!r} {ended} after {_duration(clock.elapsed())}: {counts['ok']} ok{unreachable}, "
        f"{counts['failed']} failed, {counts['skipped']} skipped{more}")
    return counts


def _duration(seconds: float) -> str:
    """'42 s', '3 min 05 s', '2 h 07 min'."""
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


class GridClock:
    """Elapsed time and an ETA for the cells a runner has left: each cell's estimated cost (bench/plan.py
    priced by bench/estimate.py on this device), scaled by what the cells finished so far actually took
    over what they were estimated to take. No estimate (a device without throughput rows): no ETA."""

    def __init__(self, todo, device, log):
        self.start = time.perf_counter()
        self.left = {s.run_id for s in todo}
        self.estimated: dict[str, float] = {}
        self.spent = self.planned = 0.0
        try:
            if todo:
                name = this_device_name(device.type)
                speed = speed_for(name, precision_of(todo[0].config)(name))
                if speed is not None:
                    for c in plan_cells(todo, ["pending"] * len(todo)):
                        self.estimated[c.spec.run_id] = sum(
                            sum(speed.seconds(w, 1, c.spec.config.runtime.eval_batch_size)) for w in c.work)
        except Exception as e:  # noqa: BLE001 - the ETA is a convenience; never stop a grid for it
            log(f"  (no ETA: {type(e).__name__}: {e})")

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def finished(self, spec, seconds: float | None) -> None:
        """``spec`` is no longer this runner's to run: it ran for ``seconds`` (None: another runner has it)."""
        self.left.discard(spec.run_id)
        est = self.estimated.get(spec.run_id)
        if est and seconds is not None:
            self.spent, self.planned = self.spent + seconds, self.planned + est

    def eta_text(self) -> str:
        if not self.estimated:
            return ""
        rest = sum(self.estimated.get(rid, 0.0) for rid in self.left)
        scale = self.spent / self.planned if self.planned else 1.0
        how = "at the pace measured so far" if self.planned else "estimated"
        return f"; elapsed {_duration(self.elapsed())}, about {_duration(rest * scale)} left ({how})"


def unreachable_summary(results_dir: Path, specs: list[RunSpec]) -> list[str]:
    """Lines naming the grid's cells recorded unreachable, by dataset and target: which methods, and the
    most their own prunable set reaches on the measure (none: no lines)."""
    groups: dict[tuple, dict[tuple, list[str]]] = {}
    for spec in specs:
        _, rec = status_of(results_dir, spec)
        if rec is None or rec.get("status") != "unreachable":
            continue
        where = (spec.dataset, spec.sparsity, rec.get("sparsity_measure"))
        why = (rec.get("prunable_set") or "its own set", rec.get("max_sparsity"))
        groups.setdefault(where, {}).setdefault(why, []).append(spec.method.display)
    if not groups:
        return []
    lines = ["unreachable cells (the method's own prunable set, pruned whole, stays below the target; recorded as "
             "unreachable, not failed):"]
    order = list(dict.fromkeys(s.dataset for s in specs))
    for (ds, target, measure), whys in sorted(groups.items(), key=lambda g: (order.index(g[0][0]), g[0][1])):
        parts = [f"{', '.join(ms)} (set '{layers}': at most "
                 f"{'?' if top is None else f'{100 * top:.2f}'}%)" for (layers, top), ms in whys.items()]
        lines.append(f"  {ds} at {100 * target:g}% {measure}: " + "; ".join(parts))
    return lines


class CellLog:
    """The log of one cell: every line also goes to ``<results>/logs/<run_id>.log``, which keeps
    all attempts (each opens with who ran it), and a failed attempt's traceback."""

    def __init__(self, results_dir: Path, run_id: str, log: Callable[[str], None]):
        self.path = Path(results_dir) / "logs" / f"{run_id}.log"
        self.log = log

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(self.path, "a", buffering=1)
        job = job_id()
        self.file.write(f"=== attempt at {utc_now()} on {HOST} pid {os.getpid()}" + (f" job {job}" if job else "")
                        + " ===\n")
        return self

    def __call__(self, line: str) -> None:
        self.log(line)
        self.file_only(line)

    def file_only(self, text: str) -> None:
        self.file.write(text if text.endswith("\n") else text + "\n")

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:     # the runner itself stopped here (a damaged cache file, a crash)
            self.file_only("the runner stopped during this attempt:\n" +
                           "".join(traceback.format_exception(exc_type, exc, tb)))
        self.file.close()
        return False


def _run_one(spec, old, data_cache, artifacts, device, results_dir, keep_checkpoints, log) -> dict:
    """Run one claimed cell and write its record (status ok, failed or interrupted); returns it."""
    path = run_path(results_dir, spec.dataset, spec.method.display, spec.sparsity, spec.seed, spec.run_id)
    record = _base_record(spec, device)
    record["started_at"] = utc_now()
    data = data_cache.get(spec.config)
    mod = registry.get(spec.method.name)
    ctx = RunContext(spec.config, data, device, artifacts, log, run_id=spec.run_id, load_data=data_cache.dataset,
                     declared=declared_sections(mod), owner=f"method {mod.NAME!r}")
    try:
        record.update(execute(spec, ctx))
        log(f"  ok in {_duration(record['time_total_s'])}: top1 {record['top1_final']:.2f}% (best "
            f"{record['top1_best']:.2f}%), sparsity {record['sparsity_realised']:.4f} {record['sparsity_measure']} "
            f"({record['sparsity_prunable']:.4f} of its prunable set)")
    except Interrupted as e:
        record.update({"status": "interrupted", "error": str(e)})
        log(f"  INTERRUPTED: {e}")
    except UnreachableSparsity as e:
        record.update({"status": "unreachable", "sparsity_measure": e.measure, "max_sparsity": e.maximum,
                       "prunable_set": e.layers, "reason": e.reason})
        log(f"  UNREACHABLE: {e}")
    except (CorruptCheckpointError, CorruptEpochCheckpointError):
        raise          # a damaged file in the cache is a set-up problem: stop, name it, record nothing
    except Exception as e:  # noqa: BLE001 - record any failure and go on with the grid
        record.update({"status": "failed", "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()})
        log(f"  FAILED: {record['error']}")
    record["resumed_from"] = ctx.resumed
    if old is not None:  # a retry keeps the earlier attempts on record
        key = "previous_interruptions" if old.get("status") == "interrupted" else "previous_failures"
        record["previous_failures"] = old.get("previous_failures", [])
        record["previous_interruptions"] = old.get("previous_interruptions", [])
        record[key] = record[key] + [{**{k: old.get(k) for k in ("error", "started_at", "ended_at")},
                                      **{k: (old.get("provenance") or {}).get(k) for k in ("hostname", "job_id")}}]
    record["ended_at"] = utc_now()
    atomic_write_json(path, record, fault="record-write")
    if record["status"] == "ok" and not keep_checkpoints:
        ctx.remove_checkpoints()
    return record


def _dry_run(cfg, specs, datasets, results_dir, data_dir, device, log, workers, verbose=False,
             config_name: str | None = None) -> dict:
    """What a run would do, the summary first: how many cells are done, failed, interrupted or pending, the
    cost preview (totals, the refusal on this CPU if any, the methods by hours, the phases), stored records
    that match no cell, whether the data is there (files present are read and checked; absent ones are
    named, the preview needs none); each cell's line only with ``verbose``."""
    states = [status_of(results_dir, s)[0] for s in specs]
    counts = {s: states.count(s) for s in ("done", "failed", "interrupted", "pending")}
    log(f"{len(specs)} runs on {device.type}: {counts['done']} done, {counts['failed']} failed, "
        f"{counts['interrupted']} interrupted, {counts['pending']} pending")
    devices, warning = estimate.devices_for(cfg, None)
    if warning:
        log(warning)
    cells = estimate.plan_cells(specs, states)
    estimate.preview(cells, devices, estimate.precision_of(cfg), workers, log,
                     limit_here=(config_name or cfg.name) if device.type == "cpu" else None)
    absent = []
    for dcfg in datasets:
        spec = dataset_spec(dcfg.name)
        root = data_dir / spec.folder if spec and spec.folder else None
        if root is not None and not root.is_dir():
            absent.append(f"data: {dcfg.name} is not in {root}; the preview needs no data, a run does: pass --download "
                          f"(the official archive, via torchvision) or place the files as {data_dir}/{spec.layout}")
        else:
            load_dataset(dcfg, data_dir, "cpu", download=False)     # read and checked, on the CPU
    for line in absent:
        log(line)
    stale = stale_records(results_dir, specs)
    if stale:
        log(f"{len(stale)} stored record(s) of these datasets match no cell of this grid on {device.type} "
            "(another config, device or precision, or an older code version); they are kept and not counted"
            + (":" if verbose else " (--verbose lists them)"))
        for p in stale if verbose else ():
            log(f"  {p}")
    counts["stale"] = len(stale)
    if verbose:
        for cell in cells:
            spec = cell.spec
            log(f"{cell.state:8s} {spec.dataset:12s} {spec.method.display:14s} sparsity {spec.sparsity:<6g} "
                f"seed {spec.seed:<4d} {spec.run_id}" + ("  unreachable: costs nothing" if cell.unreachable else ""))
    else:
        log("(--verbose lists every cell with its state and run id)")
    return counts
