"""The accuracy table: one cell per (method, target sparsity) on one sparsity measure, the dense
reference row, each method's budget, failed, unreachable and superseded runs, and the
paper-reported values matched to our cells; Markdown, LaTeX and CSV.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from .aggregate import (ACCURACY_WORDS, ANY_MEASURE, COLLAPSE_DENSITY, DEFAULT_ACCURACY, MEASURE_WORDS, OLD_ACCOUNTING,
                        TOLERANCE, CellStats, Selection, accuracy_cells, augment_differs, budget_basis, budget_ratio,
                        collapse_text, collapsed_layers, epochs_range, grid_augment, head_density, match_reference,
                        measures_of, models_of, overall_by_target, run_augments, select, target_scale)
from .format import (DASH_MD, MD, PLAIN, TEX, Dialect, _md_table, _tex_tabular, fmt, fmt_signed, md_escape, num, pct,
                     tex_escape)
from .references import Reference, for_dataset
from .style import dataset_title

METRIC_WORDS = {"top1": "Top-1", "top5": "Top-5"}


def fmt_pct(x: float) -> str:
    return f"{100 * x:g}"


def _realised_differs(c: CellStats, target: float | None) -> bool:
    return target is not None and c.realised_mean is not None and pct(c.realised_mean) != pct(target)


def cell_text(c: CellStats | None, d: Dialect = PLAIN, bold: bool = False, target: float | None = None) -> str:
    """'mean ± std (n=k)' (std and n only when n > 1), the mean in bold when best; with ``target``, ' at X%'
    when the cell's mean realised sparsity differs from it at the shown precision. 'unreachable (max X%)'
    for a cell whose method cannot reach the target; a dash when no value. Marks: † failed runs, § off
    target, ¶ unreachable."""
    if c is None:
        return d.dash
    marks = (d.dagger if c.failed else "") + (d.section if not c.on_target else "") + \
        (d.pilcrow if c.is_unreachable else "") + (d.collapse if any(collapsed_layers(r) for r in c.runs) else "")
    if c.n == 0:
        if c.is_unreachable and not c.runs:
            top = c.max_sparsity
            return "unreachable" + (f" (max {pct(top)}{d.percent})" if top is not None else "") + marks
        return d.dash + marks
    m, s, n = c.stats
    out = d.bold(fmt(m)) if bold else fmt(m)
    if n > 1:
        out += d.pm + fmt(s) + d.n(n)
    if _realised_differs(c, target):
        out += f" at {pct(c.realised_mean)}{d.percent}"
    return out + marks


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
class MethodBudget:
    """What a method's runs in one table cost and how they were run: student and teacher epochs (full-data-
    epoch equivalents), the ratio to the grid's reference budget, the prunable set, the head kept, and the
    augmentations that differ from the grid's."""
    method: str
    student: list[float] = field(default_factory=list)
    teacher: list[float] = field(default_factory=list)
    no_budget: int = 0          # ok runs without a recorded budget
    ratio: list[float] = field(default_factory=list)
    sets: set = field(default_factory=set)
    head: list[float] = field(default_factory=list)
    augment: dict = field(default_factory=dict)          # augmentation text -> phases, where not the grid's
    basis: set = field(default_factory=set)

    def text(self, which: str) -> str | None:
        """'11', '16–27' (the range over the method's targets and seeds); None: no run records a budget."""
        if which == "ratio":
            vals = sorted(set(round(x, 2) for x in self.ratio))
            if not vals:
                return None
            lo, hi = f"{vals[0]:.2f}×", f"{vals[-1]:.2f}×"
            return lo if lo == hi else f"{lo}–{hi}"
        if which == "set":
            return ", ".join(sorted(self.sets)) or None
        if which == "head":
            if not self.head:
                return None
            lo, hi = pct(min(self.head)), pct(max(self.head))
            return lo if lo == hi else f"{lo}–{hi}"
        if which == "augment":
            return ("differs" if self.augment else "grid") if (self.student or self.no_budget == 0) else None
        return epochs_range(self.student if which == "student" else self.teacher)

    def add(self, r: dict) -> None:
        rt = budget_ratio(r)
        if rt is not None:
            self.ratio.append(rt)
        if budget_basis(r):
            self.basis.add(budget_basis(r))
        if r.get("prunable_set") and float(r.get("target_sparsity") or 0) > 0:
            self.sets.add(str(r["prunable_set"]))
        h = head_density(r)
        if h is not None:
            self.head.append(h)
        for text, phases in augment_differs(r).items():
            self.augment.setdefault(text, set()).update(phases)


