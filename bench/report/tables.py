"""Accuracy and latency tables per dataset, from stored results only: Markdown, LaTeX (booktabs), CSV.

``write_tables(results_dir, ...)`` writes, per dataset, into ``<results>/tables/``:

* ``<dataset>.md`` / ``<dataset>.tex``: the accuracy table (with the dense reference row, failed
  runs listed below it and the paper-reported values beside ours), then the latency table;
* ``<dataset>.csv``: the accuracy table, one line per (method, sparsity) cell, numbers unrounded;
* ``<dataset>_paper.csv``: every reference row of the dataset against ours;
* ``<dataset>_latency.csv``: the latency table, one line per (GPU, method).

Rendering is a pure function of the records and the reference rows: the same inputs give the
same bytes.
"""
from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from ..store import atomic_write_bytes, load_runs
from .aggregate import (ACCURACY_WORDS, DEFAULT_REF_METHODS, CellStats, LatencyRow, Selection, accuracy_cells, datasets_of,
                        latency_rows, models_of, overall_by_target, resolve_ref_method, select)
from .references import (Reference, default_reference_dir, for_dataset, load_references,
                         match_target)
from .style import dataset_title

FORMATS = ("md", "tex", "csv")
PAPER_MODES = ("block", "inline")
DASH_MD = "—"


# --------------------------------------------------------------------------- formatting helpers

def fmt(x: float | None, digits: int = 2) -> str:
    """Fixed-point text; never '-0.00'."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    r = round(float(x), digits)
    if r == 0:
        r = 0.0
    return f"{r:.{digits}f}"


def fmt_signed(x: float, digits: int = 2) -> str:
    r = round(float(x), digits)
    if r == 0:
        return f"{0.0:.{digits}f}"
    return f"{r:+.{digits}f}"


def pct(x: float | None) -> str:
    return "" if x is None else fmt(100 * x)


def num(x: float | None, digits: int = 6) -> str:
    """Numbers in CSV files: fixed digits, empty for missing."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    r = round(float(x), digits)
    return f"{0.0 if r == 0 else r:.{digits}f}"


_TEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def tex_escape(s: str) -> str:
    out = "".join(_TEX_ESCAPES.get(ch, ch) for ch in str(s))
    for a, b in (("±", r"$\pm$"), ("—", "---"), ("–", "--"), ("×", r"$\times$"), ("−", "-"), ("†", r"\dag{}"),
                 (">", r"$>$"), ("<", r"$<$")):
        out = out.replace(a, b)
    return out


def md_escape(s: str) -> str:
    return str(s).replace("|", r"\|").replace("\n", " ")


class Dialect:
    """How a cell's parts are written in one output format."""
    name = "plain"
    dash = DASH_MD
    pm = " ± "
    dagger = "†"

    def bold(self, s: str) -> str:
        return s

    def n(self, n: int) -> str:
        return f" (n={n})"

    def text(self, s: str) -> str:
        return s


class MarkdownDialect(Dialect):
    name = "md"

    def bold(self, s):
        return f"**{s}**"

    def text(self, s):
        return md_escape(s)


class TexDialect(Dialect):
    name = "tex"
    dash = "---"
    pm = r" $\pm$ "
    dagger = r"$^\dagger$"

    def bold(self, s):
        return rf"\textbf{{{s}}}"

    def n(self, n):
        return f" ($n{{=}}{n}$)"

    def text(self, s):
        return tex_escape(s)


PLAIN, MD, TEX = Dialect(), MarkdownDialect(), TexDialect()


def cell_text(c: CellStats | None, d: Dialect = PLAIN, bold: bool = False) -> str:
    """'mean ± std (n=k)' (std and n only when n > 1), the mean in bold when best; a dash when no value."""
    failed = bool(c is not None and c.failed)
    if c is None or c.n == 0:
        return d.dash + (d.dagger if failed else "")
    m, s, n = c.stats
    out = d.bold(fmt(m)) if bold else fmt(m)
    if n > 1:
        out += d.pm + fmt(s) + d.n(n)
    return out + (d.dagger if failed else "")


# --------------------------------------------------------------------------- accuracy table

