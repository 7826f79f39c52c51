"""The latency table: minutes per run by phase group, one row per (device name, method), and the
paper-reported minutes beside ours; Markdown, LaTeX and CSV.

The cost convention (docs/reporting.md): a run's cost is the time from a randomly initialised student
to the final pruned model, dense pre-training included ('per run'); the teacher is its own column and
'per run + teacher' adds it. A cached artifact a run reused counts in that run at what it cost when it
was made, and once in the grid total.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

from .aggregate import (ANY_MEASURE, DEFAULT_REF_METHODS, GROUP_ATTR, OLD_ACCOUNTING, GridTotal,
                        LatencyRow, Phase, accuracy_cells, grid_totals, latency_rows, match_reference, measures_of,
                        models_of, overall_by_target, resolve_ref_method, select)
from ..phases import TIMED_GROUPS
from .format import MD, TEX, Dialect, _md_table, _tex_tabular, fmt, md_escape, num, tex_escape
from .references import Reference, for_dataset
from .style import dataset_title


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
    totals: list[GridTotal] = field(default_factory=list)     # per device, each shared artifact once
    measure: str | None = None        # the records' sparsity_measure; None: old accounting
    unreachable: int = 0              # unreachable records (finished without training: no time, not failed)


def _paper_ratio(ref: Reference, refs: Sequence[Reference], ref_method: str | None) -> float | None:
    if ref_method is None:
        return None
    base = [r for r in refs if ref_method in r.labels]
    same = [r for r in base if r.sparsity == ref.sparsity or (r.sparsity_stated and ref.sparsity_stated
                                                            and abs(r.sparsity - ref.sparsity) < 1e-9)] or base
    if not same or not same[0].minutes:
        return None
    return ref.minutes / same[0].minutes


def build_latency_table(runs: Iterable[dict], dataset: str, model: str | None = None,
                        references: Sequence[Reference] = (), ref_method: str | Sequence[str] | None = None,
                        measure: str | None = ANY_MEASURE) -> LatencyTable:
    """The latency table of ``dataset`` (and ``model``) over the records of one ``measure`` (by default the
    records' only one, or the first declared one: as ``build_accuracy_table``)."""
    runs = list(runs)
    if model is None:
        models = models_of(runs, dataset)
        model = models[0] if len(models) == 1 else None
    if measure == ANY_MEASURE:
        found = measures_of(runs, dataset, model)
        measure = found[0] if found else None
    sel = select(runs, dataset, model, per_device=True, measure=measure)
    ref_m = resolve_ref_method(sel.methods, ref_method)
    rows = latency_rows(sel.ok, ref_m)
    lt = LatencyTable(dataset, model or "", ref_m, rows, len(sel.failed), totals=grid_totals(sel.ok),
                      measure=measure, unreachable=len(sel.unreachable))
    cells = accuracy_cells(sel)   # only the measured sparsities are used
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
            target = match_reference(ref, measure, overall_by_target({k: v for k, v in cells.items() if k[0] != "dense"}, m))
            for dev in devices:
                mine = [r for r in sel.ok if r["method"] == m and str(r.get("device_name") or "unknown") == dev]
                if not mine:
                    continue
                at = [r for r in mine if target is not None and abs(float(r.get("target_sparsity") or 0) - target) < 1e-9]
                if at:
                    use, note = at, "at the matched sparsity"
                elif not ref.sparsity_stated:
                    use, note = mine, "the source states no sparsity: ours over all our sparsities, not matched"
                else:
                    use, note = mine, "all sparsities (no run at a matching sparsity)"
                base = [r for r in sel.ok if r["method"] == ref_m and str(r.get("device_name") or "unknown") == dev]
                base_at = [r for r in base if target is not None and abs(float(r.get("target_sparsity") or 0) - target) < 1e-9]
                own = latency_rows(use)[0]
                ours = own.per_run_teacher
                ref_rows = latency_rows(base_at or base)
                ratio = ours / ref_rows[0].per_run_teacher if ref_rows and ref_rows[0].per_run_teacher > 0 else None
                left_out = len(own.excluded_work) + (len(ref_rows[0].excluded_work) if ref_rows else 0)
                if left_out:
                    note += (f"; ‡ {left_out} reused phase(s) made on another device left out (ours or the "
                             f"reference method's)")
                lt.paper.append(PaperLatency(ref, m, dev, target if at else None, ours, len(use), ratio, pratio, note))
    return lt


def _ref_row(lt: LatencyTable, row: LatencyRow) -> LatencyRow | None:
    return next((x for x in lt.rows if x.device == row.device and x.method == lt.ref_method), None)


def _latency_grid(lt: LatencyTable, d: Dialect) -> tuple[list[str], list[list[str]]]:
    ref = lt.ref_method or "ref"
    header = ["GPU", "method", "runs", "pretrain", "teacher", "score+prune", "retrain", "other", "per run",
              "per run + teacher", "grid GPU-min", f"× {ref}", f"× {ref} (no teacher)"]

    def m(r, attr):
        x, left_out = getattr(r, attr), r.excluded_in(attr)
        if left_out:     # a number (or a dash when nothing of the group was counted), marked
            return (d.dash if x is None else fmt(x)) + d.ddagger
        return "n/a" if x is None else fmt(x)

    def ratio(r, x, left_out, base_left_out):
        if not r.has_work:
            return "n/a"
        return d.dash if x is None else fmt(x) + "×" + (d.ddagger if left_out or base_left_out else "")

    rows = []
    for r in lt.rows:
        work = r.has_work
        base = _ref_row(lt, r)
        smark = d.ddagger if r.excluded_student else ""
        tmark = d.ddagger if r.excluded_work else ""
        rows.append([d.text(r.device), d.text(r.method), str(r.runs)] + [m(r, GROUP_ATTR[g]) for g in TIMED_GROUPS] +
                    [fmt(r.per_run) + smark if work else "n/a", fmt(r.per_run_teacher) + tmark if work else "n/a",
                     fmt(r.grid_total) + tmark if work else "n/a",
                     ratio(r, r.ratio, r.excluded_work, base is not None and base.excluded_work),
                     ratio(r, r.ratio_student, r.excluded_student, base is not None and base.excluded_student)])
    return header, rows


def _phase_list(phases: list[Phase]) -> str:
    """'teacher on cpu, round01 on cpu ×2': distinct (name, device) in order, with how often each was left out."""
    counts: dict[tuple[str, str], int] = {}
    for p in phases:
        counts[(p.name, p.device)] = counts.get((p.name, p.device), 0) + 1
    return ", ".join(f"{n} made on {dev}" + (f" ×{k}" if k > 1 else "") for (n, dev), k in sorted(counts.items()))


def excluded_notes(lt: LatencyTable) -> list[str]:
    """One line per ‡ cell: which reused phases made on another device it leaves out."""
    out = []
    for r in lt.rows:
        for g in TIMED_GROUPS:
            left_out = r.excluded_in(GROUP_ATTR[g])
            if left_out:
                out.append(f"‡ {r.device}, {r.method}, {g}: this cell excludes {len(left_out)} phase(s) whose cached "
                           f"artifact was made on another device ({_phase_list(left_out)}); its cost on this device "
                           f"is unknown.")
    return out


def other_phase_names(lt: LatencyTable) -> list[str]:
    return sorted({name for r in lt.rows for name in r.other_phases})


def _latency_caption(lt: LatencyTable) -> str:
    ref = lt.ref_method
    ratio = (f"× {ref} = (per run + teacher) / (per run + teacher) of {ref} on the same GPU (the ratio the "
             f"cheaper-than-colt claims test); × {ref} (no teacher) = per run / per run of {ref}." if ref else
             "× ref: no ratios, the reference method (tgp-kd, else tgp) was not run.")
    other = other_phase_names(lt)
    other_txt = (f" Phases counted in other: {', '.join(other)}." if other else "")
    excluded = (" ‡: the cell excludes phase(s) whose cached artifact was made on another device (listed under the "
                "table, per cell); its cost on this device is unknown. per run, per run + teacher and grid GPU-min "
                "carry ‡ when one of their cells does, and so does a ratio whose numerator or denominator does."
                if any(r.excluded for r in lt.rows) else "")
    old = f" Records: {OLD_ACCOUNTING}." if lt.measure is None and lt.rows else ""
    unreachable = f" Unreachable cells (not trained, no time): {lt.unreachable}." if lt.unreachable else ""
    return (f"Wall-clock minutes per run (mean over the method's ok runs on that GPU), by the phase group each "
            f"method declares for its phases: pretrain = training the dense model from initialisation (for an "
            f"iterative method, its dense model or round 0); teacher = training the teacher; score+prune = scoring "
            f"and pruning (with a KD fine-tune before it, or the rounds of an iterative method); retrain = the final "
            f"sparse retraining; other = any phase in none of these groups (or declaring an unknown group). Records "
            f"without declared groups: inferred from the phase name (finetune, score, prune: score+prune; a name not "
            f"known: other). Evaluation (group eval) is excluded. The cost convention (docs/reporting.md): per run "
            f"= pretrain + score+prune + retrain + other, the time from a randomly initialised student to the final "
            f"pruned model, dense pre-training included; per run + teacher adds the teacher's training. A phase "
            f"whose artifact was reused from the cache is counted at what it cost when it was made, so a shared "
            f"artifact counts in every run that uses it (and once in the grid total below); only if it was made on "
            f"the row's GPU: devices are never mixed.{excluded} grid GPU-min = the sum over runs of (per run + "
            f"teacher) × GPUs used. {ratio} Runs on different GPU models are never averaged together. n/a: not part "
            f"of the method. Failed runs excluded: {lt.failed}.{unreachable}{old}{other_txt}")


def total_lines(lt: LatencyTable) -> list[str]:
    """One sentence per device: the grid's GPU-minutes with every shared artifact counted once."""
    out = []
    for t in lt.totals:
        legacy = (f" {t.not_deduplicated} run(s) recorded before artifacts listed their phases are counted in "
                  f"full." if t.not_deduplicated else "")
        out.append(f"Grid total on {t.device}: {fmt(t.minutes)} GPU-minutes for {t.runs} runs (pretrain, teacher, "
                   f"score+prune, retrain and other; eval excluded), each of the {t.artifacts} cached artifacts "
                   f"counted once ({t.shared} of them shared by several runs); summed run by run (the grid GPU-min column) it would be "
                   f"{fmt(t.per_run_sum)}.{legacy}")
    return out


def latency_markdown(lt: LatencyTable, level: int = 2) -> str:
    h = "#" * level
    model = f", {lt.model}" if lt.model else ""
    out = [f"{h} {dataset_title(lt.dataset)}{model}: training latency (minutes)\n", _latency_caption(lt) + "\n"]
    if lt.rows:
        header, rows = _latency_grid(lt, MD)
        out.append(_md_table(header, rows, ["l", "l"] + ["r"] * (len(header) - 2)))
        notes = excluded_notes(lt)
        if notes:
            out.append("\n".join(f"- {md_escape(n)}" for n in notes) + "\n")
        out.append("\n\n".join(md_escape(t) for t in total_lines(lt)) + "\n")
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
              "GPU (ours)", "ours min/run + teacher", f"ours × {ref}", "note"]
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
    out += _tex_tabular([tex_escape(h) for h in header], rows, "ll" + "r" * (len(header) - 2), None)
    notes = excluded_notes(lt) + total_lines(lt)
    if notes:
        out.append(r"\par\smallskip\footnotesize")
        out += [tex_escape(n) + r"\\" for n in notes]
    out.append(r"\end{table}")
    if lt.paper:
        ph, prow = _paper_latency_rows(lt, TEX)
        out += ["", r"\begin{table}[t]", r"\centering",
                rf"\caption{{{tex_escape(dataset_title(lt.dataset))}: paper-reported training minutes beside ours.}}",
                rf"\label{{{label}-paper}}", r"\footnotesize"]
        out += _tex_tabular([tex_escape(h) for h in ph], prow, "lllrrrlrrl", None)
        out.append(r"\end{table}")
    return "\n".join(out) + "\n"