# The rows under the grid, one value per method: (label, MethodBudget.text key).
METHOD_ROWS = (("student epochs", "student"), ("teacher epochs", "teacher"), ("× reference budget", "ratio"),
               ("prunable set", "set"), ("head kept %", "head"), ("augmentation", "augment"))


@dataclass
class AccuracyTable:
    dataset: str
    model: str
    accuracy: str
    methods: list[str]                 # columns (dense excluded)
    targets: list[float]               # rows: fractions of the measure (old accounting: of each method's own set)
    cells: dict[tuple[str, float], CellStats]
    dense: CellStats | None
    selection: Selection
    best: set[tuple[str, float]] = field(default_factory=set)
    paper: list[PaperMatch] = field(default_factory=list)
    measure: str | None = None         # the records' sparsity_measure; None: old accounting
    metric: str = "top1"
    scale: str = ""                    # what bold compares on: the measure (old accounting: the commonest set)
    budgets: dict[str, MethodBudget] = field(default_factory=dict)

    @property
    def old_accounting(self) -> bool:
        return self.measure is None

    def cell(self, method: str, target: float) -> CellStats | None:
        return self.cells.get((method, target))

    def sparsity_labels(self, target: float) -> tuple[str, str]:
        """(target label, overall %) of a row. The target label is the target (old accounting: the measured
        sparsity of each method's own set, a range if methods differ); overall % is measured over the row's
        ok cells that are on target (all its ok cells when none is)."""
        cs = [c for (m, t), c in self.cells.items() if t == target and m != "dense" and c.runs]
        cs = [c for c in cs if c.on_target] or cs
        over = [c.overall_mean for c in cs if c.overall_mean is not None]
        if not self.old_accounting:
            return pct(target), _range_label(over, DASH_MD)
        prun = [c.prunable_mean for c in cs if c.prunable_mean is not None]
        p = _range_label(prun, pct(target))
        if prun and pct(target) not in p.split("–"):
            p += f" (target {pct(target)})"
        return p, _range_label(over, DASH_MD)

    def off_target_cells(self) -> list[CellStats]:
        """Cells with ok runs off target (§), in row then column order."""
        return [c for tgt in self.targets for m in self.methods
                if (c := self.cell(m, tgt)) is not None and not c.on_target]


    def unreachable_cells(self) -> list[CellStats]:
        return [c for tgt in self.targets for m in self.methods
                if (c := self.cell(m, tgt)) is not None and c.is_unreachable]

    def paper_for(self, method: str, target: float) -> list[PaperMatch]:
        return [pm for pm in self.paper if pm.method == method and pm.target == target and pm.ours is not None]


def _range_label(vals: list[float], fallback: str) -> str:
    if not vals:
        return fallback
    lo, hi = min(vals), max(vals)
    return pct(lo) if pct(lo) == pct(hi) else f"{pct(lo)}–{pct(hi)}"


def _paper_matches(refs: Sequence[Reference], sel: Selection, cells: dict, model: str, measure: str | None
                   ) -> list[PaperMatch]:
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
            pm.target = match_reference(ref, measure, table)
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
                pm.note = ("unreachable at this sparsity" if c is not None and c.is_unreachable else
                           "only failed runs" if c is not None and c.failed else "not run at this sparsity")
                continue
            pm.ours = c
            pm.note = ("matched on conv sparsity" if ref.sparsity_conv is not None and measure in (None, "conv")
                       else "matched on nearest overall sparsity")
            if not c.on_target:
                pm.note += f"; § off target: realised {pct(c.realised_mean)}%, not the target {pct(pm.target)}%"
    return out


