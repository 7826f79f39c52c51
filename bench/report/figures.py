"""Figures from stored results: accuracy vs sparsity, per-layer density, latency bars.

Every figure is drawn on a bare ``matplotlib.figure.Figure`` (Agg canvas, no pyplot state), under
one rc context: seaborn's whitegrid/paper style, DejaVu Sans (shipped with matplotlib, so the
output does not depend on the fonts of the machine), TrueType (Type 42) fonts in PDF/PS, a fixed
SVG hash salt, and no creation dates or software versions in the files. Rendering the same
results twice gives the same bytes.
"""
from __future__ import annotations

import io
import re
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import matplotlib

matplotlib.use("Agg")

from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import FixedLocator, NullLocator  # noqa: E402

from ..store import atomic_write_bytes, load_runs  # noqa: E402
from .accuracy_table import AccuracyTable, build_accuracy_table  # noqa: E402
from .aggregate import ACCURACY_SHORT, DEFAULT_ACCURACY, datasets_of, models_of, select, sparsity_key  # noqa: E402
from .format import pct  # noqa: E402
from .latency_table import build_latency_table  # noqa: E402
from .references import Reference, default_reference_dir, for_dataset, load_references  # noqa: E402
from .style import PAPER_MARKER, dataset_title, order_methods, style_for  # noqa: E402

FIG_FORMATS = ("png", "pdf")
DPI = 150
SAVE_METADATA = {
    "png": {"Software": None},
    "pdf": {"Creator": None, "Producer": None, "CreationDate": None, "ModDate": None},
    "svg": {"Creator": None, "Date": None},
}
PHASE_LOOK = (("teacher", "teacher", "//"), ("score_prune", "score+prune", ".."), ("retrain", "retrain", ""),
              ("other", "other", "xx"))


def _rc() -> dict:
    import seaborn as sns

    rc = {}
    rc.update(sns.axes_style("whitegrid"))
    rc.update(sns.plotting_context("paper", font_scale=1.1))
    rc.update({
        "font.family": "sans-serif", "font.sans-serif": ["DejaVu Sans"], "mathtext.fontset": "dejavusans",
        "pdf.fonttype": 42, "ps.fonttype": 42, "svg.fonttype": "path", "svg.hashsalt": "bench-report",
        "pdf.compression": 6, "savefig.dpi": DPI, "figure.dpi": 100, "path.simplify": True,
        "axes.unicode_minus": True,
    })
    return rc


@contextmanager
def figure_style():
    with matplotlib.rc_context(_rc()):
        yield


def new_figure(**kw) -> Figure:
    fig = Figure(layout="constrained", **kw)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, base: Path, formats: Sequence[str] = FIG_FORMATS) -> list[Path]:
    """Write ``base.<fmt>`` for each format, without dates or versions in the file, and return the paths."""
    out = []
    for f in formats:
        if f not in SAVE_METADATA:
            raise ValueError(f"unknown figure format {f!r}; allowed: {', '.join(SAVE_METADATA)}")
        buf = io.BytesIO()
        fig.savefig(buf, format=f, dpi=DPI, metadata=SAVE_METADATA[f])
        path = Path(f"{base}.{f}")
        atomic_write_bytes(path, buf.getvalue())
        out.append(path)
    return out


def _natural(name: str) -> list:
    return [int(s) if s.isdigit() else s for s in re.split(r"(\d+)", name)]


def _paper_x(ref: Reference) -> float:
    """Remaining weights (%) of a reference point: over the conv set when known, else its own figure."""
    sp = ref.sparsity_conv if ref.sparsity_conv is not None else ref.sparsity
    return 100.0 - sp


def _fmt_tick(x: float) -> str:
    return f"{x:.3g}"


def sparsity_axis(axes, ticks: list[float], lo: float, hi: float, top_label: str):
    """Log x-axes of remaining weights (%) on ``axes`` (the last one labelled), inverted so that
    sparsity grows to the right, with a secondary top axis on ``axes[0]`` giving the sparsity."""
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlim(hi * 1.25, lo / 1.25)
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.xaxis.set_minor_locator(NullLocator())
    axes[-1].set_xticks(ticks, labels=[_fmt_tick(v) for v in ticks])
    top = axes[0].secondary_xaxis("top")
    top.set_xticks(ticks, labels=[_fmt_tick(100 - v) for v in ticks])
    top.xaxis.set_minor_locator(NullLocator())
    top.set_xlabel(top_label)