@dataclass
class PaperMatch:
    """One reference row against one of our methods."""
    ref: Reference
    method: str
    target: float | None = None
    ours: CellStats | None = None
    note: str = ""

    @property
    def diff(self) -> float | None:
        if self.ours is None or self.ours.n == 0 or self.ref.top1 is None:
            return None
        return self.ours.mean - self.ref.top1


@dataclass
class AccuracyTable:
    dataset: str
    model: str
    accuracy: str
    methods: list[str]                 # columns (dense excluded)
    targets: list[float]               # rows (fractions over the prunable set)
    cells: dict[tuple[str, float], CellStats]
    dense: CellStats | None
    selection: Selection
    best: set[tuple[str, float]] = field(default_factory=set)
    paper: list[PaperMatch] = field(default_factory=list)

    def cell(self, method: str, target: float) -> CellStats | None:
        c = self.cells.get((method, target))
        return c

    def sparsity_labels(self, target: float) -> tuple[str, str]:
        """(prunable %, overall %) as measured over the ok runs at ``target`` (a range if methods differ)."""
        cs = [c for (m, t), c in self.cells.items() if t == target and m != "dense"]
        prun = [c.prunable_mean for c in cs if c.prunable_mean is not None]
        over = [c.overall_mean for c in cs if c.overall_mean is not None]

        def label(vals, fallback):
            if not vals:
                return fallback
            lo, hi = min(vals), max(vals)
            return pct(lo) if pct(lo) == pct(hi) else f"{pct(lo)}–{pct(hi)}"

        p = label(prun, pct(target))
        if prun and pct(target) not in p.split("–"):
            p += f" (target {pct(target)})"
        return p, label(over, DASH_MD)

    def paper_for(self, method: str, target: float) -> list[PaperMatch]:
        return [pm for pm in self.paper if pm.method == method and pm.target == target and pm.ours is not None]


def _paper_matches(refs: Sequence[Reference], sel: Selection, cells: dict, model: str) -> list[PaperMatch]:
    present = set(sel.methods)
    out = []
    for ref in refs:
        for m in ref.labels:
            if m not in present and m != ref.method:
                continue
            pm = PaperMatch(ref, m)
            out.append(pm)
            if m not in present:
                pm.note = "not run"
                continue
            if ref.model and model and ref.model != model:
                pm.note = f"model differs (source: {ref.model})"
                continue
            table = {0.0: 0.0} if m == "dense" else overall_by_target({k: v for k, v in cells.items() if k[0] != "dense"}, m)
            pm.target = match_target(ref, table)
            if pm.target is None:
                if ref.sparsity_conv is None and ref.sparsity_overall is None:
                    pm.note = f"sparsity definition '{ref.sparsity_definition}' is not comparable"
                else:
                    pm.note = "no run at a matching sparsity"
                continue
            c = cells.get((m, pm.target))
            if c is None or c.n == 0:
                pm.note = "only failed runs" if c is not None and c.failed else "not run at this sparsity"
                continue
            pm.ours = c
            pm.note = ("matched on conv sparsity" if ref.sparsity_conv is not None
                       else "matched on nearest overall sparsity")
    return out


def build_accuracy_table(runs: Iterable[dict], dataset: str, model: str | None = None, accuracy: str = "best",
                         references: Sequence[Reference] = ()) -> AccuracyTable:
    runs = list(runs)
    if model is None:
        models = models_of(runs, dataset)
        model = models[0] if len(models) == 1 else None
    sel = select(runs, dataset, model)
    cells = accuracy_cells(sel, accuracy)
    dense_only_at_zero = all(t == 0 for (m, t) in cells if m == "dense")
    methods = [m for m in sel.methods if not (m == "dense" and dense_only_at_zero)]
    dense = cells.get(("dense", 0.0)) if dense_only_at_zero else None
    targets = sorted({t for (m, t) in cells if m in methods})
    best: set[tuple[str, float]] = set()
    for t in targets:
        vals = {m: round(cells[(m, t)].mean, 2) for m in methods if (m, t) in cells and cells[(m, t)].n > 0}
        if len(vals) >= 2:
            top = max(vals.values())
            best |= {(m, t) for m, v in vals.items() if v == top}
    refs = for_dataset(references, dataset, top1=True)
    return AccuracyTable(dataset, model or "", accuracy, methods, targets, cells, dense, sel, best,
                         _paper_matches(refs, sel, cells, model or ""))