def _bold_scale(sel: Selection) -> str:
    """The scale bold compares on: the one most of the table's ok runs have their target on (the measure for
    new records; old accounting: the prunable set most methods count their target over); ties A-Z."""
    counts = Counter(target_scale(r) for r in sel.ok if float(r.get("target_sparsity") or 0) > 0)
    if not counts:
        return ""
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]


def _budgets(cells: dict[tuple[str, float], CellStats], methods: Iterable[str]) -> dict[str, MethodBudget]:
    out = {m: MethodBudget(m) for m in methods}
    for (m, _), c in sorted(cells.items()):
        b = out.setdefault(m, MethodBudget(m))
        b.student += c.student_epochs
        b.teacher += c.teacher_epochs
        b.no_budget += c.no_budget
        for r in c.runs:
            b.add(r)
    return out


def build_accuracy_table(runs: Iterable[dict], dataset: str, model: str | None = None, accuracy: str = DEFAULT_ACCURACY,
                         references: Sequence[Reference] = (), metric: str = "top1",
                         measure: str | None = ANY_MEASURE) -> AccuracyTable:
    """The table of ``dataset`` (and ``model``) on one ``measure``: by default the records' only measure, or
    when they have several the first declared one (``measures_of``; None selects the old-accounting
    records). Tables never mix measures: ``build_dataset_tables`` makes one per measure."""
    runs = list(runs)
    if model is None:
        models = models_of(runs, dataset)
        model = models[0] if len(models) == 1 else None
    if measure == ANY_MEASURE:
        found = measures_of(runs, dataset, model)
        measure = found[0] if found else None
    sel = select(runs, dataset, model, measure=measure)
    cells = accuracy_cells(sel, accuracy, metric)
    # A method that does not prune (dense-kd, the self-distillation references) has a 0% row; dense
    # then becomes a column of that row, so that no value sits under another method's name.
    others_at_zero = any(t == 0 and m != "dense" for (m, t) in cells)
    dense_only_at_zero = all(t == 0 for (m, t) in cells if m == "dense") and not others_at_zero
    methods = [m for m in sel.methods if not (m == "dense" and dense_only_at_zero)]
    dense = cells.get(("dense", 0.0)) if dense_only_at_zero else None
    targets = sorted({t for (m, t) in cells if m in methods})
    scale = _bold_scale(sel)
    best: set[tuple[str, float]] = set()
    for t in targets:
        # Only cells whose runs are all on target (and, at a nonzero target, on the table's scale) compete.
        vals = {m: round(c.mean, 2) for m in methods if (c := cells.get((m, t))) is not None and c.comparable
                and (t == 0 or c.scales == {scale})}
        if len(vals) >= 2:
            top = max(vals.values())
            best |= {(m, t) for m, v in vals.items() if v == top}
    refs = for_dataset(references, dataset, top1=True) if metric == "top1" else []
    return AccuracyTable(dataset, model or "", accuracy, methods, targets, cells, dense, sel, best,
                         _paper_matches(refs, sel, cells, model or "", measure), measure, metric, scale,
                         _budgets(cells, sel.methods))


# --------------------------------------------------------------------------- captions and notes

