"""From run records to numbers: which runs count, means over seeds, phase times.

Everything the tables and the figures show is computed here once, so that a table and a figure
of the same results cannot disagree.

* Only records with status ``ok`` are averaged. Failed records are counted and listed.
* Two ok records of the same (dataset, model, method, target sparsity, seed) with different run
  ids (the config changed between them) are not both averaged: the one that ended last is kept,
  the others are listed as superseded. Timing (``select(..., per_device=True)``) keeps one per
  device instead: a CPU and a GPU run of one cell are two measurements, not a rerun.
* std is the sample standard deviation (ddof = 1) over seeds; it is undefined for n = 1.
* Fields the helpers do not know (``rounds``, ``precision``, ``method_version``, extra keys inside
  ``phases`` or ``sparsity``) are ignored.
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

# Latency: every phase of a record belongs to one group, declared by the method in the phase's
# "group" (records written before groups existed: inferred from the phase name). The table shows
# pretrain apart, sums teacher + score+prune + retrain + other into 'per run', and excludes eval.
PHASE_GROUPS = ("pretrain", "teacher", "score+prune", "retrain", "other", "eval")
WORK_GROUPS = ("teacher", "score+prune", "retrain", "other")        # summed into 'per run'
TIMED_GROUPS = ("pretrain",) + WORK_GROUPS                         # every group the table shows
GROUP_ATTR = {"pretrain": "pretrain", "teacher": "teacher", "score+prune": "score_prune", "retrain": "retrain",
              "other": "other"}                                    # LatencyRow attribute of each shown group
LEGACY_PHASE_GROUPS = {"pretrain": "pretrain", "teacher": "teacher", "finetune": "score+prune",
                       "score": "score+prune", "prune": "score+prune", "retrain": "retrain", "eval": "eval"}
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


def select(runs: Iterable[dict], dataset: str, model: str | None = None, per_device: bool = False) -> Selection:
    """Split the records of ``dataset`` (and ``model``, when given) into ok / failed / superseded;
    ``per_device``: the newest ok record per cell *and device* is kept (latency), not per cell."""
    sel = Selection(dataset, model or "")
    latest: dict[tuple, dict] = {}
    for r in sorted(runs, key=_run_order):
        if r.get("dataset") != dataset or (model is not None and str(r.get("model") or "") != model):
            continue
        if r.get("status") != "ok":
            sel.failed.append(r)
            continue
        key = (r["method"], sparsity_key(r.get("target_sparsity") or 0), r.get("seed"),
               record_device(r) if per_device else None)
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
    inexact: int = 0           # ok runs with sparsity_exact false (realised sparsity != target)

    @property
    def exact(self) -> bool:
        """True unless one of the cell's runs says its realised sparsity cannot equal the target."""
        return self.inexact == 0

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


def measured_sparsity(r: dict, key: str = "prunable") -> float | None:
    """A record's measured sparsity: top-level ``sparsity_<key>``, else ``sparsity[key]`` (newer records carry
    both; other keys of ``sparsity``, like conv or conv+linear, are not used here)."""
    v = r.get(f"sparsity_{key}")
    if v is None and isinstance(r.get("sparsity"), dict):
        v = r["sparsity"].get(key)
    try:
        return None if v is None else float(v)
    except (TypeError, ValueError):
        return None


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
        for key, dest in (("prunable", c.sparsity_prunable), ("overall", c.sparsity_overall)):
            v = measured_sparsity(r, key)
            if v is not None:
                dest.append(v)
        if r.get("sparsity_exact") is False:
            c.inexact += 1
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


def record_device(r: dict) -> str:
    return str(r.get("device_name") or "unknown")


def _seconds(x) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return 0.0
    return v if math.isfinite(v) else 0.0


@dataclass(frozen=True)
class Phase:
    """One timed phase of a record, as the latency table counts it."""
    name: str
    group: str                  # one of PHASE_GROUPS (an unknown declared group becomes "other")
    seconds: float
    reused: bool                # the artifact came from the checkpoint cache
    device: str                 # where the seconds were measured (the record's device when not recorded)
    declared: str | None = None  # the group as recorded; None for records without groups (inferred)

    @property
    def unknown_group(self) -> bool:
        return self.declared is not None and self.declared not in PHASE_GROUPS

    def counts_on(self, device: str) -> bool:
        """False for a reused artifact made on another device than ``device``: its cost there is unknown.
        A phase that was not reused ran in this run, on the record's own device."""
        return not (self.reused and self.device != device)

    def other_label(self) -> str:
        """The name as the caption lists it under 'other' (with the unknown group it declared, if any)."""
        return f"{self.name} (group '{self.declared}')" if self.unknown_group else self.name