LATENCY_CSV_COLUMNS = ["dataset", "model", "sparsity_measure", "device", "method", "runs", "pretrain_min",
                       "teacher_min", "score_prune_min", "retrain_min", "other_min", "per_run_min",
                       "per_run_teacher_min", "grid_gpu_min", "ref_method", "ratio_to_ref", "ratio_to_ref_no_teacher",
                       "excluded_other_device", "other_phases"]


def _excluded_csv(r: LatencyRow) -> str:
    """'teacher:teacher@cpu(1); score+prune:round01@cpu(2)': per column, each reused phase made on another
    device that the row leaves out, with how many of its runs it was left out of."""
    parts = []
    for g in TIMED_GROUPS:
        counts: dict[tuple[str, str], int] = {}
        for p in r.excluded_in(GROUP_ATTR[g]):
            counts[(p.name, p.device)] = counts.get((p.name, p.device), 0) + 1
        parts += [f"{g}:{n}@{dev}({k})" for (n, dev), k in sorted(counts.items())]
    return "; ".join(parts)


def latency_csv_rows(lt: LatencyTable) -> list[list[str]]:
    return [[lt.dataset, lt.model, lt.measure or "", r.device, r.method, str(r.runs), num(r.pretrain), num(r.teacher),
             num(r.score_prune), num(r.retrain), num(r.other), num(r.per_run if r.has_work else None),
             num(r.per_run_teacher if r.has_work else None), num(r.grid_total if r.has_work else None),
             lt.ref_method or "", num(r.ratio), num(r.ratio_student), _excluded_csv(r), "; ".join(r.other_phases)]
            for r in lt.rows]