def data_sizes(runs: Iterable[dict]) -> list[str]:
    """What the runs trained and tested on, as their records say: '4,000 train / 2,000 test images at
    32 px (resized from 64 px at load)', one entry per distinct shape (records without sizes: none)."""
    shapes = []
    for r in runs:
        d = r.get("data") or {}
        if d.get("n_train") is None:
            continue
        s = (d["n_train"], d.get("n_test"), d.get("image_size"), d.get("resized_from"), d.get("n_monitor"),
             d.get("num_classes"))
        if s not in shapes:
            shapes.append(s)
    out = []
    for n_train, n_test, size, resized_from, n_monitor, classes in shapes:
        text = f"{n_train:,} train" + (f" / {n_test:,} test" if n_test is not None else "") + " images"
        text += f" of {classes} classes" if classes else ""
        text += f" at {size} px" if size else ""
        text += f" (resized from {resized_from} px at load)" if resized_from else ""
        if n_monitor is not None and n_test is not None and n_monitor < n_test:
            text += f" (final accuracy on all {n_test:,} test images; each epoch monitored on {n_monitor:,})"
        out.append(text)
    return out


def _caption(t: AccuracyTable) -> str:
    official = {(r.get("data") or {}).get("official") for r in t.selection.ok}
    data_note = ""
    if False in official:
        data_note = " Data: NOT the official dataset (a subset or synthetic data) for some or all runs."
    sizes = data_sizes(t.selection.ok)
    if sizes:
        data_note += f" {'Data' if not data_note else 'Sizes'}: {'; '.join(sizes)}."
    ref = t.dense if t.dense is not None else t.cells.get(("dense", 0.0))
    dense = cell_text(ref) if ref is not None else DASH_MD
    dense_budget = t.budgets.get("dense").text("student") if "dense" in t.budgets else None
    if dense_budget is not None and ref is not None:
        dense += f" ({dense_budget} epochs)"
    tol = fmt(100 * TOLERANCE)
    if t.old_accounting:
        rows = (f"Rows: target sparsities, {OLD_ACCOUNTING}: a row holds networks of different sizes. prunable % = "
                f"measured zeros / the run's own prunable set (a range when methods differ; cells marked § are left "
                f"out); overall % = zeros / (conv + linear + BN weights), the COLT-style figure: compare cells by it. "
                f"Bold also requires the cell's target to be over {t.scale or 'conv'}, the set most runs count their "
                f"target over. ")
    else:
        rows = (f"Rows: the grid's target sparsities on the {t.measure} measure ({MEASURE_WORDS.get(t.measure, '')}); "
                f"each method prunes its own set and lands the network within {tol} percentage points of the target, "
                f"or its cell is marked. 'at X%': the mean realised {t.measure} sparsity of the cell's runs, shown "
                f"where it differs from the target at the shown precision. measured overall % = zeros / (conv + "
                f"linear + BN weights), mean over the row's on-target cells. ")
    off = (f" §: off target (the realised sparsity misses the target by more than {tol} points; given below): never "
           f"bold, never paired in claims." if t.off_target_cells() else "")
    unreachable = (" ¶: unreachable: the method's own prunable set, pruned whole, cannot reach the target (its maximum "
                   "shown); never bold or paired, not a failure." if t.unreachable_cells() else "")
    if collapse_notes(t):
        unreachable += (f" ∅: layer collapse: a run of the cell keeps under {fmt_pct(COLLAPSE_DENSITY)}% of some "
                        f"layer's weights (named below).")
    return (f"{METRIC_WORDS[t.metric]} test accuracy (%), {ACCURACY_WORDS[t.accuracy]}. {rows}Each cell: mean ± sample "
            f"std (ddof = 1) over seeds, with n when n > 1. Bold: the best mean in the row (at the shown precision) "
            f"among the cells whose runs are all on target, only when two or more such cells have a value. "
            f"{DASH_MD}: not run. †: the cell has failed runs (listed below, never averaged in).{off}{unreachable} "
            f"Below the table, per method: its budget (student and teacher epochs, the ratio to the grid's "
            f"reference), prunable set, head kept and augmentation. Dense reference: {dense}.{data_note}")


