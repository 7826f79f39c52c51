"""``results/REPORT.md``: every table and figure of every dataset, and the environment they came from.

The page is rendered from the stored records alone; tables are inlined (the same Markdown as
``<results>/tables/<dataset>.md``), figures are linked with paths relative to the report, and the
environment section lists what the records say about where they were produced (devices, torch,
CUDA, Python, git commits, data and teachers). Nothing time-dependent is written, so rerendering
the same results gives the same bytes.
"""
from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

from .aggregate import ACCURACY_SHORT, DEFAULT_ACCURACY, datasets_of
from .claims import default_claims_path, evaluate_claims
from .claims_render import claims_markdown, write_claim_figure, write_claim_tables
from .format import _md_table, md_escape
from .references import Reference, default_reference_dir, load_references, reference_files
from ..store import atomic_write_bytes, load_runs
from .style import dataset_title
from .tables import build_dataset_tables, write_tables


def _counts(values: Iterable) -> str:
    c = Counter(v for v in values if v not in (None, ""))
    if not c:
        return "unknown"
    return ", ".join(f"{md_escape(str(k))} ({n})" for k, n in sorted(c.items(), key=lambda kv: str(kv[0])))


def environment_rows(runs: Sequence[dict]) -> list[list[str]]:
    """[item, values with their run counts] describing where the records came from."""
    prov = [r.get("provenance") or {} for r in runs]
    rows = [
        ["run records", _counts(r.get("status") for r in runs)],
        ["device", _counts(f"{r.get('device_name') or 'unknown'}" + (f" x{r.get('device_count')}"
                                                                      if (r.get("device_count") or 1) > 1 else "")
                           for r in runs)],
        ["torch", _counts(p.get("torch") for p in prov)],
        ["CUDA", _counts(p.get("cuda") for p in prov)],
        ["cuDNN", _counts(p.get("cudnn") for p in prov)],
        ["Python", _counts(p.get("python") for p in prov)],
        ["git commit", _counts((p.get("git_commit") or "")[:12] + (" (dirty)" if p.get("git_dirty") else "")
                               if p.get("git_commit") else None for p in prov)],
    ]
    # Informative fields of newer records; the rows appear only when some record has them.
    if any(r.get("precision") or r.get("device_type") for r in runs):
        rows.append(["precision, device type", _counts(
            f"{r.get('precision') or 'unknown'}, {r.get('device_type') or 'unknown'}"
            if r.get("precision") or r.get("device_type") else None for r in runs)])
    if any(r.get("method_version") is not None for r in runs):
        rows.append(["method version", _counts(f"{r.get('method')} v{r.get('method_version')}"
                                               if r.get("method_version") is not None else None for r in runs)])
    for ds in datasets_of(runs):
        rs = [r for r in runs if r.get("dataset") == ds]
        data = [r.get("data") or {} for r in rs]
        rows.append([f"data: {ds}", _counts(
            ("official" if d.get("official") else "NOT official") + (f", fingerprint {d.get('fingerprint')}"
                                                                    if d.get("fingerprint") else "")
            if d else None for d in data)])
        teachers = [r.get("teacher") for r in rs if r.get("teacher")]
        if teachers:
            rows.append([f"teacher: {ds}", _counts(
                f"{t.get('arch')}, top-1 {float(t['top1']):.2f}" if t.get("top1") is not None else str(t.get("arch"))
                for t in teachers) + "; sha256 " + ", ".join(sorted({str(t.get('sha256'))[:12] for t in teachers}))])
    started = sorted(str(r["started_at"]) for r in runs if r.get("started_at"))
    ended = sorted(str(r["ended_at"]) for r in runs if r.get("ended_at"))
    if started or ended:
        rows.append(["runs between", f"{(started or ended)[0]} and {(ended or started)[-1]}"])
    return rows


def _rel(path: Path, start: Path) -> str:
    return Path(os.path.relpath(Path(path).resolve(), Path(start).resolve())).as_posix()


FIGURE_CAPTIONS = {
    "accuracy": ("Accuracy vs realised sparsity, one panel per method family beside the proposed method (mean ± std "
                 "over seeds; dense as the dashed line; stars: paper-reported; hollow: off target; what is not drawn "
                 "is named under the panels)"),
    "density": "Per-layer density of the pruned networks",
    "latency": ("Training time per run by phase, per GPU model, and the paper's minutes beside ours on a log scale "
                "(stars: paper-reported)"),
    "rounds": ("Iterative methods round by round (COLT, EGP): accuracy and cumulative minutes against the round's "
               "realised overall sparsity; markers: final models and the one-shot tgp runs"),
}


