"""Figures from stored results: accuracy vs sparsity (accuracy_figure.py), per-layer density, latency,
the rounds of the iterative methods (rounds.py); the shared helpers (style, saving, axes) are in
plotting.py. Rendering the same results twice gives the same bytes.
"""
from __future__ import annotations

import re
import sys
import textwrap
from pathlib import Path
from typing import Callable, Iterable, Sequence

from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from ..store import load_runs
from .accuracy_figure import plot_accuracy
from .aggregate import DEFAULT_ACCURACY, datasets_of, models_of, select, sparsity_key
from .format import pct
from .latency_table import build_latency_table
from .plotting import FIG_FORMATS, figure_style, new_figure, save_figure
from .references import Reference, default_reference_dir, load_references
from .rounds import write_rounds
from .style import PAPER_MARKER, dataset_title, order_methods, style_for


def _natural(name: str) -> list:
    return [int(s) if s.isdigit() else s for s in re.split(r"(\d+)", name)]


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
                linestyle=st.linestyle, label=f"{m} (n={n})")
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
    ov = f" (realised: {pct(sum(overall) / len(overall))}% overall, mean)" if overall else ""
    # Records since the sparsity measure was declared say what their target counts; older ones targeted
    # each method's prunable set.
    measures = {r.get("sparsity_measure") for r in chosen}
    on = f"{measures.pop()} sparsity" if len(measures) == 1 and None not in measures else \
        "sparsity of each method's prunable set"
    model_txt = f" ({sel.model})" if sel.model else ""
    ax.set_title(f"{dataset_title(dataset)}{model_txt}: per-layer density\n"
                 f"at the target of {pct(target)}% {on}{ov}")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    return fig


# --------------------------------------------------------------------------- latency

# Stack order, bottom to top: the student's cost from initialisation, then the teacher (its own column
# in the cost convention), hatched so that it reads apart.
STACK = (("pretrain", "pretrain (dense model)", "", 0.55), ("score_prune", "score+prune", "..", 0.85),
         ("retrain", "retrain", "", 0.85), ("other", "other", "xx", 0.85), ("teacher", "teacher", "//", 0.35))


def _stack_bar(ax, i: int, row, colour: str) -> float:
    bottom = 0.0
    for key, _, hatch, alpha in STACK:
        v = getattr(row, key, None) or 0.0
        if v > 0:
            ax.bar(i, v, bottom=bottom, color=colour, alpha=alpha, hatch=hatch, edgecolor="black", linewidth=0.5,
                   width=0.7)
        bottom += v
    return bottom


def _short(device: str) -> str:
    """A GPU name short enough for a panel title or a tick label."""
    return device.replace("NVIDIA ", "")


def _paper_panel(ax, lt, devices: list[str]) -> bool:
    """The paper's minutes beside ours (the latency table's 'per run'), log scale: 276 min and 0.05 min
    both readable. ° marks ours taken over all our sparsities (none matches the paper's). Returns whether
    some of ours is not at the paper's sparsity."""
    paper = [pl for pl in lt.paper if pl.ref.minutes is not None]
    labels: list[str] = []
    unmatched = False

    def label(pl) -> str:
        return pl.method + ("\n" + textwrap.fill(_short(pl.device), 12) if pl.device and len(devices) > 1 else "")

    for pl in paper:
        if label(pl) not in labels:
            labels.append(label(pl))
    ticks = list(labels)
    for pl in paper:
        i = labels.index(label(pl))
        colour = style_for(pl.method).colour
        ax.scatter([i - 0.17], [pl.ref.minutes], marker=PAPER_MARKER, s=190, color=colour, edgecolors="black",
                   linewidths=0.8, zorder=5)
        ax.annotate(f"{pl.ref.minutes:.3g}", (i - 0.17, pl.ref.minutes), textcoords="offset points", xytext=(0, 8),
                    ha="center", fontsize=7)
        if pl.ours is not None and pl.ours > 0:
            ax.bar(i + 0.17, pl.ours, color=colour, alpha=0.85, edgecolor="black", linewidth=0.5, width=0.3)
            ax.annotate(f"{pl.ours:.2g}", (i + 0.17, pl.ours), textcoords="offset points", xytext=(0, 2),
                        ha="center", fontsize=7)
            if pl.target is None and "°" not in ticks[i]:
                first, *rest = ticks[i].split("\n")
                ticks[i] = "\n".join([first + "°", *rest])
                unmatched = True
        elif pl.ours is None:
            ax.annotate("not run", (i + 0.17, pl.ref.minutes), textcoords="offset points", xytext=(0, -14),
                        ha="center", fontsize=7)
    ax.set_yscale("log")
    ax.set_xticks(range(len(labels)), labels=ticks, fontsize=7)
    ax.set_xlim(-0.7, len(labels) - 0.3)
    ax.set_ylabel("minutes per run (log scale)")
    ax.set_title("paper ★ vs ours, log", fontsize=9)
    return unmatched