def phase_group(name: str, declared: str | None = None) -> str:
    """The group a phase is counted in: the declared one when known, 'other' when the declared group is
    unknown, else (records without groups) inferred from the name; a name not known is 'other'."""
    if declared:
        return declared if declared in PHASE_GROUPS else "other"
    return LEGACY_PHASE_GROUPS.get(name, "other")


def record_phases(r: dict) -> list[Phase]:
    """The phases of a record in name order. Tolerant of what it does not know: extra keys are ignored, a
    bare number is read as seconds, a missing or unreadable ``seconds`` counts 0."""
    phases = r.get("phases")
    if not isinstance(phases, dict):
        return []
    own = record_device(r)
    out = []
    for name in sorted(phases, key=str):
        info = phases[name]
        if not isinstance(info, dict):
            info = {"seconds": info}
        declared = info.get("group")
        declared = str(declared) if declared not in (None, "") else None
        reused = bool(info.get("reused"))
        device = str(info.get("device") or own) if reused else own
        out.append(Phase(str(name), phase_group(str(name), declared), _seconds(info.get("seconds")), reused,
                         device, declared))
    return out


@dataclass
class RunTime:
    """Minutes of one run per shown group, counted on the record's own device."""
    minutes: dict[str, float | None]             # group -> minutes (None: no counted phase of the group)
    excluded: dict[str, list[Phase]]             # group -> reused phases made on another device (not counted)
    other: list[Phase]                           # phases counted (or excluded) in 'other'

    @property
    def per_run(self) -> float:
        return math.fsum(self.minutes[g] or 0.0 for g in WORK_GROUPS)


def run_time(r: dict) -> RunTime:
    device = record_device(r)
    secs: dict[str, list[float]] = {g: [] for g in TIMED_GROUPS}
    excluded: dict[str, list[Phase]] = {g: [] for g in TIMED_GROUPS}
    other = []
    for p in record_phases(r):
        if p.group == "eval":
            continue
        if p.group == "other":
            other.append(p)
        if p.counts_on(device):
            secs[p.group].append(p.seconds)
        else:
            excluded[p.group].append(p)
    return RunTime({g: math.fsum(v) / 60 if v else None for g, v in secs.items()}, excluded, other)


def phase_minutes(r: dict) -> dict[str, float | None]:
    """Minutes of each shown group of one run, keyed by LatencyRow attribute (None: no counted phase)."""
    return {GROUP_ATTR[g]: v for g, v in run_time(r).minutes.items()}


@dataclass
class LatencyRow:
    device: str
    method: str
    runs: int
    pretrain: float | None     # minutes per run (mean); None = no run has the group's phases
    teacher: float | None
    score_prune: float | None
    retrain: float | None
    per_run: float             # teacher + score+prune + retrain + other, minutes (mean over runs)
    grid_total: float          # sum over runs of per_run x device_count: GPU-minutes
    ratio: float | None = None  # per_run / per_run of the reference method on the same device
    other: float | None = None
    # attribute -> reused phases made on another device, left out of this row's minutes (all runs)
    excluded: dict[str, list[Phase]] = field(default_factory=dict)
    other_phases: list[str] = field(default_factory=list)   # phase names counted in 'other'

    def excluded_in(self, attr: str) -> list[Phase]:
        return self.excluded.get(attr, [])

    @property
    def excluded_work(self) -> list[Phase]:
        """Excluded phases that would have been part of 'per run'."""
        return [p for g in WORK_GROUPS for p in self.excluded_in(GROUP_ATTR[g])]

    @property
    def has_work(self) -> bool:
        """False for runs that only have a pretrain phase (dense): 'per run' does not apply to them."""
        return (any(getattr(self, GROUP_ATTR[g]) is not None for g in WORK_GROUPS)
                or bool(self.excluded_work))