def realised_notes(t: AccuracyTable) -> list[str]:
    """One line per § (off-target) cell: its realised sparsity and why it missed."""
    out = []
    for c in t.off_target_cells():
        k = len(c.realised)
        runs = f" (mean over {k} runs)" if k > 1 else ""
        if t.old_accounting:
            over = f" ({pct(c.overall_mean)}% overall)" if c.overall_mean is not None else ""
            real = f"{pct(c.prunable_mean)}% prunable{over}" if c.prunable_mean is not None else "not recorded"
            out.append(f"§ {c.method}: realised {real} at target {pct(c.target)}%{runs}.")
            continue
        why = sorted({str(r.get("off_target_reason")) for r in c.off_target if r.get("off_target_reason")})
        real = f"{pct(c.realised_mean)}% {t.measure}" if c.realised_mean is not None else "not recorded"
        out.append(f"§ {c.method}: off target: realised {real} at target {pct(c.target)}%{runs}"
                   + (f"; {'; '.join(why)}" if why else "") + ".")
    return out


def unreachable_notes(t: AccuracyTable) -> list[str]:
    """One line per ¶ (unreachable) cell: the most its set reaches, and the recorded reason."""
    out = []
    for c in t.unreachable_cells():
        reasons = sorted({str(r.get("reason")) for r in c.unreachable if r.get("reason")})
        top = f"at most {pct(c.max_sparsity)}% {t.measure or ''}".rstrip() if c.max_sparsity is not None else \
            "maximum not recorded"
        k = len(c.unreachable)
        out.append(f"¶ {c.method} at {pct(c.target)}%: unreachable, {top} ({k} run{'s' if k > 1 else ''}; not "
                   f"trained, not a failure)" + (f": {'; '.join(reasons)}" if reasons else "") + ".")
    return out


def budget_notes(t: AccuracyTable) -> list[str]:
    """What the budget rows count, which methods have none recorded, and whose augmentation differs."""
    if not t.budgets:
        return []
    if not any(b.student for b in t.budgets.values()):
        return [f"{DASH_MD} in the budget rows: no record of this table carries a budget (made before budgets "
                f"were recorded)."]
    out = ["student epochs: the runs' budget.student_epochs, in full-data-epoch equivalents (every training phase "
           "but the teacher's, from initialisation: dense pre-training included, a cached phase counted as made, a "
           "half-data COLT epoch as half); teacher epochs: budget.teacher_epochs (0: no teacher). A range min–max "
           "when it varies over the method's targets and seeds."]
    missing = [m for m, b in t.budgets.items() if b.no_budget and (m in t.methods or m == "dense")]
    if missing:
        out.append(f"{DASH_MD} in the budget rows: no budget recorded (records made before budgets were): "
                   f"{', '.join(missing)}.")
    out += basis_notes(t) + augment_notes(t)
    return out


def augment_notes(t: AccuracyTable) -> list[str]:
    """'Augmentation: the grid's is crop 4, flip, rotate 15°; differs: egp (crop 4, flip, no rotation:
    pretrain, round01, ...).' Every method whose runs train with another augmentation than the grid's
    (``dataset.augment`` of the run's config) is named, whatever the majority does; records without a config
    are compared with the commonest augmentation instead."""
    grids = sorted({g for r in t.selection.ok if (g := grid_augment(r)) is not None})
    differs: dict[str, dict[str, set]] = {m: dict(b.augment) for m, b in sorted(t.budgets.items()) if b.augment}
    per_run = [(r["method"], a) for r in t.selection.ok if grid_augment(r) is None and (a := run_augments(r))]
    if per_run:
        common = Counter(tuple(sorted(a)) for _, a in per_run).most_common()
        top = sorted(common, key=lambda kv: (-kv[1], kv[0]))[0][0]
        grids = sorted(set(grids) | set(top))
        for m, a in per_run:
            if tuple(sorted(a)) != top:
                for text, phases in ({x: ps for x, ps in a.items() if x not in top} or a).items():
                    differs.setdefault(m, {}).setdefault(text, set()).update(phases)
    if not grids:
        return []

    def phases_text(ps):
        ps = sorted(ps)
        return ", ".join(ps[:4]) + (f", … ({len(ps)} phases)" if len(ps) > 4 else "")

    parts = [f"{m} ({'; '.join(f'{text}: {phases_text(ps)}' for text, ps in sorted(d.items()))})"
             for m, d in sorted(differs.items())]
    return [f"Augmentation: the grid's is {' / '.join(grids)}; "
            + (f"differs: {', '.join(parts)}." if parts else "every method trains with it.")]


