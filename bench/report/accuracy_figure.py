"""The accuracy-vs-sparsity figure: every point at its runs' realised sparsity, one panel per family.

x is the realised sparsity on the records' own measure (``sparsity_realised`` on
``sparsity_measure``, overall by default: zeros / conv + linear + BN weights); records made before
the measure was declared are placed at their ``sparsity_overall``; a folder mixing measures is drawn
on overall, which every record carries. A cell whose runs missed their target
(``sparsity_on_target`` false; old records: ``sparsity_exact`` false) is a hollow marker off the
method's line, never an ordinary point; an ``unreachable`` cell has no accuracy and is named in the
notes under the figure. With ~20 methods one axes cannot be read, so the methods are split by
family (style.family_of): one panel per family present, each beside the proposed method (tgp,
tgp-kd and its temperature labels, drawn alike in every panel) and the dense line. The paper's
points are stars where they can be placed (same model, a sparsity on the axis measure); the notes
say why when they are not drawn.
"""
from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedLocator, NullLocator

from .accuracy_table import data_sizes
from .aggregate import (ACCURACY_SHORT, DEFAULT_ACCURACY, accuracy_field, budget_basis, mean_std, measured_sparsity,
                        models_of, on_target, select, sparsity_key)
from .format import pct
from .plotting import REMAINING_TICKS, new_figure
from .references import Reference, for_dataset
from .style import FAMILIES, PAPER_MARKER, dataset_title, family_of, order_methods, style_for

MEASURE_WORDS = {"overall": "conv + linear + BN weights", "conv": "conv weights", "prunable": "each method's own set",
                 "conv+linear": "conv + linear weights", "conv-noshortcut": "conv weights without shortcuts"}
FAMILY_TITLES = {"proposed": "the proposed method", "references": "reference methods", "controls": "controls",
                 "self-distillation": "self-distillation rows", "iterative": "iterative baselines",
                 "other": "other methods"}


@dataclass(frozen=True)
class AccuracyPoint:
    """The runs of one method at one target that are on target (or, apart, those that are not)."""
    method: str
    target: float                 # the grid row (fraction, on the grid's measure)
    sparsity: float               # realised, on the figure's measure: mean over the runs
    mean: float
    std: float                    # 0 when n = 1
    n: int
    on_target: bool               # False: realised outside the tolerance of the target (hollow, unconnected)

    @property
    def remaining(self) -> float:
        """Remaining weights, percent of the measure: the figure's x."""
        return 100.0 * (1.0 - self.sparsity)


@dataclass(frozen=True)
class Unreachable:
    method: str
    target: float
    max_sparsity: float | None
    measure: str


@dataclass
class AccuracyData:
    dataset: str
    model: str
    accuracy: str
    measure: str                                  # the x axis: a sparsity_stats key
    points: dict[str, list[AccuracyPoint]]        # method -> points by increasing sparsity (dense apart)
    dense: tuple[float, float, int] | None        # mean, std (0 for n = 1), n
    targets: list[float]
    on_measure: bool                              # every pruned record's targets are on ``measure``
    unreachable: list[Unreachable] = field(default_factory=list)
    unplaced: list[str] = field(default_factory=list)   # 'method at target' without a measured sparsity
    labels: dict[str, str] = field(default_factory=dict)   # method -> legend label (tgp-kd: its temperature)
    context: str = ""                             # the data, the teacher and the budget basis, for the title

    @property
    def seeds(self) -> int:
        """The grid's seeds per cell: the most any point (or the dense line) has."""
        ns = [p.n for pts in self.points.values() for p in pts] + ([self.dense[2]] if self.dense else [])
        return max(ns, default=0)


def _label(method: str, recs: list[dict]) -> str:
    """A method's legend label; a distillation label without its temperature gets it (T=3), so that two
    folders whose plain tgp-kd differ in T are never read as one."""
    temps = {((r.get("config") or {}).get("kd") or {}).get("temperature") for r in recs}
    temps.discard(None)
    if method.startswith("tgp-kd") and "-T" not in method and len(temps) == 1:
        return f"{method} (T={float(temps.pop()):g})"
    return method


def figure_context(recs: list[dict]) -> str:
    """'5,000 train / 10,000 test images; teacher resnet_small on 50,000 images, 84.50%; budgets: equal'."""
    parts = ["; ".join(data_sizes(recs))] if data_sizes(recs) else []
    teachers = {(t.get("arch"), t.get("train_images"), t.get("top1")) for r in recs
                if isinstance(t := r.get("teacher"), dict) and t.get("top1") is not None}
    for arch, images, top1 in sorted(teachers, key=str):
        parts.append(f"teacher {arch}" + (f" on {int(images):,} images" if images else "") + f", {float(top1):.2f}%")
    bases = sorted({b for r in recs if (b := budget_basis(r))})
    if bases:
        parts.append(f"budget basis: {', '.join(bases)}")
    return "; ".join(parts)