def latency_rows(runs: Iterable[dict], ref_method: str | None = None) -> list[LatencyRow]:
    """One row per (device name, method) over ``runs`` (ok runs only). Devices are never pooled: a reused
    phase made on another device is left out of the row's minutes and listed in ``excluded``."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in runs:
        if r.get("status") != "ok":
            continue
        groups.setdefault((record_device(r), r["method"]), []).append(r)
    rows = []
    for (device, method), rs in groups.items():
        per = [run_time(r) for r in rs]

        def avg(group):
            present = [p.minutes[group] for p in per if p.minutes[group] is not None]
            return math.fsum(present) / len(per) if present else None   # absent in a run counts as 0

        totals = [p.per_run for p in per]
        grid = math.fsum(t * max(1, int(r.get("device_count") or 1)) for t, r in zip(totals, rs))
        excluded = {GROUP_ATTR[g]: [ph for p in per for ph in p.excluded[g]] for g in TIMED_GROUPS}
        other = sorted({ph.other_label() for p in per for ph in p.other})
        rows.append(LatencyRow(device, method, len(rs), avg("pretrain"), avg("teacher"), avg("score+prune"),
                               avg("retrain"), math.fsum(totals) / len(totals), grid, other=avg("other"),
                               excluded={k: v for k, v in excluded.items() if v}, other_phases=other))
    order = order_methods(m for _, m in groups)
    rows.sort(key=lambda x: (x.device, order.index(x.method)))
    for row in rows:
        ref = next((x for x in rows if x.device == row.device and x.method == ref_method), None)
        if ref is not None and ref.per_run > 0 and row.has_work and row.method != "dense":
            row.ratio = row.per_run / ref.per_run
    return rows


@dataclass
class GridTotal:
    """What a set of runs cost on one device, in GPU-minutes (minutes x GPUs of each run), with every
    shared artifact (a teacher, a dense model, a fine-tuned student, a round of a chain) counted once."""
    device: str
    runs: int
    minutes: float              # each artifact once: what the grid cost
    per_run_sum: float          # run by run, each reused artifact at its full cost in every run using it
    artifacts: int              # distinct cached artifacts among the runs' phases
    shared: int                 # of which used by more than one run
    not_deduplicated: int = 0   # runs whose record does not say which phases are artifacts: counted in full


def _artifact_of_phase(r: dict) -> dict[str, tuple[str, str]] | None:
    """{phase: (kind, key)} of the cached artifacts a record used; None for records that list their
    artifacts without their phases (made before the phases were recorded)."""
    out = {}
    for a in r.get("artifacts") or []:
        if not isinstance(a, dict):
            continue
        if "phases" not in a:
            return None
        for ph in a.get("phases") or []:
            out[str(ph)] = (str(a.get("kind")), str(a.get("key")))
    return out


def grid_totals(runs: Iterable[dict]) -> list[GridTotal]:
    """One total per device over the ok ``runs``: pretrain, teacher, score+prune, retrain and other
    (evaluation excluded, as in the latency table). A phase that belongs to a cached artifact counts
    once per artifact across all runs, at what it cost when it was made; every other phase counts in
    each run. A reused artifact made on another device is left out (it cost nothing here)."""
    by_device: dict[str, list[dict]] = {}
    for r in runs:
        if r.get("status") == "ok":
            by_device.setdefault(record_device(r), []).append(r)
    totals = []
    for device, rs in sorted(by_device.items()):
        own, per_run_sum, legacy = 0.0, 0.0, 0
        made: dict[tuple, float] = {}       # (kind, key, phase) -> GPU-minutes, as its maker timed it
        cost: dict[tuple, float] = {}       # ... as the artifact's metadata says (preferred)
        users: dict[tuple[str, str], set] = {}
        for r in sorted(rs, key=_run_order):
            gpus = max(1, int(r.get("device_count") or 1))
            art = _artifact_of_phase(r)
            legacy += art is None
            for p in record_phases(r):
                if p.group == "eval" or not p.counts_on(device):
                    continue
                minutes = p.seconds / 60 * gpus
                per_run_sum += minutes
                owner = (art or {}).get(p.name)
                if owner is None:
                    own += minutes
                    continue
                users.setdefault(owner, set()).add(str(r.get("run_id")))
                (cost if p.reused else made).setdefault((*owner, p.name), minutes)
        shared = {**made, **cost}
        totals.append(GridTotal(device, len(rs), own + math.fsum(shared.values()), per_run_sum, len(users),
                                sum(len(u) > 1 for u in users.values()), legacy))
    return totals