def plot_latency(runs: Iterable[dict], dataset: str, model: str | None = None, references: Sequence[Reference] = (),
                 ref_method: str | Sequence[str] | None = None) -> Figure | None:
    """Minutes per run per method, stacked by phase group, one panel per GPU model (never pooled); then a
    log-scale panel with the paper's minutes beside ours, so that both are readable (the paper's COLT takes
    hours, our small grids minutes). A method marked ‡ leaves out reused phases made on another device.
    None when no run has timed phases."""
    lt = build_latency_table(runs, dataset, model, references, ref_method)
    rows = [r for r in lt.rows if any((getattr(r, k, None) or 0) > 0 for k, *_ in STACK)]
    if not rows:
        return None
    devices = sorted({r.device for r in rows})
    has_paper = any(pl.ref.minutes is not None for pl in lt.paper)
    # Panel widths in inches: a bar takes 0.45, a paper-vs-ours pair 1.1 (its label may name the GPU).
    widths = [max(1.8, 0.45 * len([r for r in rows if r.device == dev])) for dev in devices]
    if has_paper:
        pairs = {(pl.method, pl.device) if len(devices) > 1 else pl.method for pl in lt.paper
                 if pl.ref.minutes is not None}
        widths.append(max(2.4, 1.1 * len(pairs)))
    fig = new_figure(figsize=(max(9.0, sum(widths) + 1.6), 4.8))
    axes = fig.subplots(1, len(widths), squeeze=False, width_ratios=widths)[0]
    any_excluded = False
    for ax, dev in zip(axes, devices):
        drow = [r for r in rows if r.device == dev]
        for i, r in enumerate(drow):
            _stack_bar(ax, i, r, style_for(r.method).colour)
        # ‡: the bar leaves out reused phases made on another device (their cost here is unknown).
        ax.set_xticks(range(len(drow)), labels=[r.method + ("‡" if r.excluded_work else "") for r in drow],
                      rotation=35, ha="right", fontsize=7)
        any_excluded = any_excluded or any(r.excluded_work for r in drow)
        ax.set_title(f"{_short(dev)}\nours by phase", fontsize=8)
    axes[0].set_ylabel("minutes per run (every timed phase\nbut evaluation; linear scale)")
    unmatched = _paper_panel(axes[-1], lt, devices) if has_paper else False
    present = {k for r in rows for k, *_ in STACK if (getattr(r, k, None) or 0) > 0}
    handles = [Patch(facecolor="#999999", alpha=a, edgecolor="black", hatch=h, label=lab)
               for k, lab, h, a in STACK if k in present]
    if has_paper:
        handles.append(Line2D([], [], marker=PAPER_MARKER, color="#bbbbbb", markeredgecolor="black", markersize=11,
                              linestyle="none", label="paper-reported minutes (GPU and what is timed not stated)"))
        handles.append(Patch(facecolor="#999999", edgecolor="black",
                             label="ours beside the paper: the latency table's 'per run'"))
        if unmatched:
            handles.append(Patch(facecolor="none", edgecolor="none",
                                 label="°: ours over all our sparsities (no run at the paper's)"))
    else:
        handles.append(Patch(facecolor="none", edgecolor="none",
                             label=f"no paper-reported minutes for {dataset_title(dataset)}"))
    if any_excluded:
        handles.append(Patch(facecolor="none", edgecolor="none",
                             label="‡: leaves out cached phases made on another device"))
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 2), fontsize=7)
    model_txt = f" ({lt.model})" if lt.model else ""
    fig.suptitle(f"{dataset_title(dataset)}{model_txt}: training time per run", fontsize=10)
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