def _caption(t: AccuracyTable) -> str:
    official = {(r.get("data") or {}).get("official") for r in t.selection.ok}
    data_note = ""
    if False in official:
        data_note = " Data: NOT the official dataset (a subset or synthetic data) for some or all runs."
    dense = cell_text(t.dense) if t.dense is not None else DASH_MD
    return (f"Top-1 test accuracy (%), {ACCURACY_WORDS[t.accuracy]}. Each cell: mean ± sample std "
            f"(ddof = 1) over seeds, with n when n > 1. Bold: the best mean in the sparsity row (at the shown "
            f"precision; only when two or more methods have a value). {DASH_MD}: not run. †: the cell has failed "
            f"runs (listed below, never averaged in). Sparsity is measured (mean over runs): prunable = zeros / "
            f"prunable (conv) weights; overall = zeros / (conv + linear + BN weights), the COLT-style figure. "
            f"Dense reference: {dense}.{data_note}")


def _title(t: AccuracyTable) -> str:
    model = f", {t.model}" if t.model else ""
    return f"{dataset_title(t.dataset)}{model}: top-1 accuracy (%), {t.accuracy} epoch"


def _grid(t: AccuracyTable, d: Dialect, transpose: bool, paper_inline: bool) -> tuple[list[str], list[list[str]], int]:
    """(header, rows, index of the dense row or -1); the dense row's value sits in the first data column."""

    def text(m, tgt):
        c = t.cell(m, tgt)
        s = cell_text(c, d, (m, tgt) in t.best)
        if paper_inline:
            for pm in t.paper_for(m, tgt):
                s += f"; paper {fmt(pm.ref.top1)} ({fmt_signed(pm.diff)})"
        return s

    dense_txt = cell_text(t.dense, d) if t.dense is not None else d.dash
    if not transpose:
        header = [d.text("prunable %"), d.text("overall %")] + [d.text(m) for m in t.methods]
        rows = [["dense", "0.00"] + ([dense_txt] + [""] * (len(t.methods) - 1) if t.methods else [])]
        if not t.methods:
            header.append("dense")
            rows[0].append(dense_txt)
        for tgt in t.targets:
            p, o = t.sparsity_labels(tgt)
            rows.append([p, o] + [text(m, tgt) for m in t.methods])
        return header, rows, 0
    cols = [t.sparsity_labels(tgt) for tgt in t.targets]
    header = ["method"] + [d.text(f"{p} ({o} overall)") for p, o in cols]
    rows = [["dense"] + ([dense_txt] + [""] * (len(cols) - 1) if cols else [dense_txt])]
    if not cols:
        header.append(d.text("0.00 (dense)"))
    for m in t.methods:
        rows.append([d.text(m)] + [text(m, tgt) for tgt in t.targets])
    return header, rows, 0


def _md_table(header: list[str], rows: list[list[str]], align: list[str]) -> str:
    out = ["| " + " | ".join(header) + " |",   # header cells arrive escaped, like the rows
           "| " + " | ".join("---:" if a == "r" else ":---" if a == "l" else ":---:" for a in align) + " |"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out) + "\n"


def _run_line(r: dict, d: Dialect) -> str:
    err = (r.get("error") or "no error recorded").strip().splitlines()
    err = err[0] if err else "no error recorded"
    if len(err) > 160:
        err = err[:157] + "..."
    sp = pct(float(r.get("target_sparsity") or 0))
    return d.text(f"{r.get('method')}, sparsity {sp}%, seed {r.get('seed')}, run {r.get('run_id')}, "
                  f"{r.get('device_name') or 'unknown device'}: {err}")


def _paper_rows(t: AccuracyTable, d: Dialect) -> tuple[list[str], list[list[str]]]:
    header = ["method (ours)", "reported as", "source", "reported sparsity %", "matched prunable %",
              "paper top-1", "epoch (source)", f"ours ({t.accuracy})", "ours − paper", "note"]
    rows = []
    for pm in t.paper:
        ref = pm.ref
        rows.append([d.text(pm.method), d.text(ref.reported_as), d.text(ref.source_text()), d.text(ref.sparsity_text()),
                     pct(pm.target) if pm.target is not None else d.dash, fmt(ref.top1), ref.accuracy,
                     cell_text(pm.ours, d) if pm.ours is not None else d.dash,
                     fmt_signed(pm.diff) if pm.diff is not None else d.dash, d.text(pm.note)])
    return header, rows