def axis_measure(records: Iterable[dict]) -> str:
    """The measure the x axis shows: the one every pruned record declares, else overall (every record has it)."""
    declared = {r.get("sparsity_measure") for r in records if float(r.get("target_sparsity") or 0) > 0}
    return next(iter(declared)) if len(declared) == 1 and None not in declared else "overall"


def realised(r: dict, measure: str) -> float | None:
    """A record's realised sparsity on ``measure`` (0 for a method that does not prune)."""
    if r.get("sparsity_measure") == measure and r.get("sparsity_realised") is not None:
        return float(r["sparsity_realised"])
    v = measured_sparsity(r, measure)
    if v is None and not float(r.get("target_sparsity") or 0):
        return 0.0
    return v


def accuracy_points(runs: Iterable[dict], dataset: str, model: str | None = None,
                    accuracy: str = DEFAULT_ACCURACY) -> AccuracyData:
    """The figure's data: per method, one point per (target, on target or not) at the runs' mean realised sparsity."""
    runs = list(runs)
    if model is None:
        models = models_of(runs, dataset)
        model = models[0] if len(models) == 1 else None
    sel = select(runs, dataset, model)
    fld = accuracy_field(accuracy)
    measure = axis_measure(sel.ok + sel.failed + sel.unreachable)
    pruned = [r for r in sel.ok + sel.failed + sel.unreachable if float(r.get("target_sparsity") or 0) > 0]
    groups: dict[tuple[str, float, bool], list[dict]] = {}
    for r in sel.ok:
        if r.get(fld) is not None:
            groups.setdefault((r["method"], sparsity_key(r.get("target_sparsity") or 0), on_target(r)), []).append(r)
    data = AccuracyData(dataset, model or "", accuracy, measure, {}, None,
                        sorted({k[1] for k in groups}), bool(pruned) and all(r.get("sparsity_measure") == measure
                                                                             for r in pruned))
    by_method: dict[str, list[dict]] = {}
    for (m, _, _), rs in groups.items():
        by_method.setdefault(m, []).extend(rs)
    data.labels = {m: _label(m, rs) for m, rs in by_method.items()}
    data.context = figure_context(sel.ok)
    data.targets = sorted(set(data.targets) | {sparsity_key(r.get("target_sparsity") or 0) for r in pruned})
    for (m, tgt, on), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1], not kv[0][2])):
        mean, std, n = mean_std(float(r[fld]) for r in rs)
        if m == "dense" and tgt == 0:
            data.dense = (mean, std or 0.0, n)
            continue
        xs = [realised(r, measure) for r in rs]
        if any(x is None for x in xs):
            data.unplaced.append(f"{m} at {pct(tgt)}%")
            continue
        data.points.setdefault(m, []).append(AccuracyPoint(m, tgt, math.fsum(xs) / len(xs), mean, std or 0.0, n, on))
    for m in data.points:
        data.points[m].sort(key=lambda p: (p.sparsity, p.target))
    seen = set()
    for r in sel.unreachable:
        key = (r.get("method"), sparsity_key(r.get("target_sparsity") or 0))
        if key not in seen:
            seen.add(key)
            mx = r.get("max_sparsity")
            data.unreachable.append(Unreachable(str(key[0]), key[1], None if mx is None else float(mx),
                                                str(r.get("sparsity_measure") or measure)))
    return data


def panel_families(methods: Iterable[str]) -> list[str]:
    """The panels: one per family present besides the proposed method (which every panel shows)."""
    present = {family_of(m) for m in methods}
    return [f for f in FAMILIES if f != "proposed" and f in present] or ["proposed"]


# --------------------------------------------------------------------------- paper points

def paper_points(references: Sequence[Reference], d: AccuracyData) -> tuple[list[tuple[Reference, float]], str]:
    """(the paper's top-1 rows that can be drawn with their x in remaining %, a note on the ones that cannot)."""
    refs = for_dataset(references, d.dataset, top1=True)
    if not refs:
        return [], f"★ paper-reported: none for {dataset_title(d.dataset)} in the reference files"
    drawn, other_model, no_measure = [], set(), 0
    for ref in refs:
        if ref.model and d.model and ref.model != d.model:
            other_model.add(ref.model)
            continue
        sp = {"overall": ref.sparsity_overall, "conv": ref.sparsity_conv}.get(d.measure)
        if sp is None:
            no_measure += 1
            continue
        drawn.append((ref, 100.0 - sp))
    why = []
    if other_model:
        why.append(f"{len(refs) - len(drawn) - no_measure} of another model ({', '.join(sorted(other_model))}; "
                   f"these runs: {d.model})")
    if no_measure:
        why.append(f"{no_measure} without a sparsity on the {d.measure} measure")
    note = f"★ paper-reported points not drawn: {'; '.join(why)}" if why else ""
    return drawn, note


