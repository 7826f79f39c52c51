"""From run records to numbers: which runs count, means over seeds, phase times.

Everything the tables and the figures show is computed here once, so that a table and a figure
of the same results cannot disagree.

* Only records with status ``ok`` are averaged. Records with status ``unreachable`` (the method's
  own prunable set cannot reach the target on the grid's measure) are finished cells without an
  accuracy: kept apart, shown as such, never counted as failed. Other records (failed,
  interrupted) are counted and listed as failed.
* Two finished records (ok or unreachable) of the same (dataset, model, method, measure, target
  sparsity, seed) with different run ids (the config changed between them) are not both used: the
  one that ended last is kept, the others are listed as superseded. Timing
  (``select(..., per_device=True)``) keeps one per device instead: a CPU and a GPU run of one cell
  are two measurements, not a rerun.
* A target is a fraction of the record's ``sparsity_measure`` (``overall`` in every preset).
  Records made before that field existed (old accounting) counted each method's target over its
  own prunable set: their measure is ``None`` (``record_measure``) and their scale, what the target
  is a fraction of, is that set (``target_scale``). Tables never mix measures; claims pair only runs
  whose targets are on the same scale.
* A run is on target when its realised sparsity on the measure is within ``TOLERANCE`` of the
  target (``sparsity_on_target``; old records: ``sparsity_exact: false`` is off target).
* std is the sample standard deviation (ddof = 1) over seeds; it is undefined for n = 1.
* Fields the helpers do not know (``rounds``, ``precision``, ``method_version``, extra keys inside
  ``phases`` or ``sparsity``) are ignored.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Iterable

from .. import datasets as D
from ..phases import GROUPS, STUDENT_GROUPS, TIMED_GROUPS, phase_group
from .references import match_target
from .style import order_methods

ACCURACY_FIELDS = {"best": "top1_best", "final": "top1_final"}
METRICS = ("top1", "top5")
# A dataset with at least this many classes gets a top-5 table beside the top-1 one (Tiny-ImageNet).
TOP5_MIN_CLASSES = 200

# Realised sparsity within this distance of the target (a fraction: 0.05 percentage points) is on
# target. The same number as bench.masks.TOLERANCE (tests/test_report.py checks it); not imported,
# so that rendering tables does not load torch.
TOLERANCE = 0.0005
MEASURE_WORDS = {
    "overall": "zeros / (conv + linear + BatchNorm weights), COLT's and the paper's figure",
    "prunable": "zeros / each method's own prunable set",
    "conv": "zeros / all conv weights",
    "conv+linear": "zeros / (conv + linear weights)",
    "conv-noshortcut": "zeros / the convs without the shortcut convs (EGP's set)",
}
OLD_ACCOUNTING = ("old accounting: targets over each method's own prunable set (records made before "
                  "grid.sparsity_measure existed)")
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

# Latency: every phase of a record belongs to one group (bench/phases.py), declared by the method in the
# phase's "group" (records written before groups existed: inferred from the phase name).
GROUP_ATTR = {"pretrain": "pretrain", "teacher": "teacher", "score+prune": "score_prune", "retrain": "retrain",
              "other": "other"}                                    # LatencyRow attribute of each shown group


def sparsity_key(x) -> float:
    return round(float(x), 6)


def accuracy_field(accuracy: str, metric: str = "top1") -> str:
    """The record key of ``metric`` (top1, top5) at the ``accuracy`` epoch (final, best)."""
    if accuracy not in ACCURACY_FIELDS:
        raise ValueError(f"accuracy must be one of {', '.join(ACCURACY_FIELDS)}, got {accuracy!r}")
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    return f"{metric}_{accuracy}"


def dataset_classes(runs: Iterable[dict], dataset: str) -> int | None:
    """The number of classes of ``dataset``: from the records' ``data.num_classes``, else the known ones."""
    for r in runs:
        if r.get("dataset") == dataset and isinstance(r.get("data"), dict) and r["data"].get("num_classes"):
            return int(r["data"]["num_classes"])
    ds = D.get(dataset)
    return ds.num_classes if ds is not None else None


# --------------------------------------------------------------------------- sparsity measure, target

def record_measure(r: dict) -> str | None:
    """The measure the record's target is on (``sparsity_measure``); None for an old record (its target
    was over the method's own prunable set)."""
    m = r.get("sparsity_measure")
    if not m:       # a failed or interrupted record of a harness that wrote the measure only on success
        grid = r.get("config", {}).get("grid") if isinstance(r.get("config"), dict) else None
        m = grid.get("sparsity_measure") if isinstance(grid, dict) else None
    return str(m) if m else None