# --------------------------------------------------------------------------- accuracy vs sparsity

@dataclass(frozen=True)
class AccuracyPoint:
    """One method at one target, placed where its own runs are: x is its measured sparsity, not the target."""
    method: str
    target: float                 # the row it belongs to (fraction)
    sparsity: float               # measured prunable sparsity, mean over the cell's runs (target if none recorded)
    mean: float
    std: float                    # 0 when n = 1
    n: int
    exact: bool                   # False: realised sparsity differs from the target by design (hollow marker)
    measured: bool                # False: no measured sparsity in the records, placed at the target

    @property
    def remaining(self) -> float:
        """Remaining weights of the prunable set, percent: the figure's x."""
        return 100.0 * (1.0 - self.sparsity)


def accuracy_points(t: AccuracyTable) -> dict[str, list[AccuracyPoint]]:
    """{method: points in increasing sparsity} of every cell with a value (dense excluded). Each point sits at
    the method's own mean measured prunable sparsity for that cell (the figure's axis), never at the target."""
    out: dict[str, list[AccuracyPoint]] = {}
    for m in t.methods:
        pts = []
        for tgt in t.targets:
            c = t.cell(m, tgt)
            if c is None or c.n == 0:
                continue
            sp = c.prunable_mean
            pts.append(AccuracyPoint(m, tgt, tgt if sp is None else sp, c.mean, c.std or 0.0, c.n, c.exact,
                                     sp is not None))
        if pts:
            out[m] = sorted(pts, key=lambda p: (p.sparsity, p.target))
    return out


def plot_accuracy(runs: Iterable[dict], dataset: str, model: str | None = None, accuracy: str = DEFAULT_ACCURACY,
                  references: Sequence[Reference] = ()) -> Figure:
    """Accuracy vs remaining weights (log x, the high-sparsity end spread out), one line per method
    (band and error bars = std over seeds), dense as a horizontal line, paper points as stars. Each point
    sits at its own measured prunable sparsity (``accuracy_points``); hollow markers: the method's
    realised sparsity differs from its target by design."""
    t = build_accuracy_table(runs, dataset, model, accuracy, references)
    fig = new_figure(figsize=(7.2, 4.2))
    ax = fig.add_subplot()
    handles, xs, xlim = [], set(), set()
    any_inexact = False
    for m, pts in accuracy_points(t).items():
        st = style_for(m)
        pts = sorted(pts, key=lambda p: -p.remaining)
        x, y, s = [p.remaining for p in pts], [p.mean for p in pts], [p.std for p in pts]
        xs.update(x)
        ax.fill_between(x, [a - b for a, b in zip(y, s)], [a + b for a, b in zip(y, s)], color=st.colour,
                        alpha=0.18, linewidth=0)
        ax.errorbar(x, y, yerr=s, color=st.colour, marker="none", linewidth=1.6, capsize=3)
        for p in pts:   # filled marker: realised sparsity = target; hollow: it differs by design
            ax.plot([p.remaining], [p.mean], linestyle="none", marker=st.marker, markersize=6, color=st.colour,
                    markerfacecolor=st.colour if p.exact else "white", markeredgewidth=1.4, zorder=4)
        any_inexact = any_inexact or not all(p.exact for p in pts)
        handles.append(Line2D([], [], color=st.colour, marker=st.marker, linewidth=1.6, label=m,
                              markerfacecolor=st.colour if all(p.exact for p in pts) else "white"))
    if t.dense is not None and t.dense.n > 0:
        st = style_for("dense")
        mean, std = t.dense.mean, t.dense.std or 0.0
        ax.axhline(mean, color=st.colour, linestyle="--", linewidth=1.2)
        if std:
            ax.axhspan(mean - std, mean + std, color=st.colour, alpha=0.12, linewidth=0)
        handles.append(Line2D([], [], color=st.colour, linestyle="--", label=f"dense ({mean:.2f})"))
    # Paper points whose sparsity can be placed on our axis (conv, or overall as an approximation).
    paper = [r for r in for_dataset(references, dataset, top1=True)
             if not (r.model and t.model and r.model != t.model)
             and (r.sparsity_conv is not None or r.sparsity_overall is not None) and _paper_x(r) > 0]
    for ref in paper:
        x = _paper_x(ref)
        xlim.add(x)
        ax.scatter([x], [ref.top1], marker=PAPER_MARKER, s=150, color=style_for(ref.method).colour,
                   edgecolors="black", linewidths=0.8, zorder=5)
    if paper:
        handles.append(Line2D([], [], marker=PAPER_MARKER, color="#bbbbbb", markeredgecolor="black", markersize=11,
                              linestyle="none", label="paper-reported"))
    if any_inexact:
        handles.append(Line2D([], [], marker="o", color="#777777", markerfacecolor="white", linestyle="none",
                              label="hollow: realised\nsparsity ≠ target"))
    if xs or xlim:
        # Ticks at the targets (points sit at their measured sparsity, on or beside them).
        ticks = sorted({100 * (1 - tgt) for tgt in t.targets if tgt < 1} or xs or xlim)
        sparsity_axis([ax], ticks, min(xs | xlim), max(xs | xlim), "sparsity of the prunable set (%)")
    ax.set_xlabel("remaining weights in the prunable set (%, log scale)")
    ax.set_ylabel(f"top-1 test accuracy (%),\n{ACCURACY_SHORT[accuracy]}")
    model_txt = f" ({t.model})" if t.model else ""
    ax.set_title(f"{dataset_title(dataset)}{model_txt}: accuracy vs sparsity\n(mean ± std over seeds)")
    if handles:
        fig.legend(handles=handles, loc="outside right upper", fontsize=8)
    return fig


