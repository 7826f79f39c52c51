"""The latency table: minutes per run by phase group, one row per (device name, method), and the
paper-reported minutes beside ours; Markdown, LaTeX and CSV.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

from .aggregate import (DEFAULT_REF_METHODS, GROUP_ATTR, TIMED_GROUPS, GridTotal, LatencyRow, Phase, accuracy_cells,
                        grid_totals, latency_rows, models_of, overall_by_target, resolve_ref_method, select)
from .format import MD, TEX, Dialect, _md_table, _tex_tabular, fmt, md_escape, num, tex_escape
from .references import Reference, for_dataset, match_target
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
                        references: Sequence[Reference] = (), ref_method: str | Sequence[str] | None = None
                        ) -> LatencyTable:
    runs = list(runs)
    if model is None:
        models = models_of(runs, dataset)
        model = models[0] if len(models) == 1 else None
    sel = select(runs, dataset, model, per_device=True)
    ref_m = resolve_ref_method(sel.methods, ref_method)
    rows = latency_rows(sel.ok, ref_m)
    lt = LatencyTable(dataset, model or "", ref_m, rows, len(sel.failed), totals=grid_totals(sel.ok))
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
            target = match_target(ref, overall_by_target({k: v for k, v in cells.items() if k[0] != "dense"}, m))
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
                ours = own.per_run
                ref_rows = latency_rows(base_at or base)
                ratio = ours / ref_rows[0].per_run if ref_rows and ref_rows[0].per_run > 0 else None
                left_out = len(own.excluded_work) + (len(ref_rows[0].excluded_work) if ref_rows else 0)
                if left_out:
                    note += (f"; ‡ {left_out} reused phase(s) made on another device left out (ours or the "
                             f"reference method's)")
                lt.paper.append(PaperLatency(ref, m, dev, target if at else None, ours, len(use), ratio, pratio, note))
    return lt


COLUMN_OF = {GROUP_ATTR[g]: g for g in TIMED_GROUPS}     # LatencyRow attribute -> column name


def _ref_row(lt: LatencyTable, row: LatencyRow) -> LatencyRow | None:
    return next((x for x in lt.rows if x.device == row.device and x.method == lt.ref_method), None)


def _latency_grid(lt: LatencyTable, d: Dialect) -> tuple[list[str], list[list[str]]]:
    ref = lt.ref_method or "ref"
    header = ["GPU", "method", "runs", "pretrain", "teacher", "score+prune", "retrain", "other", "per run",
              "grid GPU-min", f"× {ref}"]

    def m(r, attr):
        x, left_out = getattr(r, attr), r.excluded_in(attr)
        if left_out:     # a number (or a dash when nothing of the group was counted), marked
            return (d.dash if x is None else fmt(x)) + d.ddagger
        return "n/a" if x is None else fmt(x)

    rows = []
    for r in lt.rows:
        work = r.has_work
        mark = d.ddagger if r.excluded_work else ""
        base = _ref_row(lt, r)
        rmark = d.ddagger if r.ratio is not None and (r.excluded_work or (base is not None and base.excluded_work)) else ""
        ratio = "n/a" if not work or r.method == "dense" else (d.dash if r.ratio is None else fmt(r.ratio) + "×" + rmark)
        rows.append([d.text(r.device), d.text(r.method), str(r.runs)] + [m(r, GROUP_ATTR[g]) for g in TIMED_GROUPS] +
                    [fmt(r.per_run) + mark if work else "n/a", fmt(r.grid_total) + mark if work else "n/a", ratio])
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
    ratio = (f"× {ref} = per run / per run of {ref} on the same GPU." if ref else
             "× ref: no ratios, the reference method (tgp-kd, else tgp) was not run.")
    other = other_phase_names(lt)
    other_txt = (f" Phases counted in other: {', '.join(other)}." if other else "")
    excluded = (" ‡: the cell excludes phase(s) whose cached artifact was made on another device (listed under the "
                "table, per cell); its cost on this device is unknown. per run and grid GPU-min carry ‡ when one of "
                "their cells does, and so does a ratio whose numerator or denominator does."
                if any(r.excluded for r in lt.rows) else "")
    return (f"Wall-clock minutes per run (mean over the method's ok runs on that GPU), by the phase group each "
            f"method declares for its phases: teacher = training the teacher; score+prune = scoring and pruning "
            f"(with a KD fine-tune before it, or the rounds of an iterative method); retrain = the final sparse "
            f"retraining; other = any phase in none of these groups (or declaring an unknown group). Records "
            f"without declared groups: inferred from the phase name (finetune, score, prune: score+prune; a name "
            f"not known: other). Evaluation (group eval) is excluded. pretrain (the dense model every pruning "
            f"method starts from) is shown apart and is not part of 'per run' (a dense run consists of it alone: "
            f"its per run is n/a). per run = teacher + score+prune + retrain + other. A phase whose artifact was "
            f"reused from the cache is counted at what it cost when it was made (the honest per-run cost), so "
            f"shared artifacts count once per run; only if it was made on the row's GPU: devices are never mixed."
            f"{excluded} grid GPU-min = the sum over runs of per run × GPUs used. {ratio} Runs on different GPU "
            f"models are never averaged together. n/a: not part of the method. Failed runs excluded: {lt.failed}."
            f"{other_txt}")


def total_lines(lt: LatencyTable) -> list[str]:
    """One sentence per device: the grid's GPU-minutes with every shared artifact counted once."""
    out = []
    for t in lt.totals:
        legacy = (f" {t.not_deduplicated} run(s) recorded before artifacts listed their phases are counted in "
                  f"full." if t.not_deduplicated else "")
        out.append(f"Grid total on {t.device}: {fmt(t.minutes)} GPU-minutes for {t.runs} runs (pretrain, teacher, "
                   f"score+prune, retrain and other; eval excluded), each of the {t.artifacts} cached artifacts "
                   f"counted once ({t.shared} of them shared by several runs); summed run by run it would be "
                   f"{fmt(t.per_run_sum)}.{legacy}")
    return out


def latency_markdown(lt: LatencyTable, level: int = 2) -> str:
    h = "#" * level
    model = f", {lt.model}" if lt.model else ""
    out = [f"{h} {dataset_title(lt.dataset)}{model}: training latency (minutes)\n", _latency_caption(lt) + "\n"]
    if lt.rows:
        header, rows = _latency_grid(lt, MD)
        out.append(_md_table(header, rows, ["l", "l"] + ["r"] * 9))
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
    out += _tex_tabular([tex_escape(h) for h in header], rows, "llrrrrrrrrr", None)
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


LATENCY_CSV_COLUMNS = ["dataset", "model", "device", "method", "runs", "pretrain_min", "teacher_min",
                       "score_prune_min", "retrain_min", "other_min", "per_run_min", "grid_gpu_min", "ref_method",
                       "ratio_to_ref", "excluded_other_device", "other_phases"]


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
    return [[lt.dataset, lt.model, r.device, r.method, str(r.runs), num(r.pretrain), num(r.teacher),
             num(r.score_prune), num(r.retrain), num(r.other), num(r.per_run if r.has_work else None),
             num(r.grid_total if r.has_work else None), lt.ref_method or "",
             num(r.ratio), _excluded_csv(r), "; ".join(r.other_phases)] for r in lt.rows]