def collapse_notes(t: AccuracyTable) -> list[str]:
    """One line per ∅ cell: the layers its runs (nearly) emptied, and in how many runs."""
    out = []
    for tgt in t.targets:
        for m in t.methods:
            c = t.cell(m, tgt)
            if c is None or not c.runs:
                continue
            hit = [collapsed_layers(r) for r in c.runs]
            hit = [h for h in hit if h]
            if not hit:
                continue
            layers: dict[str, float] = {}
            for h in hit:
                for k, v in h.items():
                    layers[k] = max(v, layers.get(k, 0.0))
            out.append(f"∅ {m} at {pct(tgt)}%: layer collapse in {len(hit)} of {len(c.runs)} runs: "
                       f"{collapse_text(layers)} (the most any of them kept).")
    return out


def basis_notes(t: AccuracyTable) -> list[str]:
    """The budget basis of the table's runs and what × reference budget divides by."""
    bases = sorted({x for b in t.budgets.values() for x in b.basis})
    if not bases:
        return []
    return [f"Budget basis: {', '.join(bases)} (bench/budget.py; equal: every row that trains one schedule from "
            f"initialisation gets the proposed pipeline's student epochs, pretrain + fine-tune + retrain). "
            f"× reference budget: a run's student epochs over that reference; iterative methods keep their own "
            f"protocol and cost more. prunable set: what the method prunes; head kept %: the classifier head's "
            f"weights kept (100: the head stays dense)."]


def _title(t: AccuracyTable) -> str:
    model = f", {t.model}" if t.model else ""
    sel = " (selected on the test set)" if t.accuracy == "best" else ""
    scale = "old accounting" if t.old_accounting else f"{t.measure} sparsity"
    return (f"{dataset_title(t.dataset)}{model}: {METRIC_WORDS[t.metric].lower()} accuracy (%), {t.accuracy} "
            f"epoch{sel}, {scale}")


# --------------------------------------------------------------------------- the grid

def _budget_cells(t: AccuracyTable, d: Dialect, which: str, methods: Sequence[str] | None = None) -> list[str]:
    return [d.text(t.budgets[m].text(which) or d.dash) if m in t.budgets else d.dash
            for m in (t.methods if methods is None else methods)]


def _grid(t: AccuracyTable, d: Dialect, transpose: bool, paper_inline: bool) -> tuple[list[str], list[list[str]], int, int]:
    """(header, rows, index of the dense row or -1, index of the first budget row (transpose: -1)); the dense
    row's value sits in the first data column."""

    def text(m, tgt):
        c = t.cell(m, tgt)
        s = cell_text(c, d, (m, tgt) in t.best, tgt)
        if paper_inline:
            for pm in t.paper_for(m, tgt):
                s += f"; paper {fmt(pm.ref.top1)} ({fmt_signed(pm.diff)})"
        return s

    dense_txt = cell_text(t.dense, d) if t.dense is not None else d.dash
    dense_row = not (t.dense is None and "dense" in t.methods)      # else dense is a column of the 0% row
    first = "prunable %" if t.old_accounting else f"target {t.measure} %"
    second = "overall %" if t.old_accounting else "measured overall %"
    if not transpose:
        header = [d.text(first), d.text(second)] + [d.text(m) for m in t.methods]
        rows = [["dense", "0.00"] + ([dense_txt] + [""] * (len(t.methods) - 1) if t.methods else [])]
        if not t.methods:
            header.append("dense")
            rows[0].append(dense_txt)
        if not dense_row:
            rows = []
        for tgt in t.targets:
            p, o = t.sparsity_labels(tgt)
            rows.append([p, o] + [text(m, tgt) for m in t.methods])
        budget_at = len(rows)
        if t.methods:
            rows += [[d.text(label), ""] + _budget_cells(t, d, key) for label, key in METHOD_ROWS]
        return header, rows, 0 if dense_row else -1, budget_at if t.methods else -1

    def col(tgt):
        p, o = t.sparsity_labels(tgt)
        return p if t.measure == "overall" else f"{p} ({o} overall)"

    cols = [col(tgt) for tgt in t.targets]
    header = ["method"] + [d.text(c) for c in cols] + [d.text(label) for label, _ in METHOD_ROWS]

    def facts(m):
        return [(_budget_cells(t, d, key, [m])[0]) for _, key in METHOD_ROWS]

    rows = [["dense"] + ([dense_txt] + [""] * (len(cols) - 1) if cols else [dense_txt]) + facts("dense")]
    if not cols:
        header.insert(1, d.text("0.00 (dense)"))
    if not dense_row:
        rows = []
    for m in t.methods:
        rows.append([d.text(m)] + [text(m, tgt) for tgt in t.targets] + facts(m))
    return header, rows, 0 if dense_row else -1, -1


