"""From run records to numbers: which runs count, means over seeds, phase times.

Everything the tables and the figures show is computed here once, so that a table and a figure
of the same results cannot disagree.

* Only records with status ``ok`` are averaged. Failed records are counted and listed.
* Two ok records of the same (dataset, model, method, target sparsity, seed) with different run
  ids (the config changed between them) are not both averaged: the one that ended last is kept,
  the others are listed as superseded.
* std is the sample standard deviation (ddof = 1) over seeds; it is undefined for n = 1.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable

from .style import order_methods

ACCURACY_FIELDS = {"best": "top1_best", "final": "top1_final"}
# Final epoch by default: the best epoch is chosen by looking at the test set (model selection on
# the test set), so it is optimistic. It stays available, and is always named as such.
DEFAULT_ACCURACY = "final"
ACCURACY_WORDS = {
    "best": "best epoch (the maximum test accuracy over the epochs of the final training phase, i.e. the epoch "
            "is selected on the test set: optimistic; the COLT/paper convention)",
    "final": "final epoch (test accuracy after the last epoch of the final training phase; no selection on the "
             "test set)",
}
# Short forms for titles, axis labels and the report header.
ACCURACY_SHORT = {"best": "best epoch, selected on the test set (optimistic)", "final": "final epoch"}
DEFAULT_REF_METHODS = ("tgp-kd", "tgp")

# Latency: phases grouped as the table shows them. Evaluation is excluded; pretrain is shown apart.
PHASE_GROUPS = {"teacher": ("teacher",), "score_prune": ("finetune", "score", "prune"), "retrain": ("retrain",)}
PRETRAIN = "pretrain"


def sparsity_key(x) -> float:
    return round(float(x), 6)


def accuracy_field(accuracy: str) -> str:
    if accuracy not in ACCURACY_FIELDS:
        raise ValueError(f"accuracy must be one of {', '.join(ACCURACY_FIELDS)}, got {accuracy!r}")
    return ACCURACY_FIELDS[accuracy]


def mean_std(values: Iterable[float]) -> tuple[float | None, float | None, int]:
    """(mean, sample std with ddof=1 or None when n < 2, n)."""
    vals = [float(v) for v in values]
    n = len(vals)
    if n == 0:
        return None, None, 0
    m = math.fsum(vals) / n
    if n < 2:
        return m, None, n
    return m, math.sqrt(math.fsum((v - m) ** 2 for v in vals) / (n - 1)), n


def _mean(values: list[float]) -> float | None:
    return math.fsum(values) / len(values) if values else None


@dataclass
class Selection:
    """The records of one (dataset, model), split by what is done with them."""
    dataset: str
    model: str
    ok: list[dict] = field(default_factory=list)
    failed: list[dict] = field(default_factory=list)
    superseded: list[dict] = field(default_factory=list)

    @property
    def methods(self) -> list[str]:
        return order_methods(r["method"] for r in self.ok + self.failed)


def _run_order(r: dict) -> tuple:
    return (str(r.get("method")), sparsity_key(r.get("target_sparsity") or 0), int(r.get("seed") or 0),
            str(r.get("run_id")))


def models_of(runs: Iterable[dict], dataset: str) -> list[str]:
    return sorted({str(r.get("model") or "") for r in runs if r.get("dataset") == dataset})


def datasets_of(runs: Iterable[dict]) -> list[str]:
    return sorted({str(r["dataset"]) for r in runs if r.get("dataset")})


def select(runs: Iterable[dict], dataset: str, model: str | None = None) -> Selection:
    """Split the records of ``dataset`` (and ``model``, when given) into ok / failed / superseded."""
    sel = Selection(dataset, model or "")
    latest: dict[tuple, dict] = {}
    for r in sorted(runs, key=_run_order):
        if r.get("dataset") != dataset or (model is not None and str(r.get("model") or "") != model):
            continue
        if r.get("status") != "ok":
            sel.failed.append(r)
            continue
        key = (r["method"], sparsity_key(r.get("target_sparsity") or 0), r.get("seed"))
        prev = latest.get(key)
        if prev is None:
            latest[key] = r
        elif (str(r.get("ended_at") or ""), str(r.get("run_id"))) > (str(prev.get("ended_at") or ""),
                                                                     str(prev.get("run_id"))):
            sel.superseded.append(prev)
            latest[key] = r
        else:
            sel.superseded.append(r)
    sel.ok = sorted(latest.values(), key=_run_order)
    sel.superseded.sort(key=_run_order)
    return sel


@dataclass
class CellStats:
    """One method at one target sparsity: accuracy over seeds, measured sparsities, failures."""
    method: str
    target: float
    values: list[float] = field(default_factory=list)
    seeds: list = field(default_factory=list)
    sparsity_prunable: list[float] = field(default_factory=list)
    sparsity_overall: list[float] = field(default_factory=list)
    failed: list[dict] = field(default_factory=list)

    @property
    def stats(self) -> tuple[float | None, float | None, int]:
        return mean_std(self.values)

    @property
    def mean(self) -> float | None:
        return self.stats[0]

    @property
    def std(self) -> float | None:
        return self.stats[1]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def overall_mean(self) -> float | None:
        return _mean(self.sparsity_overall)

    @property
    def prunable_mean(self) -> float | None:
        return _mean(self.sparsity_prunable)


def accuracy_cells(sel: Selection, accuracy: str = DEFAULT_ACCURACY) -> dict[tuple[str, float], CellStats]:
    """{(method, target): CellStats} over the ok runs (with a value) and the failed runs of ``sel``."""
    fld = accuracy_field(accuracy)
    cells: dict[tuple[str, float], CellStats] = {}

    def cell(r):
        key = (r["method"], sparsity_key(r.get("target_sparsity") or 0))
        return cells.setdefault(key, CellStats(*key))

    for r in sel.ok:
        c = cell(r)
        v = r.get(fld)
        if v is not None:
            c.values.append(float(v))
            c.seeds.append(r.get("seed"))
        if r.get("sparsity_prunable") is not None:
            c.sparsity_prunable.append(float(r["sparsity_prunable"]))
        if r.get("sparsity_overall") is not None:
            c.sparsity_overall.append(float(r["sparsity_overall"]))
    for r in sel.failed:
        cell(r).failed.append(r)
    return cells


def overall_by_target(cells: dict[tuple[str, float], CellStats], method: str | None = None) -> dict[float, float | None]:
    """Measured overall sparsity per target: the method's own runs when it has some, else every method's."""
    pooled: dict[float, list[float]] = {}
    own: dict[float, list[float]] = {}
    for (m, t), c in cells.items():
        pooled.setdefault(t, []).extend(c.sparsity_overall)
        if m == method:
            own.setdefault(t, []).extend(c.sparsity_overall)
    return {t: _mean(own.get(t) or pooled[t]) for t in sorted(pooled)}


def resolve_ref_method(methods: Iterable[str], preferred: str | Iterable[str] | None = None) -> str | None:
    """The method ratios are taken against: the first of ``preferred`` (default tgp-kd, tgp) that is present."""
    present = set(methods)
    prefs = DEFAULT_REF_METHODS if preferred is None else ((preferred,) if isinstance(preferred, str) else tuple(preferred))
    for m in prefs:
        if m in present:
            return m
    return None


def phase_minutes(r: dict) -> dict[str, float | None]:
    """Minutes of each phase group of one run (None: the run has none of the group's phases)."""
    phases = r.get("phases") or {}
    out: dict[str, float | None] = {}
    for group, names in list(PHASE_GROUPS.items()) + [(PRETRAIN, (PRETRAIN,))]:
        secs = [float((phases.get(p) or {}).get("seconds") or 0.0) for p in names if p in phases]
        out[group] = math.fsum(secs) / 60 if secs else None
    return out


@dataclass
class LatencyRow:
    device: str
    method: str
    runs: int
    pretrain: float | None     # minutes per run (mean); None = no run has the phase
    teacher: float | None
    score_prune: float | None
    retrain: float | None
    per_run: float             # teacher + score/prune + retrain, minutes (mean over runs)
    grid_total: float          # sum over runs of per_run x device_count: GPU-minutes
    ratio: float | None = None  # per_run / per_run of the reference method on the same device

    @property
    def has_work(self) -> bool:
        """False for runs that only have a pretrain phase (dense): 'per run' does not apply to them."""
        return any(v is not None for v in (self.teacher, self.score_prune, self.retrain))


def latency_rows(runs: Iterable[dict], ref_method: str | None = None) -> list[LatencyRow]:
    """One row per (device name, method) over ``runs`` (ok runs only). Devices are never pooled."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in runs:
        if r.get("status") != "ok":
            continue
        groups.setdefault((str(r.get("device_name") or "unknown"), r["method"]), []).append(r)
    rows = []
    for (device, method), rs in groups.items():
        per = [phase_minutes(r) for r in rs]

        def avg(group):
            present = [p[group] for p in per if p[group] is not None]
            return math.fsum(present) / len(per) if present else None   # absent in a run counts as 0

        totals = [math.fsum(p[g] or 0.0 for g in PHASE_GROUPS) for p in per]
        grid = math.fsum(t * max(1, int(r.get("device_count") or 1)) for t, r in zip(totals, rs))
        rows.append(LatencyRow(device, method, len(rs), avg(PRETRAIN), avg("teacher"), avg("score_prune"),
                               avg("retrain"), math.fsum(totals) / len(totals), grid))
    order = order_methods(m for _, m in groups)
    rows.sort(key=lambda x: (x.device, order.index(x.method)))
    for row in rows:
        ref = next((x for x in rows if x.device == row.device and x.method == ref_method), None)
        if ref is not None and ref.per_run > 0 and row.has_work and row.method != "dense":
            row.ratio = row.per_run / ref.per_run
    return rows