# --------------------------------------------------------------------------- drawing

def _ticks(d: AccuracyData, lo: float, hi: float) -> list[float]:
    """Remaining-% ticks: the targets when they are on the axis measure, else round numbers; never crowded."""
    if d.on_measure:
        cand = sorted({round(100 * (1 - t), 6) for t in d.targets} | ({100.0} if hi >= 99.99 else set()), reverse=True)
    else:
        cand = [t for t in REMAINING_TICKS if lo / 1.3 <= t <= hi * 1.3]
    out: list[float] = []
    for t in cand:            # keep ticks at least 0.09 decades apart (labels would overlap)
        if not out or math.log10(out[-1]) - math.log10(t) >= 0.09:
            out.append(t)
    return out or [hi]


# Dodge: the k-th series of a panel is shifted by this many decades times its offset from the middle, so
# that markers at one target do not hide each other (the sparsity tick stays at the target).
DODGE_DECADES = 0.012


def _draw_series(ax, method: str, pts: list[AccuracyPoint], label: str, seeds: int, shift: float = 1.0) -> Line2D:
    """The method's on-target points joined by its line (x multiplied by ``shift``, the dodge), off-target
    ones hollow and apart; a point with fewer seeds than the grid's is drawn small with a dotted error bar
    and labelled with its n."""
    st = style_for(method)
    on = sorted((p for p in pts if p.on_target), key=lambda p: -p.remaining)
    off = [p for p in pts if not p.on_target]
    if on:
        ax.plot([p.remaining * shift for p in on], [p.mean for p in on], color=st.colour, linestyle=st.linestyle,
                linewidth=1.5, zorder=3)
    for p in on + off:
        few = p.n < seeds
        bars = ax.errorbar([p.remaining * shift], [p.mean], yerr=[p.std], color=st.colour, linestyle="none",
                           marker=st.marker, markersize=4 if few else 6 if p.on_target else 7, capsize=2.5,
                           elinewidth=0.9, markerfacecolor=st.colour if p.on_target else "white",
                           markeredgewidth=1.5 if not p.on_target else 1.0, zorder=4)
        if few:
            for line in bars.lines[2]:
                line.set_linestyle(":")
            ax.annotate(f"n={p.n}", (p.remaining * shift, p.mean), textcoords="offset points", xytext=(4, 4),
                        fontsize=6, color=st.colour)
    return Line2D([], [], color=st.colour, linestyle=st.linestyle, marker=st.marker, linewidth=1.5, markersize=6,
                  label=label, markerfacecolor=st.colour if on else "white")