# --------------------------------------------------------------------------- per-layer density

def density_targets(runs: Iterable[dict], dataset: str, model: str | None = None) -> list[float]:
    sel = select(list(runs), dataset, model)
    return sorted({sparsity_key(r.get("target_sparsity") or 0) for r in sel.ok
                   if r.get("method") != "dense" and r.get("layer_density")})


def plot_density(runs: Iterable[dict], dataset: str, model: str | None = None,
                 sparsity: float | None = None) -> Figure | None:
    """Per-layer density (fraction of weights kept) of each method's pruned network at one target
    sparsity (default: the highest present), averaged over seeds. None when there is nothing to draw."""
    runs = list(runs)
    targets = density_targets(runs, dataset, model)
    if not targets:
        return None
    if sparsity is None:
        target = targets[-1]
    else:
        target = sparsity_key(sparsity / 100 if sparsity > 1 else sparsity)
        if target not in targets:
            raise ValueError(f"{dataset}: no run with a layer density at sparsity {sparsity}; present: "
                             f"{', '.join(f'{t:g}' for t in targets)}")
    if model is None:
        models = models_of(runs, dataset)
        model = models[0] if len(models) == 1 else None
    sel = select(runs, dataset, model)
    chosen = [r for r in sel.ok if r.get("method") != "dense" and r.get("layer_density")
              and sparsity_key(r.get("target_sparsity") or 0) == target]
    layers = sorted({k for r in chosen for k in r["layer_density"]}, key=_natural)
    overall = [float(r["sparsity_overall"]) for r in chosen if r.get("sparsity_overall") is not None]
    fig = new_figure(figsize=(max(6.0, 0.32 * len(layers) + 2.5), 4.2))
    ax = fig.add_subplot()
    series = []
    for m in order_methods(r["method"] for r in chosen):
        rs = [r for r in chosen if r["method"] == m]
        ys = []
        for layer in layers:
            vals = [float(r["layer_density"][layer]) for r in rs if layer in r["layer_density"]]
            ys.append(sum(vals) / len(vals) if vals else float("nan"))
        series.append((m, len(rs), ys))
    positive = [y for _, _, ys in series for y in ys if y == y and y > 0]
    log = bool(positive) and min(positive) < 0.1
    floor = min(positive) / 3 if log else 0.0
    any_zero = False
    for m, n, ys in series:
        st = style_for(m)
        # On a log axis a fully pruned layer (density 0) is drawn at the floor with an x.
        plot_y = [(floor if log and y == 0 else y) if y == y else float("nan") for y in ys]
        ax.plot(range(len(layers)), plot_y, color=st.colour, marker=st.marker, markersize=5, linewidth=1.3,
                label=f"{m} (n={n})")
        zeros = [i for i, y in enumerate(ys) if y == 0]
        if zeros and log:
            any_zero = True
            ax.scatter(zeros, [floor] * len(zeros), marker="x", s=60, color=st.colour, linewidths=2, zorder=5)
    if log:
        ax.set_yscale("log")
    if any_zero:
        ax.scatter([], [], marker="x", color="black", label="0: layer fully pruned")
    ax.set_xticks(range(len(layers)), labels=[re.sub(r"\.weight$", "", n) for n in layers], rotation=90, fontsize=6)
    ax.set_xlabel("prunable tensor (network order)")
    ax.set_ylabel("density (fraction of weights kept)")
    ov = f" ({pct(sum(overall) / len(overall))}% overall)" if overall else ""
    model_txt = f" ({sel.model})" if sel.model else ""
    ax.set_title(f"{dataset_title(dataset)}{model_txt}: per-layer density\n"
                 f"at {pct(target)}% sparsity of the prunable set{ov}")
    ax.legend(fontsize=8, loc="best")
    return fig