def target_scale(r: dict) -> str:
    """What the record's target is a fraction of: its measure, or for an old record its own prunable set
    (``conv`` when the record does not say: the only set before others existed). Two targets are
    comparable only on the same scale."""
    return record_measure(r) or str(r.get("prunable_set") or "conv")


def realised_sparsity(r: dict) -> float | None:
    """The sparsity the run reached on its target's scale: ``sparsity_realised``, else the measured sparsity on
    its measure (``sparsity_<measure>``, ``sparsity[measure]``); old records: that of their prunable set."""
    v = r.get("sparsity_realised")
    if v is None:
        return measured_sparsity(r, record_measure(r) or "prunable")
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def on_target(r: dict) -> bool:
    """Whether an ok run's realised sparsity is within TOLERANCE of its target: ``sparsity_on_target``
    when recorded; old records: ``sparsity_exact: false`` is off target, anything else on target."""
    flag = r.get("sparsity_on_target")
    if flag is not None:
        return bool(flag)
    if r.get("sparsity_exact") is False:
        return False
    real = realised_sparsity(r) if record_measure(r) else None
    if real is not None:
        return abs(real - float(r.get("target_sparsity") or 0)) <= TOLERANCE + 1e-12
    return True


# --------------------------------------------------------------------------- budgets

def _number(x) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def record_budget(r: dict) -> tuple[float | None, float | None]:
    """(student epochs, teacher epochs) in full-data-epoch equivalents; (None, None) for records without
    a budget (made before budgets were recorded)."""
    b = r.get("budget")
    if not isinstance(b, dict):
        return None, None
    return _number(b.get("student_epochs")), _number(b.get("teacher_epochs"))


def record_images(r: dict) -> tuple[int | None, int | None]:
    """(student images, teacher images) a run trained on; (None, None) without a budget."""
    b = r.get("budget")
    if not isinstance(b, dict):
        return None, None
    s, t = _number(b.get("student_images")), _number(b.get("teacher_images"))
    return (None if s is None else int(s)), (None if t is None else int(t))


def budget_ratio(r: dict) -> float | None:
    """The run's student budget over its grid's reference (the proposed pipeline's; bench/budget.py), None for
    records made before the reference was recorded."""
    b = r.get("budget")
    return _number(b.get("ratio")) if isinstance(b, dict) else None


def budget_basis(r: dict) -> str | None:
    b = r.get("budget")
    return b.get("basis") if isinstance(b, dict) else None


# --------------------------------------------------------------------------- layer collapse

# A prunable layer that keeps under this fraction of its weights is collapsed: empty, or so nearly
# empty that it is a bottleneck for the whole network (at 98% overall the average conv keeps 2%; a
# layer under 0.5% keeps less than a quarter of that). docs/reporting.md, "Layer collapse".
COLLAPSE_DENSITY = 0.005


def collapsed_layers(r: dict) -> dict[str, float]:
    """{layer: density} of the run's conv and linear weights that keep under ``COLLAPSE_DENSITY`` of their
    weights (names without '.weight'), in the network's order."""
    dens = r.get("layer_density")
    if not isinstance(dens, dict):
        return {}
    out = {}
    for name, d in dens.items():
        v = _number(d)
        if v is not None and v < COLLAPSE_DENSITY:
            out[str(name).removesuffix(".weight")] = v
    return out


HEAD_LAYERS = ("linear.weight", "fc.weight")       # the classifier head of the harness's networks


def head_density(r: dict) -> float | None:
    """The fraction of the classifier head's weights the run kept (None: not recorded)."""
    dens = r.get("layer_density")
    if not isinstance(dens, dict):
        return None
    return next((_number(dens[k]) for k in HEAD_LAYERS if k in dens), None)


def grid_augment(r: dict) -> str | None:
    """The grid's augmentation (the run config's ``dataset.augment``) as text; None when not recorded."""
    aug = ((r.get("config") or {}).get("dataset") or {}).get("augment")
    return augment_text(aug) if isinstance(aug, dict) else None


def augment_differs(r: dict) -> dict[str, list[str]]:
    """{augmentation: the run's student phases trained with it} where it is not the grid's (empty: the run
    trains as the grid does, or records no augmentation)."""
    grid = grid_augment(r)
    if grid is None:
        return {}
    return {a: ps for a, ps in run_augments(r).items() if a != grid}