def accuracy_markdown(t: AccuracyTable, transpose: bool = False, paper: str = "block", level: int = 2) -> str:
    h = "#" * level
    header, rows, _ = _grid(t, MD, transpose, paper == "inline")
    out = [f"{h} {_title(t)}\n", _caption(t) + "\n", _md_table(header, rows, ["l"] + ["r"] * (len(header) - 1))]
    out.append(_failed_md(t))
    if t.paper:
        ph, prow = _paper_rows(t, MD)
        out.append("Paper-reported values beside ours (ours − paper in percentage points; the source's "
                   "epoch convention may differ from ours, see 'epoch (source)'):\n")
        out.append(_md_table(ph, prow, ["l", "l", "l", "r", "r", "r", "l", "r", "r", "l"]))
    return "\n".join(out)


def _failed_md(t: AccuracyTable) -> str:
    sel = t.selection
    lines = [f"Failed runs: {len(sel.failed)} (counted here, never averaged in)."]
    lines += [f"- {_run_line(r, MD)}" for r in sel.failed]
    if sel.superseded:
        lines.append(f"\nSuperseded runs: {len(sel.superseded)} (an older ok run of the same cell and seed "
                     f"with a different run id; not averaged in).")
        lines += [f"- {md_escape(r.get('method'))}, sparsity {pct(float(r.get('target_sparsity') or 0))}%, "
                  f"seed {r.get('seed')}, run {r.get('run_id')}" for r in sel.superseded]
    return "\n".join(lines) + "\n"


def _tex_tabular(header: list[str], rows: list[list[str]], spec: str, dense_row: int | None = None,
                 label_cols: int = 2) -> list[str]:
    ncols = len(header)
    out = [rf"\begin{{tabular}}{{{spec}}}", r"\toprule", " & ".join(header) + r" \\", r"\midrule"]
    for i, r in enumerate(rows):
        if i == dense_row and ncols - label_cols > 1:
            span = ncols - label_cols
            out.append(" & ".join(r[:label_cols]) + rf" & \multicolumn{{{span}}}{{c}}{{{r[label_cols]}}} \\")
            out.append(r"\midrule")
        else:
            out.append(" & ".join(r) + r" \\")
            if i == dense_row:
                out.append(r"\midrule")
    out += [r"\bottomrule", r"\end{tabular}"]
    return out


def accuracy_latex(t: AccuracyTable, transpose: bool = False, paper: str = "block") -> str:
    header, rows, dense_row = _grid(t, TEX, transpose, paper == "inline")
    label_cols = 1 if transpose else 2
    spec = ("l" if transpose else "ll") + "r" * (len(header) - label_cols)
    label = f"tab:acc-{t.dataset}" + (f"-{t.model}" if t.model else "")
    out = [r"\begin{table}[t]", r"\centering", rf"\caption{{{tex_escape(_title(t))}. {tex_escape(_caption(t))}}}",
           rf"\label{{{label}}}", r"\small"]
    out += _tex_tabular(header, rows, spec, dense_row, label_cols)
    sel = t.selection
    out.append(r"\par\smallskip\footnotesize")
    out.append(f"Failed runs: {len(sel.failed)} (not averaged in)." + ("" if not sel.failed else r"\\"))
    out += [rf"{_run_line(r, TEX)}\\" for r in sel.failed]
    if sel.superseded:
        out.append(f"Superseded runs (not averaged in): {len(sel.superseded)}.")
    out.append(r"\end{table}")
    if t.paper:
        ph, prow = _paper_rows(t, TEX)
        ph = [tex_escape(h) for h in ph]
        out += ["", r"\begin{table}[t]", r"\centering",
                rf"\caption{{{tex_escape(dataset_title(t.dataset))}: paper-reported top-1 beside ours "
                rf"({tex_escape(t.accuracy)} epoch); ours $-$ paper in percentage points.}}",
                rf"\label{{{label}-paper}}", r"\footnotesize"]
        out += _tex_tabular(ph, prow, "lllrrrlrrl", None)
        out.append(r"\end{table}")
    return "\n".join(out) + "\n"


