"""The accuracy table: one cell per (method, target sparsity), the dense reference row, failed and
superseded runs, and the paper-reported values matched to our cells; Markdown, LaTeX and CSV.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

from .aggregate import ACCURACY_WORDS, DEFAULT_ACCURACY, CellStats, Selection, accuracy_cells, models_of, overall_by_target, select
from .format import (DASH_MD, MD, PLAIN, TEX, Dialect, _md_table, _tex_tabular, fmt, fmt_signed, md_escape, num, pct,
                     tex_escape)
from .references import Reference, for_dataset, match_target
from .style import dataset_title


def cell_text(c: CellStats | None, d: Dialect = PLAIN, bold: bool = False) -> str:
    """'mean ± std (n=k)' (std and n only when n > 1), the mean in bold when best; a dash when no value;
    † when the cell has failed runs, § when its realised sparsity differs from the target."""
    failed = bool(c is not None and c.failed)
    if c is None or c.n == 0:
        return d.dash + (d.dagger if failed else "")
    m, s, n = c.stats
    out = d.bold(fmt(m)) if bold else fmt(m)
    if n > 1:
        out += d.pm + fmt(s) + d.n(n)
    return out + (d.dagger if failed else "") + (d.section if not c.exact else "")



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
        """(prunable %, overall %) as measured over the ok runs at ``target`` (a range if methods differ).
        Cells marked § (realised sparsity differs from the target) are left out when the row has others:
        their own sparsity is given under the table."""
        cs = [c for (m, t), c in self.cells.items() if t == target and m != "dense"]
        cs = [c for c in cs if c.exact] or cs
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

    def inexact_cells(self) -> list[CellStats]:
        """Cells whose realised sparsity differs from their target (§), in row then column order."""
        return [c for tgt in self.targets for m in self.methods
                if (c := self.cell(m, tgt)) is not None and not c.exact]

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
                if not ref.sparsity_stated:
                    pm.note = "the source states no sparsity: not compared"
                elif ref.sparsity_conv is None and ref.sparsity_overall is None:
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
            if not c.exact:
                pm.note += f"; § realised {pct(c.prunable_mean)}% prunable, not the target {pct(pm.target)}%"
    return out


def build_accuracy_table(runs: Iterable[dict], dataset: str, model: str | None = None, accuracy: str = DEFAULT_ACCURACY,
                         references: Sequence[Reference] = ()) -> AccuracyTable:
    runs = list(runs)
    if model is None:
        models = models_of(runs, dataset)
        model = models[0] if len(models) == 1 else None
    sel = select(runs, dataset, model)
    cells = accuracy_cells(sel, accuracy)
    # A method that does not prune (dense-kd, the self-distillation references) has a 0% row; dense
    # then becomes a column of that row, so that no value sits under another method's name.
    others_at_zero = any(t == 0 and m != "dense" for (m, t) in cells)
    dense_only_at_zero = all(t == 0 for (m, t) in cells if m == "dense") and not others_at_zero
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
    ref = t.dense if t.dense is not None else t.cells.get(("dense", 0.0))
    dense = cell_text(ref) if ref is not None else DASH_MD
    return (f"Top-1 test accuracy (%), {ACCURACY_WORDS[t.accuracy]}. Each cell: mean ± sample std "
            f"(ddof = 1) over seeds, with n when n > 1. Bold: the best mean in the sparsity row (at the shown "
            f"precision; only when two or more methods have a value). {DASH_MD}: not run. †: the cell has failed "
            f"runs (listed below, never averaged in). Sparsity is measured (mean over runs): prunable = zeros / "
            f"the run's prunable weights (all conv weights, except for a method that prunes another set, like EGP: "
            f"conv without shortcuts; compare such cells by overall %); overall = zeros / (conv + linear + BN weights), the COLT-style figure. "
            f"Dense reference: {dense}.{data_note}{_inexact_caption(t)}")


def _inexact_caption(t: AccuracyTable) -> str:
    if not t.inexact_cells():
        return ""
    return (" §: the method cannot hit the target sparsity exactly (an iterative method that prunes a fraction of "
            "the remaining weights per round and stops at the first round at or beyond the target, like COLT); "
            "the cell stays in the row of its target, its realised sparsity (mean over its runs) is given under "
            "the table, and the sparsity columns of the row leave it out.")


def realised_notes(t: AccuracyTable) -> list[str]:
    """'§ colt: realised 91.26% prunable (91.17% overall) at target 90.00%', one per § cell."""
    out = []
    for c in t.inexact_cells():
        over = f" ({pct(c.overall_mean)}% overall)" if c.overall_mean is not None else ""
        real = f"{pct(c.prunable_mean)}% prunable{over}" if c.prunable_mean is not None else "not recorded"
        out.append(f"§ {c.method}: realised {real} at target {pct(c.target)}%" +
                   (f" (mean over {len(c.sparsity_prunable)} runs)." if len(c.sparsity_prunable) > 1 else "."))
    return out


def _title(t: AccuracyTable) -> str:
    model = f", {t.model}" if t.model else ""
    sel = " (selected on the test set)" if t.accuracy == "best" else ""
    return f"{dataset_title(t.dataset)}{model}: top-1 accuracy (%), {t.accuracy} epoch{sel}"


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
    dense_row = not (t.dense is None and "dense" in t.methods)      # else dense is a column of the 0% row
    if not transpose:
        header = [d.text("prunable %"), d.text("overall %")] + [d.text(m) for m in t.methods]
        rows = [["dense", "0.00"] + ([dense_txt] + [""] * (len(t.methods) - 1) if t.methods else [])]
        if not t.methods:
            header.append("dense")
            rows[0].append(dense_txt)
        if not dense_row:
            rows = []
        for tgt in t.targets:
            p, o = t.sparsity_labels(tgt)
            rows.append([p, o] + [text(m, tgt) for m in t.methods])
        return header, rows, 0 if dense_row else -1
    cols = [t.sparsity_labels(tgt) for tgt in t.targets]
    header = ["method"] + [d.text(f"{p} ({o} overall)") for p, o in cols]
    rows = [["dense"] + ([dense_txt] + [""] * (len(cols) - 1) if cols else [dense_txt])]
    if not cols:
        header.append(d.text("0.00 (dense)"))
    if not dense_row:
        rows = []
    for m in t.methods:
        rows.append([d.text(m)] + [text(m, tgt) for tgt in t.targets])
    return header, rows, 0 if dense_row else -1



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
    notes = realised_notes(t)
    if notes:
        out.append("\n".join(f"- {md_escape(n)}" for n in notes) + "\n")
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
    out += [tex_escape(n) + r"\\" for n in realised_notes(t)]
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



ACCURACY_CSV_COLUMNS = ["dataset", "model", "accuracy", "method", "target_sparsity", "sparsity_prunable",
                        "sparsity_overall", "sparsity_exact", "n", "mean", "std", "best", "n_failed", "seeds", "display"]


def accuracy_csv_rows(t: AccuracyTable) -> list[list[str]]:
    rows = []

    def row(m, tgt, c, best):
        mean, std, n = c.stats if c is not None else (None, None, 0)
        seeds = ";".join(str(s) for s in c.seeds) if c is not None else ""
        exact = "" if c is None else ("true" if c.exact else "false")
        # The measured sparsities are those of this cell's own runs (its method at its target).
        rows.append([t.dataset, t.model, t.accuracy, m, num(tgt), num(c.prunable_mean if c else None),
                     num(c.overall_mean if c else None), exact, str(n), num(mean), num(std),
                     "true" if best else "false", str(len(c.failed) if c else 0), seeds, cell_text(c)])

    if t.dense is not None or "dense" in t.selection.methods:
        row("dense", 0.0, t.dense, False)
    for tgt in t.targets:
        for m in t.methods:
            row(m, tgt, t.cell(m, tgt), (m, tgt) in t.best)
    return rows