def _run_line(r: dict, d: Dialect) -> str:
    err = (r.get("error") or "no error recorded").strip().splitlines()
    err = err[0] if err else "no error recorded"
    if len(err) > 160:
        err = err[:157] + "..."
    sp = pct(float(r.get("target_sparsity") or 0))
    return d.text(f"{r.get('method')}, sparsity {sp}%, seed {r.get('seed')}, run {r.get('run_id')}, "
                  f"{r.get('device_name') or 'unknown device'}: {err}")


def _paper_rows(t: AccuracyTable, d: Dialect) -> tuple[list[str], list[list[str]]]:
    header = ["method (ours)", "reported as", "source", "reported sparsity %", "matched target %",
              "paper top-1", "epoch (source)", f"ours ({t.accuracy})", "ours − paper", "note"]
    rows = []
    for pm in t.paper:
        ref = pm.ref
        rows.append([d.text(pm.method), d.text(ref.reported_as), d.text(ref.source_text()), d.text(ref.sparsity_text()),
                     pct(pm.target) if pm.target is not None else d.dash, fmt(ref.top1), ref.accuracy,
                     cell_text(pm.ours, d) if pm.ours is not None else d.dash,
                     fmt_signed(pm.diff) if pm.diff is not None else d.dash, d.text(pm.note)])
    return header, rows


def table_notes(t: AccuracyTable) -> list[str]:
    """The lines under the table: §, ¶ and ∅ cells, then the budget notes."""
    return realised_notes(t) + unreachable_notes(t) + collapse_notes(t) + budget_notes(t)


def accuracy_markdown(t: AccuracyTable, transpose: bool = False, paper: str = "block", level: int = 2) -> str:
    h = "#" * level
    header, rows, _, _ = _grid(t, MD, transpose, paper == "inline")
    out = [f"{h} {_title(t)}\n"]
    if t.old_accounting:
        out.append(f"**{OLD_ACCOUNTING[0].upper() + OLD_ACCOUNTING[1:]}.**\n")
    out += [_caption(t) + "\n", _md_table(header, rows, ["l"] + ["r"] * (len(header) - 1))]
    notes = table_notes(t)
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
    if sel.unreachable:
        lines.append(f"\nUnreachable cells: {len(sel.unreachable)} record(s) (finished, not failed; marked ¶).")
    if sel.superseded:
        lines.append(f"\nSuperseded runs: {len(sel.superseded)} (an older record of the same cell and seed "
                     f"with a different run id; not averaged in).")
        lines += [f"- {md_escape(r.get('method'))}, sparsity {pct(float(r.get('target_sparsity') or 0))}%, "
                  f"seed {r.get('seed')}, run {r.get('run_id')}" for r in sel.superseded]
    return "\n".join(lines) + "\n"