def _csv_text(header: list[str], rows: list[list]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


ACCURACY_CSV_COLUMNS = ["dataset", "model", "accuracy", "method", "target_sparsity", "sparsity_prunable",
                        "sparsity_overall", "n", "mean", "std", "best", "n_failed", "seeds", "display"]


def accuracy_csv_rows(t: AccuracyTable) -> list[list[str]]:
    rows = []

    def row(m, tgt, c, best):
        mean, std, n = c.stats if c is not None else (None, None, 0)
        seeds = ";".join(str(s) for s in c.seeds) if c is not None else ""
        rows.append([t.dataset, t.model, t.accuracy, m, num(tgt), num(c.prunable_mean if c else None),
                     num(c.overall_mean if c else None), str(n), num(mean), num(std), "true" if best else "false",
                     str(len(c.failed) if c else 0), seeds, cell_text(c)])

    if t.dense is not None or "dense" in t.selection.methods:
        row("dense", 0.0, t.dense, False)
    for tgt in t.targets:
        for m in t.methods:
            row(m, tgt, t.cell(m, tgt), (m, tgt) in t.best)
    return rows


PAPER_CSV_COLUMNS = ["dataset", "model", "metric", "method", "reported_as", "source", "where", "accuracy_reported",
                     "sparsity_reported", "sparsity_definition", "sparsity_conv", "sparsity_overall",
                     "matched_target", "device", "paper_value", "ours_mean", "ours_std", "ours_n", "diff",
                     "paper_ratio", "ours_ratio", "note"]


def _ref_cols(ref: Reference) -> list[str]:
    return [ref.reported_as, ref.source, ref.where, ref.accuracy, num(ref.sparsity, 4), ref.sparsity_definition,
            num(ref.sparsity_conv, 4), num(ref.sparsity_overall, 4)]


def paper_csv_rows(t: AccuracyTable, lt: "LatencyTable | None" = None) -> list[list[str]]:
    rows = []
    for pm in t.paper:
        mean, std, n = pm.ours.stats if pm.ours is not None else (None, None, 0)
        rows.append([t.dataset, t.model, "top1", pm.method] + _ref_cols(pm.ref) +
                    [num(pm.target), "", num(pm.ref.top1, 4), num(mean), num(std), str(n), num(pm.diff), "", "",
                     pm.note])
    if lt is not None:
        for pl in lt.paper:
            rows.append([lt.dataset, lt.model, "minutes", pl.method] + _ref_cols(pl.ref) +
                        [num(pl.target), pl.device, num(pl.ref.minutes, 4), num(pl.ours), "", str(pl.runs), "",
                         num(pl.paper_ratio), num(pl.ours_ratio), pl.note])
    return rows


# --------------------------------------------------------------------------- latency table

@dataclass
class PaperLatency:
    ref: Reference
    method: str
    device: str = ""
    target: float | None = None
    ours: float | None = None         # minutes per run
    runs: int = 0
    ours_ratio: float | None = None
    paper_ratio: float | None = None
    note: str = ""


@dataclass
class LatencyTable:
    dataset: str
    model: str
    ref_method: str | None
    rows: list[LatencyRow]
    failed: int
    paper: list[PaperLatency] = field(default_factory=list)


def _paper_ratio(ref: Reference, refs: Sequence[Reference], ref_method: str | None) -> float | None:
    if ref_method is None:
        return None
    base = [r for r in refs if ref_method in r.labels]
    same = [r for r in base if abs(r.sparsity - ref.sparsity) < 1e-9] or base
    if not same or not same[0].minutes:
        return None
    return ref.minutes / same[0].minutes


def build_latency_table(runs: Iterable[dict], dataset: str, model: str | None = None,
                        references: Sequence[Reference] = (), ref_method: str | Sequence[str] | None = None
                        ) -> LatencyTable:
    runs = list(runs)
    if model is None:
        models = models_of(runs, dataset)
        model = models[0] if len(models) == 1 else None
    sel = select(runs, dataset, model)
    ref_m = resolve_ref_method(sel.methods, ref_method)
    rows = latency_rows(sel.ok, ref_m)
    lt = LatencyTable(dataset, model or "", ref_m, rows, len(sel.failed))
    cells = accuracy_cells(sel, "best")
    refs = for_dataset(references, dataset, minutes=True)
    devices = sorted({r.device for r in rows})
    present = set(sel.methods)
    # The paper's ratio is to the paper's own proposed method, whether or not we ran it.
    paper_ref = ref_m or (DEFAULT_REF_METHODS[0] if ref_method is None else
                          (ref_method if isinstance(ref_method, str) else list(ref_method)[0]))
    for ref in refs:
        pratio = _paper_ratio(ref, refs, paper_ref)
        for m in ref.labels:
            if m not in present and m != ref.method:
                continue
            if m not in present:
                lt.paper.append(PaperLatency(ref, m, paper_ratio=pratio, note="not run"))
                continue
            target = match_target(ref, overall_by_target({k: v for k, v in cells.items() if k[0] != "dense"}, m))
            for dev in devices:
                mine = [r for r in sel.ok if r["method"] == m and str(r.get("device_name") or "unknown") == dev]
                if not mine:
                    continue
                at = [r for r in mine if target is not None and abs(float(r.get("target_sparsity") or 0) - target) < 1e-9]
                use, note = (at, "at the matched sparsity") if at else (mine, "all sparsities (no run at a matching sparsity)")
                base = [r for r in sel.ok if r["method"] == ref_m and str(r.get("device_name") or "unknown") == dev]
                base_at = [r for r in base if target is not None and abs(float(r.get("target_sparsity") or 0) - target) < 1e-9]
                ours = latency_rows(use)[0].per_run
                ref_rows = latency_rows(base_at or base)
                ratio = ours / ref_rows[0].per_run if ref_rows and ref_rows[0].per_run > 0 else None
                lt.paper.append(PaperLatency(ref, m, dev, target if at else None, ours, len(use), ratio, pratio, note))
    return lt


def _latency_grid(lt: LatencyTable, d: Dialect) -> tuple[list[str], list[list[str]]]:
    ref = lt.ref_method or "ref"
    header = ["GPU", "method", "runs", "pretrain", "teacher", "score+prune", "retrain", "per run",
              "grid GPU-min", f"× {ref}"]

    def m(x):
        return "n/a" if x is None else fmt(x)

    rows = []
    for r in lt.rows:
        work = r.has_work
        ratio = "n/a" if not work or r.method == "dense" else (d.dash if r.ratio is None else fmt(r.ratio) + "×")
        rows.append([d.text(r.device), d.text(r.method), str(r.runs), m(r.pretrain), m(r.teacher), m(r.score_prune),
                     m(r.retrain), fmt(r.per_run) if work else "n/a", fmt(r.grid_total) if work else "n/a", ratio])
    return header, rows


def _latency_caption(lt: LatencyTable) -> str:
    ref = lt.ref_method
    ratio = (f"× {ref} = per run / per run of {ref} on the same GPU." if ref else
             "× ref: no ratios, the reference method (tgp-kd, else tgp) was not run.")
    return (f"Wall-clock minutes per run (mean over the method's ok runs on that GPU), split by phase: teacher = "
            f"training the teacher; score+prune = KD fine-tune + scoring + pruning; retrain = sparse retraining. "
            f"Evaluation is excluded. pretrain (the dense model every pruning method starts from) is shown apart "
            f"and is not part of 'per run' (a dense run consists of it alone: its per run is n/a). A phase whose artifact was reused "
            f"from the cache is counted at what it cost when it was made (the honest per-run cost), so shared "
            f"artifacts count once per run. grid GPU-min = the sum over runs of per run × GPUs used. "
            f"{ratio} Runs on different GPU models are never "
            f"averaged together. n/a: not part of the method. Failed runs excluded: {lt.failed}.")


def latency_markdown(lt: LatencyTable, level: int = 2) -> str:
    h = "#" * level
    model = f", {lt.model}" if lt.model else ""
    out = [f"{h} {dataset_title(lt.dataset)}{model}: training latency (minutes)\n", _latency_caption(lt) + "\n"]
    if lt.rows:
        header, rows = _latency_grid(lt, MD)
        out.append(_md_table(header, rows, ["l", "l"] + ["r"] * 8))
    else:
        out.append("No ok runs.\n")
    if lt.paper:
        ph, prow = _paper_latency_rows(lt, MD)
        out.append("Paper-reported training minutes beside ours (the source's GPU and what it timed may differ):\n")
        out.append(_md_table(ph, prow, ["l", "l", "l", "r", "r", "r", "l", "r", "r", "l"]))
    return "\n".join(out)


def _paper_latency_rows(lt: LatencyTable, d: Dialect) -> tuple[list[str], list[list[str]]]:
    ref = lt.ref_method or "ref"
    header = ["method (ours)", "reported as", "source", "reported sparsity %", "paper min", f"paper × {ref}",
              "GPU (ours)", "ours min/run", f"ours × {ref}", "note"]
    rows = []
    for pl in lt.paper:
        rows.append([d.text(pl.method), d.text(pl.ref.reported_as), d.text(pl.ref.source_text()),
                     d.text(pl.ref.sparsity_text()), fmt(pl.ref.minutes),
                     d.dash if pl.paper_ratio is None else fmt(pl.paper_ratio) + "×",
                     d.text(pl.device) if pl.device else d.dash, d.dash if pl.ours is None else fmt(pl.ours),
                     d.dash if pl.ours_ratio is None else fmt(pl.ours_ratio) + "×", d.text(pl.note)])
    return header, rows


def latency_latex(lt: LatencyTable) -> str:
    model = f", {lt.model}" if lt.model else ""
    label = f"tab:lat-{lt.dataset}" + (f"-{lt.model}" if lt.model else "")
    out = [r"\begin{table}[t]", r"\centering",
           rf"\caption{{{tex_escape(dataset_title(lt.dataset) + model)}: training latency (minutes). "
           rf"{tex_escape(_latency_caption(lt))}}}", rf"\label{{{label}}}", r"\small"]
    header, rows = _latency_grid(lt, TEX)
    out += _tex_tabular([tex_escape(h) for h in header], rows, "llrrrrrrrr", None)
    out.append(r"\end{table}")
    if lt.paper:
        ph, prow = _paper_latency_rows(lt, TEX)
        out += ["", r"\begin{table}[t]", r"\centering",
                rf"\caption{{{tex_escape(dataset_title(lt.dataset))}: paper-reported training minutes beside ours.}}",
                rf"\label{{{label}-paper}}", r"\footnotesize"]
        out += _tex_tabular([tex_escape(h) for h in ph], prow, "lllrrrlrrl", None)
        out.append(r"\end{table}")
    return "\n".join(out) + "\n"


LATENCY_CSV_COLUMNS = ["dataset", "model", "device", "method", "runs", "pretrain_min", "teacher_min",
                       "score_prune_min", "retrain_min", "per_run_min", "grid_gpu_min", "ref_method", "ratio_to_ref"]


def latency_csv_rows(lt: LatencyTable) -> list[list[str]]:
    return [[lt.dataset, lt.model, r.device, r.method, str(r.runs), num(r.pretrain), num(r.teacher),
             num(r.score_prune), num(r.retrain), num(r.per_run if r.has_work else None),
             num(r.grid_total if r.has_work else None), lt.ref_method or "",
             num(r.ratio)] for r in lt.rows]


# --------------------------------------------------------------------------- files

@dataclass
class DatasetTables:
    dataset: str
    accuracy: list[AccuracyTable]
    latency: list[LatencyTable]

    def markdown(self, transpose: bool = False, paper: str = "block", level: int = 1) -> str:
        h = "#" * level
        out = [f"{h} {dataset_title(self.dataset)} ({self.dataset})\n"]
        for t in self.accuracy:
            out.append(accuracy_markdown(t, transpose, paper, level + 1))
        for lt in self.latency:
            out.append(latency_markdown(lt, level + 1))
        return "\n".join(out)

    def latex(self, transpose: bool = False, paper: str = "block") -> str:
        parts = [f"% {dataset_title(self.dataset)} ({self.dataset}): generated by `python -m bench table`; "
                 "needs \\usepackage{booktabs}\n"]
        parts += [accuracy_latex(t, transpose, paper) for t in self.accuracy]
        parts += [latency_latex(lt) for lt in self.latency]
        return "\n".join(parts)

    def csv_accuracy(self) -> str:
        return _csv_text(ACCURACY_CSV_COLUMNS, [r for t in self.accuracy for r in accuracy_csv_rows(t)])

    def csv_paper(self) -> str:
        rows = []
        for t, lt in zip(self.accuracy, self.latency):
            rows += paper_csv_rows(t, lt)
        return _csv_text(PAPER_CSV_COLUMNS, rows)

    def csv_latency(self) -> str:
        return _csv_text(LATENCY_CSV_COLUMNS, [r for lt in self.latency for r in latency_csv_rows(lt)])


def build_dataset_tables(runs: Iterable[dict], dataset: str, accuracy: str = "best",
                         references: Sequence[Reference] = (), ref_method: str | Sequence[str] | None = None
                         ) -> DatasetTables:
    """Every table of ``dataset``: one accuracy and one latency table per model found in its records."""
    runs = [r for r in runs if r.get("dataset") == dataset]
    models = models_of(runs, dataset) or [""]
    return DatasetTables(
        dataset,
        [build_accuracy_table(runs, dataset, m, accuracy, references) for m in models],
        [build_latency_table(runs, dataset, m, references, ref_method) for m in models],
    )


def _formats(formats: str | Iterable[str]) -> list[str]:
    fs = list(FORMATS) if formats in (None, "all") else ([formats] if isinstance(formats, str) else list(formats))
    bad = [f for f in fs if f not in FORMATS]
    if bad:
        raise ValueError(f"unknown table format(s) {', '.join(bad)}; allowed: {', '.join(FORMATS)} or all")
    return fs


def write_tables(results_dir: Path, dataset: str | Sequence[str] | None = None, *, formats="all",
                 accuracy: str = "best", transpose: bool = False, paper: str = "block",
                 reference_dir: Path | None = None, ref_method: str | Sequence[str] | None = None,
                 tables_dir: Path | None = None, runs: list[dict] | None = None) -> list[Path]:
    """Render the tables of ``dataset`` (a name, a list, or None for every dataset with records) into
    ``tables_dir`` (default ``<results_dir>/tables``) and return the paths written."""
    if paper not in PAPER_MODES:
        raise ValueError(f"paper must be one of {', '.join(PAPER_MODES)}, got {paper!r}")
    fs = _formats(formats)
    results_dir = Path(results_dir)
    runs = load_runs(results_dir) if runs is None else runs
    refs = load_references(default_reference_dir(results_dir) if reference_dir is None else reference_dir)
    names = datasets_of(runs) if dataset is None else ([dataset] if isinstance(dataset, str) else list(dataset))
    out_dir = Path(tables_dir) if tables_dir is not None else results_dir / "tables"
    written = []
    for ds in names:
        if not any(r.get("dataset") == ds for r in runs):
            raise FileNotFoundError(f"no run records for dataset {ds!r} under {results_dir / 'runs' / ds}")
        tabs = build_dataset_tables(runs, ds, accuracy, refs, ref_method)
        files = {}
        if "md" in fs:
            files[f"{ds}.md"] = tabs.markdown(transpose, paper)
        if "tex" in fs:
            files[f"{ds}.tex"] = tabs.latex(transpose, paper)
        if "csv" in fs:
            files[f"{ds}.csv"] = tabs.csv_accuracy()
            files[f"{ds}_paper.csv"] = tabs.csv_paper()
            files[f"{ds}_latency.csv"] = tabs.csv_latency()
        for name, text in files.items():
            path = out_dir / name
            atomic_write_bytes(path, text.encode("utf-8"))
            written.append(path)
    return written


__all__ = ["AccuracyTable", "LatencyTable", "DatasetTables", "PaperMatch", "PaperLatency", "build_accuracy_table",
           "build_latency_table", "build_dataset_tables", "accuracy_markdown", "accuracy_latex", "latency_markdown",
           "latency_latex", "write_tables", "cell_text"]
