"""The latency table: minutes per run by phase group, one row per (device name, method), and the
paper-reported minutes beside ours; Markdown, LaTeX and CSV.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

from .aggregate import (DEFAULT_REF_METHODS, LatencyRow, accuracy_cells, latency_rows, models_of, overall_by_target,
                        resolve_ref_method, select)
from .format import MD, TEX, Dialect, _md_table, _tex_tabular, fmt, num, tex_escape
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