def _tex_label(t: AccuracyTable) -> str:
    return (f"tab:acc-{t.dataset}" + (f"-{t.model}" if t.model else "") + ("-top5" if t.metric == "top5" else "")
            + (f"-{t.measure}" if t.measure and t.measure != "overall" else "") + ("-old" if t.old_accounting else ""))


def accuracy_latex(t: AccuracyTable, transpose: bool = False, paper: str = "block") -> str:
    header, rows, dense_row, budget_at = _grid(t, TEX, transpose, paper == "inline")
    label_cols = 1 if transpose else 2
    spec = ("l" if transpose else "ll") + "r" * (len(header) - label_cols)
    label = _tex_label(t)
    out = [r"\begin{table}[t]", r"\centering", rf"\caption{{{tex_escape(_title(t))}. {tex_escape(_caption(t))}}}",
           rf"\label{{{label}}}", r"\small"]
    span = len(t.targets) if transpose else None        # transposed: the dense value spans the targets only
    out += _tex_tabular(header, rows, spec, dense_row, label_cols, rule_before=budget_at, span=span)
    sel = t.selection
    out.append(r"\par\smallskip\footnotesize")
    out += [tex_escape(n) + r"\\" for n in table_notes(t)]
    out.append(f"Failed runs: {len(sel.failed)} (not averaged in)." + ("" if not sel.failed else r"\\"))
    out += [rf"{_run_line(r, TEX)}\\" for r in sel.failed]
    if sel.unreachable:
        out.append(rf"\\Unreachable cells: {len(sel.unreachable)} record(s) (finished, not failed).")
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


ACCURACY_CSV_COLUMNS = ["dataset", "model", "metric", "accuracy", "sparsity_measure", "method", "target_sparsity",
                        "cell_status", "sparsity_realised", "sparsity_prunable", "sparsity_overall", "on_target",
                        "max_sparsity", "n", "mean", "std", "best", "n_failed", "n_unreachable", "seeds",
                        "student_epochs_min", "student_epochs_max", "teacher_epochs_min", "teacher_epochs_max",
                        "augment", "display"]


def cell_status(c: CellStats | None) -> str:
    """ok | off-target | unreachable | failed (only failed runs) | not run."""
    if c is None:
        return "not run"
    if c.is_unreachable:
        return "unreachable"
    if c.runs:
        return "ok" if c.on_target else "off-target"
    return "failed" if c.failed else "not run"


def accuracy_csv_rows(t: AccuracyTable) -> list[list[str]]:
    rows = []

    def lo_hi(vals):
        return (num(min(vals)), num(max(vals))) if vals else ("", "")

    def row(m, tgt, c, best):
        mean, std, n = c.stats if c is not None else (None, None, 0)
        seeds = ";".join(str(s) for s in c.seeds) if c is not None else ""
        on = "" if c is None or not c.runs else ("true" if c.on_target else "false")
        augment = ";".join(sorted({a for r in c.runs for a in run_augments(r)})) if c is not None else ""
        # The measured sparsities are those of this cell's own runs (its method at its target).
        rows.append([t.dataset, t.model, t.metric, t.accuracy, t.measure or "", m, num(tgt),
                     cell_status(c), num(c.realised_mean if c else None), num(c.prunable_mean if c else None),
                     num(c.overall_mean if c else None), on, num(c.max_sparsity if c else None), str(n), num(mean),
                     num(std), "true" if best else "false", str(len(c.failed) if c else 0),
                     str(len(c.unreachable) if c else 0), seeds, *lo_hi(c.student_epochs if c else []),
                     *lo_hi(c.teacher_epochs if c else []), augment, cell_text(c, PLAIN, False, tgt)])

    if t.dense is not None or "dense" in t.selection.methods:
        row("dense", 0.0, t.dense, False)
    for tgt in t.targets:
        for m in t.methods:
            row(m, tgt, t.cell(m, tgt), (m, tgt) in t.best)
    return rows