def render_report(results_dir: Path, plots_dir: Path, out: Path | None = None, *, accuracy: str = DEFAULT_ACCURACY,
                  reference_dir: Path | None = None, ref_method: str | Sequence[str] | None = None,
                  transpose: bool = False, paper: str = "block", sparsity: float | None = None,
                  figures: bool = True, tables: bool = True, figure_formats: Sequence[str] = ("png", "pdf"),
                  runs: list[dict] | None = None, known: Iterable[str]) -> str:
    """The report's Markdown text; also writes each dataset's table files and figures (unless disabled).
    ``known``: the method names in the harness, for the claims section (see claims.evaluate)."""
    from .figures import render_dataset_figures

    results_dir, plots_dir = Path(results_dir), Path(plots_dir)
    out = Path(out) if out is not None else results_dir / "REPORT.md"
    runs = load_runs(results_dir) if runs is None else runs
    ref_dir = default_reference_dir(results_dir) if reference_dir is None else Path(reference_dir)
    refs: list[Reference] = load_references(ref_dir)
    datasets = datasets_of(runs)
    lines = ["# Benchmark report\n",
             f"Rendered from the run records under `{results_dir.as_posix()}` by `python -m bench report` "
             f"(no training). Accuracy: top-1 test accuracy at the {ACCURACY_SHORT[accuracy]}. Tables: `{_rel(results_dir / 'tables', out.parent)}/`; "
             f"figures: `{_rel(plots_dir, out.parent)}/`.\n"]
    if ref_dir is not None and reference_files(ref_dir):
        files = ", ".join(f"`{p.name}`" for p in reference_files(ref_dir))
        lines.append(f"Paper-reported numbers: {len(refs)} rows from {files} in `{_rel(ref_dir, out.parent)}/`.\n")
    else:
        lines.append("Paper-reported numbers: none (no reference files found).\n")
    lines.append("## Environment\n")
    if runs:
        lines.append(_md_table(["item", "values (number of run records)"], environment_rows(runs), ["l", "l"]))
    else:
        lines.append(f"No run records under `{results_dir.as_posix()}/runs`.\n")
    if datasets:
        lines.append("Datasets: " + ", ".join(f"[{dataset_title(d)}](#{d})" for d in datasets) + "\n")
    for ds in datasets:
        tabs = build_dataset_tables(runs, ds, accuracy, refs, ref_method)
        lines.append(f'<a id="{ds}"></a>\n')
        lines.append(tabs.markdown(transpose, paper, level=2))
        if tables:
            write_tables(results_dir, ds, accuracy=accuracy, transpose=transpose, paper=paper,
                         reference_dir=ref_dir, ref_method=ref_method, runs=runs)
        if figures:
            figs = render_dataset_figures(runs, ds, plots_dir, accuracy=accuracy, sparsity=sparsity,
                                          references=refs, ref_method=ref_method, formats=figure_formats)
            lines.append(f"### {dataset_title(ds)}: figures\n")
            for kind, paths in figs.items():
                base = kind.split(":")[-1]
                model = f" ({kind.split(':')[0]})" if ":" in kind else ""
                png = next((p for p in paths if p.suffix == ".png"), None)
                others = " ".join(f"[{p.suffix[1:].upper()}]({_rel(p, out.parent)})" for p in paths if p.suffix != ".png")
                cap = FIGURE_CAPTIONS.get(base, base) + model
                if base == "accuracy":
                    cap += f"; top-1 at the {ACCURACY_SHORT[accuracy]}"
                if png is not None:
                    lines.append(f"![{cap}]({_rel(png, out.parent)})\n")
                lines.append(f"*{cap}.*" + (f" {others}" if others else "") + "\n")
    lines += _claims_section(results_dir, plots_dir, out, runs, accuracy, ref_dir, figures, tables, figure_formats,
                             known)
    orphan = sorted({r.dataset for r in refs} - set(datasets))
    if orphan:
        lines.append("## Reference numbers without runs\n")
        lines.append("Datasets with paper-reported numbers but no run records: " +
                     ", ".join(f"{d} ({sum(r.dataset == d for r in refs)} rows)" for d in orphan) + ".\n")
    return "\n".join(lines)


def _claims_section(results_dir: Path, plots_dir: Path, out: Path, runs: list[dict], accuracy: str,
                    ref_dir: Path | None, figures: bool, tables: bool, figure_formats: Sequence[str],
                    known: Iterable[str]) -> list[str]:
    """The claims table (as ``python -m bench claims`` writes it) and the forest plot; [] without a claims file."""
    if default_claims_path(results_dir) is None:
        return []
    claims, rows = evaluate_claims(results_dir, known=known, accuracy=accuracy, reference_dir=ref_dir, runs=runs)
    lines = ['<a id="claims"></a>\n', claims_markdown(rows, claims, accuracy, level=2)]
    if tables:
        write_claim_tables(results_dir, claims, rows, accuracy)
    paths = write_claim_figure(plots_dir, rows, figure_formats) if figures else []
    png = next((p for p in paths if p.suffix == ".png"), None)
    others = " ".join(f"[{p.suffix[1:].upper()}]({_rel(p, out.parent)})" for p in paths if p.suffix != ".png")
    cap = "The claims' paired differences over seeds: mean and 95% t-interval per row, colour = verdict"
    if png is not None:
        lines.append(f"![{cap}]({_rel(png, out.parent)})\n")
        lines.append(f"*{cap}.*" + (f" {others}" if others else "") + "\n")
    return lines


def write_report(results_dir: Path, plots_dir: Path, out: Path | None = None, **kw) -> Path:
    """Render every table and figure and write the report (default ``<results_dir>/REPORT.md``); return its path."""
    out = Path(out) if out is not None else Path(results_dir) / "REPORT.md"
    text = render_report(results_dir, plots_dir, out, **kw)
    atomic_write_bytes(out, text.encode("utf-8"))
    return out