# --------------------------------------------------------------------------- latency bars

def plot_latency(runs: Iterable[dict], dataset: str, model: str | None = None, references: Sequence[Reference] = (),
                 ref_method: str | Sequence[str] | None = None) -> Figure | None:
    """Minutes per run per method, stacked by phase group, one panel per GPU model (never pooled); paper
    minutes as stars; a method marked ‡ leaves out reused phases made on another device. None when no
    run has timed phases beyond pretrain."""
    lt = build_latency_table(runs, dataset, model, references, ref_method)
    rows = [r for r in lt.rows if r.per_run > 0]
    if not rows:
        return None
    devices = sorted({r.device for r in rows})
    fig = new_figure(figsize=(max(6.0, 3.6 * len(devices) + 1.5), 4.2))
    axes = fig.subplots(1, len(devices), squeeze=False)[0]
    any_paper = any_excluded = False
    for ax, dev in zip(axes, devices):
        drow = [r for r in rows if r.device == dev]
        for i, r in enumerate(drow):
            st = style_for(r.method)
            bottom = 0.0
            for key, _, hatch in PHASE_LOOK:
                v = getattr(r, key) or 0.0
                if v > 0:
                    ax.bar(i, v, bottom=bottom, color=st.colour, alpha=0.85, hatch=hatch, edgecolor="black",
                           linewidth=0.5, width=0.7)
                bottom += v
        for pl in lt.paper:
            if pl.device == dev and pl.ref.minutes is not None:
                idx = [r.method for r in drow].index(pl.method) if pl.method in [r.method for r in drow] else None
                if idx is not None:
                    any_paper = True
                    ax.scatter([idx], [pl.ref.minutes], marker=PAPER_MARKER, s=150, color=style_for(pl.method).colour,
                               edgecolors="black", linewidths=0.8, zorder=5)
        # ‡: the bar leaves out reused phases made on another device (their cost here is unknown).
        ax.set_xticks(range(len(drow)), labels=[r.method + ("‡" if r.excluded_work else "") for r in drow],
                      rotation=30, ha="right")
        any_excluded = any_excluded or any(r.excluded_work for r in drow)
        ax.set_title(dev, fontsize=9)
    axes[0].set_ylabel("minutes per run\n(pretrain, eval excluded)")
    # 'other' appears in the legend only when some bar has it.
    handles = [Patch(facecolor="#cccccc", edgecolor="black", hatch=h, label=lab) for key, lab, h in PHASE_LOOK
               if key != "other" or any((r.other or 0) > 0 for r in rows)]
    if any_paper:
        handles.append(Line2D([], [], marker=PAPER_MARKER, color="#bbbbbb", markeredgecolor="black", markersize=11,
                              linestyle="none", label="paper-reported (GPU unknown)"))
    if any_excluded:
        handles.append(Patch(facecolor="none", edgecolor="none",
                             label="‡: leaves out cached phases\nmade on another device"))
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 3), fontsize=8)
    model_txt = f" ({lt.model})" if lt.model else ""
    fig.suptitle(f"{dataset_title(dataset)}{model_txt}: training time per run by phase")
    return fig