def collapse_text(layers: dict[str, float]) -> str:
    """'layer4.0.conv1 (empty), layer4.0.shortcut.0 (0.23%)'."""
    return ", ".join(f"{n} ({'empty' if d == 0 else f'{100 * d:.2f}%'})" for n, d in layers.items())


def augment_text(aug: dict) -> str:
    """'crop 4, flip, rotate 15°' / 'crop 4, flip, no rotation'."""
    crop = int(_number(aug.get("crop_padding")) or 0)
    rot = _number(aug.get("rotate_deg")) or 0.0
    parts = [f"crop {crop}" if crop else "no crop", "flip" if aug.get("flip") else "no flip",
             f"rotate {rot:g}°" if rot else "no rotation"]
    return ", ".join(parts)


def run_augments(r: dict) -> dict[str, list[str]]:
    """{augmentation text: the student phases trained with it} of one run (the teacher's phase is left out:
    the teacher is a shared artifact, not the method's training); empty without a budget."""
    phases = (r.get("budget") or {}).get("phases") if isinstance(r.get("budget"), dict) else None
    out: dict[str, list[str]] = {}
    for name in sorted(phases or {}, key=str):
        info = phases[name]
        if name == "teacher" or not isinstance(info, dict) or not isinstance(info.get("augment"), dict):
            continue
        out.setdefault(augment_text(info["augment"]), []).append(str(name))
    return out


def fmt_epochs(x: float) -> str:
    """'8', '26.5', '8.25': full-data epochs without trailing zeros."""
    return f"{x:.2f}".rstrip("0").rstrip(".")


def epochs_range(values: Iterable[float]) -> str | None:
    """'11' or '16–27' (min–max); None when there is no value."""
    vals = sorted(set(values))
    if not vals:
        return None
    lo, hi = fmt_epochs(vals[0]), fmt_epochs(vals[-1])
    return lo if lo == hi else f"{lo}–{hi}"


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
    failed: list[dict] = field(default_factory=list)          # failed or interrupted: listed, never averaged
    superseded: list[dict] = field(default_factory=list)
    unreachable: list[dict] = field(default_factory=list)     # finished cells without a network: not failures

    @property
    def methods(self) -> list[str]:
        return order_methods(r["method"] for r in self.ok + self.failed + self.unreachable)


def _run_order(r: dict) -> tuple:
    return (str(r.get("method")), str(record_measure(r) or ""), sparsity_key(r.get("target_sparsity") or 0),
            int(r.get("seed") or 0), str(r.get("run_id")))


def models_of(runs: Iterable[dict], dataset: str) -> list[str]:
    return sorted({str(r.get("model") or "") for r in runs if r.get("dataset") == dataset})


def measures_of(runs: Iterable[dict], dataset: str, model: str | None = None) -> list[str | None]:
    """The measures of the records of ``dataset`` (and ``model``): the declared ones A-Z, then None (old
    accounting) when some record has none."""
    found = {record_measure(r) for r in runs
             if r.get("dataset") == dataset and (model is None or str(r.get("model") or "") == model)}
    return sorted(m for m in found if m) + ([None] if None in found else [])


def datasets_of(runs: Iterable[dict]) -> list[str]:
    return sorted({str(r["dataset"]) for r in runs if r.get("dataset")})


FINISHED = ("ok", "unreachable")
ANY_MEASURE = "any"


