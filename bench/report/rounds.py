"""The per-round figure of the iterative methods (COLT, EGP): accuracy and cumulative minutes against
the realised sparsity of each round, with the proposed method's one-shot runs for contrast.

Read from the records' ``rounds`` (design.md, "Result record"): per seed, the record of a method
with the most rounds gives the chain (every target of a seed shares it); rounds are averaged over
seeds by round number. The x axis is the overall sparsity (zeros / conv + linear + BN weights), the
one scale every method has and the accuracy figure's; each method prunes its own set (COLT the
convs, EGP the ReLU-paired convs), and ``<dataset>_rounds.csv`` lists every round under every
definition. Minutes are cumulative over the rounds, each counted at what it cost
when it was made; a round made on another device than the record's stops the minutes line there
(its cost on this device is unknown). Same conventions as figures.py: the same records give the
same bytes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ..store import atomic_write_bytes
from .aggregate import (ACCURACY_SHORT, DEFAULT_ACCURACY, DEFAULT_REF_METHODS, accuracy_field, measured_sparsity,
                        record_device, run_time, select)
from .plotting import FIG_FORMATS, REMAINING_TICKS, new_figure, save_figure, sparsity_axis
from .format import _csv_text, num
from .style import dataset_title, order_methods, style_for

COMMON = "overall"                    # the x axis: zeros / (conv + linear + BN weights)


@dataclass(frozen=True)
class RoundPoint:
    round: int
    seeds: int
    sparsity: float | None            # overall (the x axis)
    own: float | None                 # the method's own prunable set
    conv: float | None                # all conv weights
    top1: float | None
    minutes: float | None             # this round's
    cumulative: float | None          # rounds up to this one; None once a round's cost is unknown here


@dataclass(frozen=True)
class RoundSeries:
    method: str
    device: str
    prunable_set: str
    points: tuple[RoundPoint, ...]
    partitions: bool = False          # the rounds' accuracies are of models on class partitions (COLT)


@dataclass(frozen=True)
class RunPoint:
    """The runs of one method at one target: mean conv sparsity, accuracy and minutes per run."""
    method: str
    device: str
    sparsity: float
    top1: float
    minutes: float


def _mean(xs: list) -> float | None:
    xs = [x for x in xs if x is not None]
    return math.fsum(xs) / len(xs) if xs else None


def _sp(d: dict, key: str) -> float | None:
    v = (d.get("sparsity") or {}).get(key) if isinstance(d.get("sparsity"), dict) else None
    return None if v is None else float(v)


def round_series(runs: Iterable[dict], dataset: str, model: str | None = None,
                 accuracy: str = DEFAULT_ACCURACY) -> list[RoundSeries]:
    """One series per (method, device) of the records that carry rounds, in method order."""
    fld = accuracy_field(accuracy)
    chains: dict[tuple[str, str], dict] = {}           # (method, device) -> {seed: record with most rounds}
    for r in select(list(runs), dataset, model).ok:
        if not r.get("rounds"):
            continue
        seeds = chains.setdefault((r["method"], record_device(r)), {})
        best = seeds.get(r.get("seed"))
        if best is None or len(r["rounds"]) > len(best["rounds"]):
            seeds[r.get("seed")] = r
    out = []
    for (method, device), seeds in chains.items():
        per_round: dict[int, list[tuple[dict, float | None]]] = {}
        for r in seeds.values():
            cum = 0.0
            for x in sorted(r["rounds"], key=lambda x: int(x["round"])):
                mine = not x.get("reused") or str(x.get("device") or device) == device
                cum = cum + float(x.get("seconds") or 0.0) / 60 if (mine and cum is not None) else None
                per_round.setdefault(int(x["round"]), []).append((x, cum))
        points = []
        for k in sorted(per_round):
            xs = per_round[k]
            cums = [c for _, c in xs]
            points.append(RoundPoint(
                k, len(xs), _mean([_sp(x, COMMON) for x, _ in xs]), _mean([_sp(x, "prunable") for x, _ in xs]),
                _mean([_sp(x, "conv") for x, _ in xs]), _mean([x.get(fld) for x, _ in xs]),
                _mean([float(x.get("seconds") or 0.0) / 60 for x, _ in xs]),
                None if any(c is None for c in cums) else _mean(cums)))
        prunable_set = next(iter(seeds.values())).get("prunable_set") or "conv"
        partitions = any("partition_top1_final" in x for r in seeds.values() for x in r["rounds"])
        out.append(RoundSeries(method, device, prunable_set, tuple(p for p in points if p.sparsity is not None),
                               partitions))
    order = order_methods(s.method for s in out)
    return sorted(out, key=lambda s: (order.index(s.method), s.device))


def run_points(runs: Iterable[dict], dataset: str, methods: Iterable[str], model: str | None = None,
               accuracy: str = DEFAULT_ACCURACY) -> list[RunPoint]:
    """The runs of ``methods``, averaged per (method, device, target): measured overall sparsity, accuracy,
    minutes per run (as the latency table counts them)."""
    fld, wanted = accuracy_field(accuracy), set(methods)
    cells: dict[tuple[str, str, float], list[dict]] = {}
    for r in select(list(runs), dataset, model).ok:
        if r["method"] in wanted and r.get(fld) is not None and measured_sparsity(r, COMMON) is not None:
            cells.setdefault((r["method"], record_device(r), float(r.get("target_sparsity") or 0)), []).append(r)
    return [RunPoint(m, d, _mean([measured_sparsity(r, COMMON) for r in rs]), _mean([float(r[fld]) for r in rs]),
                     _mean([run_time(r).per_run for r in rs]))
            for (m, d, _), rs in sorted(cells.items(), key=lambda kv: (order_methods(wanted).index(kv[0][0]),
                                                                       kv[0][1], kv[0][2]))]


def _remaining(sparsity: float) -> float:
    return max(100.0 * (1.0 - sparsity), 1e-3)


def plot_rounds(runs: Iterable[dict], dataset: str, model: str | None = None,
                accuracy: str = DEFAULT_ACCURACY) -> Figure | None:
    """Accuracy (top) and cumulative minutes (bottom) per round of each iterative method against the
    round's realised sparsity; the runs of those methods (their final models) and of the proposed
    method (one-shot) as separate markers. None when no record has rounds."""
    runs = list(runs)
    series = round_series(runs, dataset, model, accuracy)
    if not series:
        return None
    finals = run_points(runs, dataset, {s.method for s in series}, model, accuracy)
    one_shot = run_points(runs, dataset, DEFAULT_REF_METHODS, model, accuracy)
    multi = len({s.device for s in series} | {p.device for p in finals + one_shot}) > 1

    def tag(method, device):
        return f"{method} ({device})" if multi else method

    fig = new_figure(figsize=(7.2, 7.2))
    acc, mins = fig.subplots(2, 1, sharex=True)
    handles, xs = [], set()
    for s in series:
        st = style_for(s.method)
        x = [_remaining(p.sparsity) for p in s.points]
        xs.update(x)
        if not s.partitions:     # a partition model's accuracy (COLT: 5 of 10 classes) is on another scale
            acc.plot(x, [p.top1 for p in s.points], color=st.colour, marker=st.marker, markersize=4, linewidth=1.3,
                     linestyle=st.linestyle)
        timed = [(xx, p.cumulative) for xx, p in zip(x, s.points) if p.cumulative is not None]
        mins.plot([a for a, _ in timed], [b for _, b in timed], color=st.colour, marker=st.marker, markersize=4,
                  linewidth=1.3, linestyle=st.linestyle)
        handles.append(Line2D([], [], color=st.colour, marker=st.marker, markersize=4, linewidth=1.3,
                              linestyle=st.linestyle, label=f"{tag(s.method, s.device)}: rounds (prunes "
                                                            f"{s.prunable_set})" + (
                                  "; minutes only: its rounds' accuracies are of class-partition models, not "
                                  "on this axis (rounds.csv has them)" if s.partitions else "")))
    for pts, label, face in ((finals, "runs (final model)", None), (one_shot, "one-shot runs", "white")):
        for m in order_methods(p.method for p in pts):
            st = style_for(m)
            for dev in sorted({p.device for p in pts if p.method == m}):
                mine = [p for p in pts if p.method == m and p.device == dev]
                x = [_remaining(p.sparsity) for p in mine]
                xs.update(x)
                kw = dict(linestyle="none", marker=st.marker, markersize=8, color=st.colour,
                          markeredgecolor=st.colour if face else "black", markerfacecolor=face or st.colour,
                          markeredgewidth=1.4, zorder=5)
                acc.plot(x, [p.top1 for p in mine], **kw)
                mins.plot(x, [p.minutes for p in mine], **kw)
                handles.append(Line2D([], [], **{k: v for k, v in kw.items() if k != "zorder"},
                                      label=f"{tag(m, dev)}: {label}"))
    if not xs:
        return None
    ticks = sorted((t for t in REMAINING_TICKS if min(xs) / 1.5 <= t <= max(xs) * 1.5), reverse=True) or sorted(xs)
    sparsity_axis([acc, mins], ticks, min(xs), max(xs), "realised sparsity, overall (%)")
    mins.set_xlabel("remaining weights (% of conv + linear + BN weights, log scale)")
    acc.set_ylabel(f"top-1 test accuracy (%),\n{ACCURACY_SHORT[accuracy]}")
    mins.set_ylabel("minutes (rounds: cumulative;\nruns: per run, as the latency table)")
    model_txt = f" ({model})" if model else ""
    fig.suptitle(f"{dataset_title(dataset)}{model_txt}: rounds of the iterative methods (mean over seeds)\n"
                 "a round's accuracy on all classes only (COLT's rounds train class-partition models: minutes only)",
                 fontsize=10)
    fig.legend(handles=handles, loc="outside lower center", ncols=2, fontsize=7)
    return fig


ROUNDS_CSV_COLUMNS = ["dataset", "model", "device", "method", "round", "seeds", "sparsity_conv", "prunable_set",
                      "sparsity_prunable", "sparsity_overall", "accuracy", "top1", "round_min", "cumulative_min"]


def rounds_csv(runs: Iterable[dict], dataset: str, model: str | None = None, accuracy: str = DEFAULT_ACCURACY) -> str:
    rows = [[dataset, model or "", s.device, s.method, str(p.round), str(p.seeds), num(p.conv), s.prunable_set,
             num(p.own), num(p.sparsity), accuracy, num(p.top1), num(p.minutes), num(p.cumulative)]
            for s in round_series(runs, dataset, model, accuracy) for p in s.points]
    return _csv_text(ROUNDS_CSV_COLUMNS, rows)


def write_rounds(runs: Sequence[dict], dataset: str, model: str | None, base: Path, accuracy: str = DEFAULT_ACCURACY,
                 formats: Sequence[str] = FIG_FORMATS) -> list[Path]:
    """``base.<fmt>`` (the figure) and ``base.csv`` (every round under every definition); nothing, and
    [] returned, when no record of ``dataset`` has rounds. Call inside ``plotting.figure_style()``."""
    fig = plot_rounds(runs, dataset, model, accuracy)
    if fig is None:
        return []
    paths = save_figure(fig, base, formats)
    csv_path = Path(f"{base}.csv")
    atomic_write_bytes(csv_path, rounds_csv(runs, dataset, model, accuracy).encode("utf-8"))
    return paths + [csv_path]
