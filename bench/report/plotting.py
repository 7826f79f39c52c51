"""The figure helpers every figure module shares (figures.py, accuracy_figure.py, rounds.py,
claims_render.py): one rc context, a bare Figure on an Agg canvas, byte-stable saving, and the log axis of
remaining weights.

Every figure is drawn on a bare ``matplotlib.figure.Figure`` (Agg canvas, no pyplot state), under
one rc context: seaborn's whitegrid/paper style, DejaVu Sans (shipped with matplotlib, so the
output does not depend on the fonts of the machine), TrueType (Type 42) fonts in PDF/PS, a fixed
SVG hash salt, and no creation dates or software versions in the files. Rendering the same
results twice gives the same bytes.
"""
from __future__ import annotations

import io
from contextlib import contextmanager
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")

from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import FixedLocator, NullLocator  # noqa: E402

from ..store import atomic_write_bytes  # noqa: E402

FIG_FORMATS = ("png", "pdf")
DPI = 150
SAVE_METADATA = {
    "png": {"Software": None},
    "pdf": {"Creator": None, "Producer": None, "CreationDate": None, "ModDate": None},
    "svg": {"Creator": None, "Date": None},
}


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


# Ticks of the remaining-weights axis (%), of which each figure shows those in its range.
REMAINING_TICKS = (100, 50, 20, 10, 5, 2, 1, 0.5, 0.2, 0.1, 0.05, 0.02, 0.01)


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