def plot_accuracy(runs: Iterable[dict], dataset: str, model: str | None = None, accuracy: str = DEFAULT_ACCURACY,
                  references: Sequence[Reference] = ()) -> Figure:
    """Top-1 against realised sparsity (log of the remaining weights, the high-sparsity end spread out), one
    panel per method family beside the proposed method; error bars: std over seeds; notes under the panels."""
    d = accuracy_points(runs, dataset, model, accuracy)
    methods = order_methods(d.points)
    panels = panel_families(methods)
    proposed = [m for m in methods if family_of(m) == "proposed"]
    paper, paper_note = paper_points(references, d)
    xs = ([p.remaining for pts in d.points.values() for p in pts] + [x for _, x in paper]
          + [100.0 * (1.0 - t) for t in d.targets if t > 0])        # the axis spans every target run
    ncols = 1 if len(panels) == 1 else 2
    nrows = math.ceil(len(panels) / ncols)
    fig = new_figure(figsize=(6.4 * ncols, 3.5 * nrows + 1.2))
    grid = fig.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False)
    axes = [ax for row in grid for ax in row]
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    for i, (ax, fam) in enumerate(zip(axes, panels)):
        if i + ncols >= len(panels):          # the lowest panel of its column: it carries the x labels
            ax.xaxis.set_tick_params(labelbottom=True)
            ax.set_xlabel(f"remaining weights (% of {MEASURE_WORDS.get(d.measure, d.measure)}, log scale)",
                          fontsize=8)
        handles = []
        if d.dense is not None:
            mean, std, n = d.dense
            ax.axhline(mean, color=style_for("dense").colour, linestyle="--", linewidth=1.1, zorder=1)
            if std:
                ax.axhspan(mean - std, mean + std, color=style_for("dense").colour, alpha=0.10, linewidth=0)
            handles.append(Line2D([], [], color=style_for("dense").colour, linestyle="--", label=f"dense ({mean:.2f})"))
        shown = proposed + ([m for m in methods if family_of(m) == fam] if fam != "proposed" else [])
        mid = (len(shown) - 1) / 2
        handles += [_draw_series(ax, m, d.points[m], d.labels.get(m, m), d.seeds,
                                 10 ** (DODGE_DECADES * (k - mid))) for k, m in enumerate(shown)]
        for ref, x in paper:
            ax.scatter([x], [ref.top1], marker=PAPER_MARKER, s=170, color=style_for(ref.method).colour,
                       edgecolors="black", linewidths=0.8, zorder=5)
        if paper:
            models = ", ".join(sorted({r.model for r, _ in paper if r.model})) or "model not stated"
            handles.append(Line2D([], [], marker=PAPER_MARKER, color="#bbbbbb", markeredgecolor="black",
                                  markersize=11, linestyle="none", label=f"paper-reported ({models})"))
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0, fontsize=7,
                  handlelength=2.6)
        ax.set_title(FAMILY_TITLES[fam] + ("" if fam == "proposed" else " beside the proposed method"), fontsize=9)
    if xs:
        lo, hi = min(xs), max(xs)
        ticks = _ticks(d, lo, hi)
        for i, ax in enumerate(axes[:len(panels)]):
            ax.set_xscale("log")
            ax.set_xlim(hi * 1.3, lo / 1.3)
            ax.xaxis.set_major_locator(FixedLocator(ticks))
            ax.xaxis.set_minor_locator(NullLocator())
            ax.set_xticks(ticks, labels=[f"{t:.3g}" for t in ticks])
            if i < ncols:                     # the top row: the sparsity itself
                top = ax.secondary_xaxis("top")
                top.set_xticks(ticks, labels=[f"{100 - t:.4g}" for t in ticks])
                top.xaxis.set_minor_locator(NullLocator())
                top.set_xlabel(f"realised sparsity, {d.measure} (%)", fontsize=8)
    fig.supylabel(f"top-1 test accuracy (%), {ACCURACY_SHORT[accuracy]}", fontsize=9)
    model_txt = f" ({d.model})" if d.model else ""
    # the context (data, teacher, budget basis) is long: wrapped to the figure's width, never cut off
    width = int(fig.get_figwidth() * 72 / (0.6 * 9))           # characters of ~9 pt text that fit
    context = "".join(f"\n{line}" for line in textwrap.wrap(d.context, width)) if d.context else ""
    fig.suptitle(f"{dataset_title(dataset)}{model_txt}: accuracy vs realised sparsity (mean ± std over seeds)"
                 f"{context}", fontsize=10)
    notes = _notes(d, paper_note)
    if notes:
        fig.legend(handles=notes, loc="outside lower center", fontsize=7, handlelength=1.2, frameon=False)
    return fig


def _notes(d: AccuracyData, paper_note: str) -> list[Line2D]:
    """Legend entries under the panels: what is hollow, what is not drawn and why."""
    def text(s, **kw):
        return Line2D([], [], linestyle="none", label=textwrap.fill(s, 150), **kw)

    out = []
    few = [f"{p.method} at {pct(p.target)}% (n={p.n})" for m in order_methods(d.points) for p in d.points[m]
           if p.n < d.seeds]
    if few:
        out.append(text(f"small marker, dotted bar, labelled n: fewer seeds than the grid's {d.seeds}: "
                        + ", ".join(few), marker="o", color="#555555", markersize=3))
    out.append(text(f"markers of one target are dodged sideways by up to ±{DODGE_DECADES * 100:g}% of a decade "
                    f"(their sparsity is the tick's)"))
    off = [f"{p.method} at {pct(p.target)}%" for m in order_methods(d.points) for p in d.points[m] if not p.on_target]
    if off:
        out.append(text("hollow, off the line: realised sparsity not on its target (outside 0.05 pp; records "
                        "before the tolerance: sparsity_exact false): " + ", ".join(off), marker="o",
                        color="#555555", markerfacecolor="white"))
    if d.unreachable:
        cells = [f"{u.method} at {pct(u.target)}%" + (f" (at most {pct(u.max_sparsity)}% {u.measure})"
                                                      if u.max_sparsity is not None else "") for u in d.unreachable]
        out.append(text("not drawn, unreachable (the method's own prunable set cannot reach the target): " +
                        ", ".join(cells)))
    if d.unplaced:
        out.append(text("not drawn, no measured sparsity in the records: " + ", ".join(d.unplaced)))
    if paper_note:
        out.append(text(paper_note))
    return out