# --------------------------------------------------------------------------- files

def _stem(dataset: str, model: str, multi: bool, kind: str) -> str:
    return f"{dataset}_{model}_{kind}" if multi and model else f"{dataset}_{kind}"


def _warn(msg: str) -> None:
    print(f"warning: {msg}", file=sys.stderr)


def render_dataset_figures(runs: list[dict], dataset: str, plots_dir: Path, *, accuracy: str = DEFAULT_ACCURACY,
                           sparsity: float | None = None, references: Sequence[Reference] = (),
                           ref_method: str | Sequence[str] | None = None, formats: Sequence[str] = FIG_FORMATS,
                           log: Callable[[str], None] = _warn) -> dict[str, list[Path]]:
    """Draw and save every figure of ``dataset``; return {kind: [paths]} with kinds accuracy, density, latency,
    rounds (prefixed with the model when the dataset has records of more than one model)."""
    plots_dir = Path(plots_dir)
    models = models_of(runs, dataset) or [""]
    multi = len(models) > 1
    out: dict[str, list[Path]] = {}
    with figure_style():
        for model in models:
            prefix = f"{model}:" if multi else ""
            fig = plot_accuracy(runs, dataset, model, accuracy, references)
            out[prefix + "accuracy"] = save_figure(fig, plots_dir / _stem(dataset, model, multi, "accuracy"), formats)
            try:
                fig = plot_density(runs, dataset, model, sparsity)
            except ValueError as e:
                log(str(e))
                fig = None
            if fig is not None:
                out[prefix + "density"] = save_figure(fig, plots_dir / _stem(dataset, model, multi, "density"), formats)
            fig = plot_latency(runs, dataset, model, references, ref_method)
            if fig is not None:
                out[prefix + "latency"] = save_figure(fig, plots_dir / _stem(dataset, model, multi, "latency"), formats)
            from .rounds import write_rounds        # per-round figure of iterative methods (+ CSV), if any
            paths = write_rounds(runs, dataset, model, plots_dir / _stem(dataset, model, multi, "rounds"), accuracy, formats)
            if paths:
                out[prefix + "rounds"] = paths
    return out


def write_figures(results_dir: Path, plots_dir: Path, dataset: str | Sequence[str] | None = None, *,
                  accuracy: str = DEFAULT_ACCURACY, sparsity: float | None = None, reference_dir: Path | None = None,
                  ref_method: str | Sequence[str] | None = None, formats: Sequence[str] = FIG_FORMATS,
                  runs: list[dict] | None = None) -> list[Path]:
    """Render the figures of ``dataset`` (a name, a list, or None for every dataset with records) into
    ``plots_dir`` and return the paths written."""
    results_dir = Path(results_dir)
    runs = load_runs(results_dir) if runs is None else runs
    refs = load_references(default_reference_dir(results_dir) if reference_dir is None else reference_dir)
    names = datasets_of(runs) if dataset is None else ([dataset] if isinstance(dataset, str) else list(dataset))
    written: list[Path] = []
    for ds in names:
        if not any(r.get("dataset") == ds for r in runs):
            raise FileNotFoundError(f"no run records for dataset {ds!r} under {results_dir / 'runs' / ds}")
        for paths in render_dataset_figures(runs, ds, plots_dir, accuracy=accuracy, sparsity=sparsity,
                                            references=refs, ref_method=ref_method, formats=formats).values():
            written += paths
    return written