def select(runs: Iterable[dict], dataset: str, model: str | None = None, per_device: bool = False,
           measure: str | None = ANY_MEASURE) -> Selection:
    """Split the records of ``dataset`` (and ``model``, when given; and ``measure``, when not ANY_MEASURE:
    None selects the old-accounting records) into ok / unreachable / failed / superseded;
    ``per_device``: the newest finished record per cell *and device* is kept (latency), not per cell."""
    sel = Selection(dataset, model or "")
    latest: dict[tuple, dict] = {}
    for r in sorted(runs, key=_run_order):
        if r.get("dataset") != dataset or (model is not None and str(r.get("model") or "") != model):
            continue
        if measure != ANY_MEASURE and record_measure(r) != measure:
            continue
        if r.get("status") not in FINISHED:
            sel.failed.append(r)
            continue
        key = (r["method"], record_measure(r), sparsity_key(r.get("target_sparsity") or 0), r.get("seed"),
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
    kept = sorted(latest.values(), key=_run_order)
    sel.ok = [r for r in kept if r.get("status") == "ok"]
    sel.unreachable = [r for r in kept if r.get("status") == "unreachable"]
    sel.superseded.sort(key=_run_order)
    return sel


@dataclass
class CellStats:
    """One method at one target sparsity: accuracy over seeds, realised sparsities, budgets, failures."""
    method: str
    target: float
    values: list[float] = field(default_factory=list)
    seeds: list = field(default_factory=list)
    sparsity_prunable: list[float] = field(default_factory=list)
    sparsity_overall: list[float] = field(default_factory=list)
    realised: list[float] = field(default_factory=list)      # on the target's scale (the measure; old: own set)
    scales: set = field(default_factory=set)                 # target_scale of the ok runs
    failed: list[dict] = field(default_factory=list)
    unreachable: list[dict] = field(default_factory=list)
    off_target: list[dict] = field(default_factory=list)     # ok runs whose realised sparsity misses the target
    student_epochs: list[float] = field(default_factory=list)
    teacher_epochs: list[float] = field(default_factory=list)
    no_budget: int = 0                                       # ok runs without a recorded budget
    runs: list[dict] = field(default_factory=list)           # the ok runs

    @property
    def on_target(self) -> bool:
        """True unless one of the cell's ok runs missed the target (its realised sparsity is off by more than
        the tolerance, or an old record says ``sparsity_exact: false``)."""
        return not self.off_target

    @property
    def exact(self) -> bool:
        """Older name of ``on_target``."""
        return self.on_target

    @property
    def is_unreachable(self) -> bool:
        return bool(self.unreachable)

    @property
    def comparable(self) -> bool:
        """A value, every run on target, none unreachable: the only cells bolded or paired."""
        return self.n > 0 and self.on_target and not self.unreachable

    @property
    def max_sparsity(self) -> float | None:
        """The highest sparsity the method's set allows on the measure (unreachable records)."""
        vals = [v for r in self.unreachable if (v := _number(r.get("max_sparsity"))) is not None]
        return max(vals) if vals else None

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

    @property
    def realised_mean(self) -> float | None:
        """Mean realised sparsity of the cell's ok runs on the target's scale."""
        return _mean(self.realised)


def measured_sparsity(r: dict, key: str = "prunable") -> float | None:
    """A record's measured sparsity: top-level ``sparsity_<key>``, else ``sparsity[key]``."""
    v = r.get(f"sparsity_{key}")
    if v is None and isinstance(r.get("sparsity"), dict):
        v = r["sparsity"].get(key)
    try:
        return None if v is None else float(v)
    except (TypeError, ValueError):
        return None


def accuracy_cells(sel: Selection, accuracy: str = DEFAULT_ACCURACY, metric: str = "top1"
                   ) -> dict[tuple[str, float], CellStats]:
    """{(method, target): CellStats} over the ok, unreachable and failed runs of ``sel``."""
    fld = accuracy_field(accuracy, metric)
    cells: dict[tuple[str, float], CellStats] = {}

    def cell(r):
        key = (r["method"], sparsity_key(r.get("target_sparsity") or 0))
        return cells.setdefault(key, CellStats(*key))

    for r in sel.ok:
        c = cell(r)
        c.runs.append(r)
        v = r.get(fld)
        if v is not None:
            c.values.append(float(v))
            c.seeds.append(r.get("seed"))
        for key, dest in (("prunable", c.sparsity_prunable), ("overall", c.sparsity_overall)):
            v = measured_sparsity(r, key)
            if v is not None:
                dest.append(v)
        real = realised_sparsity(r)
        if real is not None:
            c.realised.append(real)
        c.scales.add(target_scale(r))
        if not on_target(r):
            c.off_target.append(r)
        student, teacher = record_budget(r)
        if student is None:
            c.no_budget += 1
        else:
            c.student_epochs.append(student)
            if teacher is not None:
                c.teacher_epochs.append(teacher)
    for r in sel.unreachable:
        cell(r).unreachable.append(r)
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


def match_reference(ref, measure: str | None, overall: dict[float, float | None]) -> float | None:
    """Our target that the published number ``ref`` compares with (``references.match_target``), given the
    measure our targets are on. A conv sparsity the source gives equals one of our targets only when our
    targets are on conv (or old records: conv for most methods); on any other measure the reference is
    matched by its overall sparsity against ``overall`` (our measured overall sparsity per target)."""

    if measure not in (None, "conv") and ref.sparsity_conv is not None:
        ref = replace(ref, sparsity_conv=None)
    return match_target(ref, overall)


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
    group: str                  # one of phases.GROUPS (an unknown declared group becomes "other")
    seconds: float
    reused: bool                # the artifact came from the checkpoint cache
    device: str                 # where the seconds were measured (the record's device when not recorded)
    declared: str | None = None  # the group as recorded; None for records without groups (inferred)

    @property
    def unknown_group(self) -> bool:
        return self.declared is not None and self.declared not in GROUPS

    def counts_on(self, device: str) -> bool:
        """False for a reused artifact made on another device than ``device``: its cost there is unknown.
        A phase that was not reused ran in this run, on the record's own device."""
        return not (self.reused and self.device != device)

    def other_label(self) -> str:
        """The name as the caption lists it under 'other' (with the unknown group it declared, if any)."""
        return f"{self.name} (group '{self.declared}')" if self.unknown_group else self.name


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
        """The student's cost: pretrain + score+prune + retrain + other (teacher excluded), minutes."""
        return math.fsum(self.minutes[g] or 0.0 for g in STUDENT_GROUPS)

    @property
    def teacher(self) -> float:
        return self.minutes["teacher"] or 0.0

    @property
    def with_teacher(self) -> float:
        """per run + teacher, minutes."""
        return self.per_run + self.teacher

    def left_out(self, with_teacher: bool = True) -> bool:
        """Whether a reused phase made on another device is missing from the sum."""
        groups = TIMED_GROUPS if with_teacher else STUDENT_GROUPS
        return any(self.excluded[g] for g in groups)


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


@dataclass
class LatencyRow:
    device: str
    method: str
    runs: int
    pretrain: float | None     # minutes per run (mean); None = no run has the group's phases
    teacher: float | None
    score_prune: float | None
    retrain: float | None
    per_run: float             # the student: pretrain + score+prune + retrain + other, minutes (mean over runs)
    per_run_teacher: float     # per run + teacher, minutes (mean over runs)
    grid_total: float          # sum over runs of (per run + teacher) x device_count: GPU-minutes
    ratio: float | None = None          # per_run_teacher / per_run_teacher of the reference method, same device
    ratio_student: float | None = None  # per_run / per_run of the reference method, same device
    other: float | None = None
    # attribute -> reused phases made on another device, left out of this row's minutes (all runs)
    excluded: dict[str, list[Phase]] = field(default_factory=dict)
    other_phases: list[str] = field(default_factory=list)   # phase names counted in 'other'

    def excluded_in(self, attr: str) -> list[Phase]:
        return self.excluded.get(attr, [])

    @property
    def excluded_student(self) -> list[Phase]:
        """Excluded phases that would have been part of 'per run'."""
        return [p for g in STUDENT_GROUPS for p in self.excluded_in(GROUP_ATTR[g])]

    @property
    def excluded_work(self) -> list[Phase]:
        """Excluded phases that would have been part of 'per run + teacher'."""
        return [p for g in TIMED_GROUPS for p in self.excluded_in(GROUP_ATTR[g])]

    @property
    def has_work(self) -> bool:
        """False for runs without a single timed phase: 'per run' does not apply to them."""
        return (any(getattr(self, GROUP_ATTR[g]) is not None for g in TIMED_GROUPS)
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

        grid = math.fsum(p.with_teacher * max(1, int(r.get("device_count") or 1)) for p, r in zip(per, rs))
        excluded = {GROUP_ATTR[g]: [ph for p in per for ph in p.excluded[g]] for g in TIMED_GROUPS}
        other = sorted({ph.other_label() for p in per for ph in p.other})
        rows.append(LatencyRow(device, method, len(rs), avg("pretrain"), avg("teacher"), avg("score+prune"),
                               avg("retrain"), _mean([p.per_run for p in per]), _mean([p.with_teacher for p in per]),
                               grid, other=avg("other"), excluded={k: v for k, v in excluded.items() if v},
                               other_phases=other))
    order = order_methods(m for _, m in groups)
    rows.sort(key=lambda x: (x.device, order.index(x.method)))
    for row in rows:
        ref = next((x for x in rows if x.device == row.device and x.method == ref_method), None)
        if ref is None or not row.has_work:
            continue
        if ref.per_run_teacher > 0:
            row.ratio = row.per_run_teacher / ref.per_run_teacher
        if ref.per_run > 0:
            row.ratio_student = row.per_run / ref.per_run
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
