"""The claims' rows drawn: ``<results>/tables/claims.{md,csv}`` and the forest plot ``<plots>/claims.*``.
A pure function of the rows: the same inputs give the same bytes (tables and figure)."""
from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Iterable, Sequence

from ..budget import SLACK
from ..store import atomic_write_bytes
from .aggregate import ACCURACY_SHORT, COLLAPSE_DENSITY, DEFAULT_ACCURACY
from .claims import MIN_PAIRS, VERDICTS, ClaimRow, evaluate_claims, family, fmt_p
from .claims_file import METRICS, Claim
from .format import _csv_text, _md_table, fmt, fmt_signed, md_escape, num, pct


def fmt_num(x: float) -> str:
    return f"{x:g}"

VERDICT_RULE = (
    "Each row pairs the runs of a and b with the same dataset, model, target sparsity and seed (hence the same dense "
    "model, teacher and data order), only where both runs are ok and on target with their targets on the same "
    "measure (an unreachable or off-target run is never paired; the note says why a row has no pair), and takes the "
    "differences a − b of top-1 (percentage points; {accuracy}), or for latency claims ln(minutes a / minutes b) of "
    "the minutes per run + teacher (the cost convention of docs/reporting.md: from a randomly initialised student "
    "to the final pruned model, dense pre-training included, plus the teacher's training; both runs on the same "
    "device, never across devices), shown as the ratio a / b, the ratio without the teacher in the note. "
    "mean: the mean difference (latency: the geometric-mean ratio). 95% CI: mean ± t(0.975, n − 1) · s / √n, a "
    "Student-t interval (s: sample std of the differences; not adjusted for multiplicity). p: the two-sided paired "
    "t-test; Holm p: p adjusted by Holm's method over every row of this file that is a test (n ≥ {k}, its "
    "precondition met), so that the chance of any false verdict in the file is at most 5%. Verdict: **holds** when "
    "n ≥ {k}, the interval excludes 0 on the claimed side and Holm p < 0.05; **contradicted** the same on the "
    "other side; **inconclusive** otherwise; **confounded**: a holds or contradicted that favours the side with "
    "more student budget (more than {slack}% more full-data epochs, or budgets not recorded): the difference may "
    "be the budget's, not the method's; **untestable here**: the claim's precondition fails on these records (a "
    "KD claim needs a teacher some points above the dense student; the note gives the gap). budget a/b: a's mean "
    "student epochs over b's (every training phase from initialisation, dense pre-training included; the teacher "
    "apart, shown in the note). **not testable yet**: a method of the claim is not in the harness and no published "
    "number can stand in; **no data**: the methods exist but no pair was run in the claim's range. Where b has no "
    "runs on a dataset, b's published top-1 at a sparsity matched to ours (docs/reporting.md) stands in, and the "
    "differences vary only with our seeds (basis 'published'); published numbers whose sparsity is unstated or "
    "counted over another set are listed, not compared. A note 'layer collapse' names the layers a side's runs "
    "(nearly) emptied (under {collapse}% of their weights kept).")


def _effect(row: ClaimRow, x: float | None, signed: bool = True) -> str:
    if x is None:
        return ""
    if row.claim.metric == "minutes":
        return f"{fmt(math.exp(x))}×"
    return fmt_signed(x) if signed else fmt(x)


def budget_text(row: ClaimRow) -> str:
    r = row.budget_ratio
    return "" if r is None else f"{fmt(r)}×"


def side_notes(row: ClaimRow) -> list[str]:
    """Each side's student epochs and teacher, for rows with pairs."""
    if not row.diffs or row.basis != "runs":
        return []
    out = []
    for role, side in (("a", row.side_a), ("b", row.side_b)):
        ep = side.epochs
        out.append(f"{role} {side.label}: {'?' if ep is None else fmt(ep)} student epochs, {side.teacher_text()}")
    return out


def _row_cells(row: ClaimRow) -> list[str]:
    st = row.stats
    ci = f"[{_effect(row, st.low)}, {_effect(row, st.high)}]" if st.has_interval else ""
    notes = ([f"basis: {row.basis}"] if row.basis != "runs" else []) + \
            ([f"device: {row.device}"] if row.device else []) + side_notes(row) + row.notes
    return [row.claim.id, row.dataset, row.model or "—", pct(row.target) + "%" if row.target is not None else "—",
            row.claim.compared(), row.claim.claimed(), _effect(row, st.mean), ci, str(st.n) if st.n else "",
            fmt_p(st.p) if row.p_holm is not None else "", fmt_p(row.p_holm), budget_text(row), row.verdict_text,
            "; ".join(notes)]


HEADER = ["claim", "dataset", "model", "sparsity", "compared", "claimed", "mean", "95% CI", "n", "p", "Holm p",
          "budget a/b", "verdict", "note"]


def claims_markdown(rows: Sequence[ClaimRow], claims: Sequence[Claim], accuracy: str = DEFAULT_ACCURACY,
                    level: int = 1) -> str:
    h = "#" * level
    out = [f"{h} The paper's claims, tested on paired runs\n"]
    if rows:
        out.append(_md_table(HEADER, [[md_escape(c) for c in _row_cells(r)] for r in rows],
                             ["l", "l", "l", "r", "l", "l", "r", "l", "r", "r", "r", "r", "l", "l"]))
    else:
        out.append("No claim concerns the datasets asked for.\n")
    out.append(VERDICT_RULE.format(accuracy=ACCURACY_SHORT[accuracy], k=MIN_PAIRS, slack=fmt_num(100 * SLACK),
                                   collapse=fmt_num(100 * COLLAPSE_DENSITY)) + "\n")
    out.append(f"Family: {len(family(rows))} tests (Holm's adjustment over all of them).\n")
    counts = {v: sum(r.verdict[0] == v for r in rows) for v in VERDICTS}
    out.append("Rows by verdict: " + ", ".join(f"{v} {k}" for v, k in counts.items()) + ".\n")
    shown = {r.claim.id for r in rows}
    out.append(f"{h}# Claims\n")
    for c in claims:
        if c.id not in shown:
            continue
        line = f"- `{c.id}` ({c.evidence}): {md_escape(c.statement)} Range: {md_escape(c.range_text())}."
        if c.quote:
            line += f" Source: {md_escape(c.source)}: \"{md_escape(c.quote)}\""
        elif c.source:
            line += f" Source: {md_escape(c.source)}."
        if c.note:
            line += f" Note: {md_escape(c.note)}"
        out.append(line)
    return "\n".join(out) + "\n"


CSV_COLUMNS = ["claim", "evidence", "dataset", "model", "metric", "a", "b", "direction", "target_sparsity", "basis",
               "device", "n", "mean", "ci_low", "ci_high", "interval", "p", "p_holm", "student_epochs_a",
               "student_epochs_b", "budget_ratio", "teacher_epochs_a", "teacher_epochs_b", "teacher_images_a",
               "teacher_images_b", "verdict", "reason", "seeds", "diffs", "note"]


def claims_csv_rows(rows: Sequence[ClaimRow]) -> list[list[str]]:
    out = []
    for r in rows:
        st = r.stats
        v, why = r.verdict
        a, b = r.side_a, r.side_b
        out.append([r.claim.id, r.claim.evidence, r.dataset, r.model, r.claim.metric, r.claim.a.display,
                    r.claim.b.display, r.claim.direction, num(r.target), r.basis, r.device, str(st.n), num(st.mean),
                    num(st.low), num(st.high), "t" if st.has_interval else "", num(st.p), num(r.p_holm),
                    num(a.epochs), num(b.epochs), num(r.budget_ratio),
                    num(max(a.teacher_epochs, default=None)), num(max(b.teacher_epochs, default=None)),
                    num(max(a.teacher_images, default=None)), num(max(b.teacher_images, default=None)), v, why,
                    ";".join(str(s) for s in r.seeds), ";".join(num(d) for d in r.diffs),
                    "; ".join(side_notes(r) + r.notes)])
    return out


VERDICT_COLOURS = {"holds": "#2ca02c", "contradicted": "#d62728", "inconclusive": "#7f7f7f",
                   "confounded": "#ff7f0e", "untestable here": "#9467bd"}


def plot_claims(rows: Sequence[ClaimRow]):
    """A forest plot: one line per row with pairs (mean, 95% interval), the zero line, colour = verdict;
    top-1 rows and latency rows (ratio a / b, log scale, line at 1) in separate panels. None: no pairs."""
    from matplotlib.lines import Line2D

    from .plotting import new_figure

    panels = [(m, [r for r in rows if r.stats.n > 0 and r.claim.metric == m]) for m in METRICS]
    panels = [(m, rs) for m, rs in panels if rs]
    if not panels:
        return None
    sizes = [len(rs) for _, rs in panels]
    fig = new_figure(figsize=(8.0, 1.6 + 0.3 * sum(sizes) + 0.6 * len(panels)))
    axes = fig.subplots(len(panels), 1, squeeze=False, gridspec_kw={"height_ratios": [s + 1 for s in sizes]})[:, 0]
    for ax, (metric, rs) in zip(axes, panels):
        ys = list(range(len(rs)))[::-1]
        for y, r in zip(ys, rs):
            st = r.stats
            colour = VERDICT_COLOURS.get(r.verdict[0], "#7f7f7f")
            tr = (lambda x: math.exp(x)) if metric == "minutes" else (lambda x: x)
            if st.has_interval:
                ax.plot([tr(st.low), tr(st.high)], [y, y], color=colour, linewidth=2)
            ax.plot([tr(st.mean)], [y], marker="o", markersize=6, color=colour,
                    markerfacecolor=colour if st.n >= MIN_PAIRS else "white", markeredgewidth=1.5, zorder=3)
        ax.axvline(1.0 if metric == "minutes" else 0.0, color="black", linewidth=1, linestyle="--")
        labels = [f"{r.claim.id} · {r.dataset} · {pct(r.target)}% ({r.claim.claimed().split(' (')[0]})"
                  + (f" · budget {budget_text(r)}" if r.budget_ratio is not None else "") for r in rs]
        ax.set_yticks(ys, labels=labels, fontsize=7)
        ax.set_ylim(-0.7, len(rs) - 0.3)
        if metric == "minutes":
            ax.set_xscale("log")
            ax.set_xlabel("per-run minutes a / b (log scale; 1 = equal cost)")
        else:
            ax.set_xlabel("top-1 a − b (percentage points)")
    shown = {r.verdict[0] for _, rs in panels for r in rs}
    handles = [Line2D([], [], color=c, marker="o", linewidth=2, label=v) for v, c in VERDICT_COLOURS.items()
               if v in shown or v in ("holds", "contradicted", "inconclusive")]
    handles.append(Line2D([], [], color="#7f7f7f", marker="o", markerfacecolor="white", linestyle="none",
                          label=f"hollow: n < {MIN_PAIRS}"))
    fig.legend(handles=handles, loc="outside lower center", ncols=4, fontsize=8)
    fig.suptitle("The paper's claims: paired differences over seeds (mean, raw 95% t-interval; verdicts after "
                 "Holm's adjustment and the budget check; budget = a's student epochs / b's)", fontsize=9)
    return fig


def write_claim_tables(results_dir: Path, claims: Sequence[Claim], rows: Sequence[ClaimRow],
                       accuracy: str = DEFAULT_ACCURACY) -> list[Path]:
    """``<results>/tables/claims.md`` and ``claims.csv``."""
    tables = Path(results_dir) / "tables"
    atomic_write_bytes(tables / "claims.md", claims_markdown(rows, claims, accuracy).encode("utf-8"))
    atomic_write_bytes(tables / "claims.csv", _csv_text(CSV_COLUMNS, claims_csv_rows(rows)).encode("utf-8"))
    return [tables / "claims.md", tables / "claims.csv"]


def write_claim_figure(plots_dir: Path, rows: Sequence[ClaimRow], formats: Sequence[str] = ("png", "pdf")
                       ) -> list[Path]:
    """``<plots>/claims.<fmt>``, the forest plot; nothing when no claim has pairs."""
    from .plotting import figure_style, save_figure

    with figure_style():
        fig = plot_claims(rows)
        return [] if fig is None else save_figure(fig, Path(plots_dir) / "claims", formats)


def write_claims(results_dir: Path, plots_dir: Path, dataset: str | Sequence[str] | None = None, *,
                 known: Iterable[str], accuracy: str = DEFAULT_ACCURACY, claims_path: Path | None = None,
                 reference_dir: Path | None = None, runs: list[dict] | None = None,
                 formats: Sequence[str] = ("png", "pdf")) -> list[Path]:
    """Evaluate the claims on the records and write ``<results>/tables/claims.{md,csv}`` and
    ``<plots>/claims.{png,pdf}`` (the forest plot, when some claim has pairs); return the paths."""
    claims, rows = evaluate_claims(results_dir, dataset, known=known, accuracy=accuracy, claims_path=claims_path,
                                   reference_dir=reference_dir, runs=runs)
    return write_claim_tables(results_dir, claims, rows, accuracy) + write_claim_figure(plots_dir, rows, formats)


# --------------------------------------------------------------------------- the terminal

NO_PAIRS = ("no data", "not testable yet")


def terminal_text(rows: Sequence[ClaimRow], claims_md: Path, width: int = 80) -> str:
    """The claims as ``bench claims`` prints them, no line over ``width`` columns: a header that names the
    interval and the verdict rule, the verdict counts, the tested rows grouped by claim (a line per
    dataset and target, the reason below where the columns do not show it), then one line for the rows
    without pairs, which claims.md lists with their reasons."""
    wrap = lambda text, indent="": textwrap.fill(text, width, initial_indent=indent, subsequent_indent=indent,
                                                     break_on_hyphens=False, break_long_words=False)
    tested = [r for r in rows if r.verdict[0] not in NO_PAIRS]
    out = [wrap(f"The paper's claims on paired runs (same seed: same dense model, teacher and data order): the "
                f"mean of a − b over seeds with its 95% Student-t interval; holds or contradicted only with "
                f"n ≥ {MIN_PAIRS} and a Holm-adjusted p under 0.05 (Holm over the {len(family(rows))} rows with n ≥ {MIN_PAIRS}), "
                f"confounded where the winner had more than {fmt(1 + SLACK)}× the other's student epochs "
                f"(docs/reporting.md, 'Claims')."), ""]
    counts = {v: sum(r.verdict[0] == v for r in rows) for v in VERDICTS}
    out.append(wrap("verdicts: " + ", ".join(f"{n} {v}" for v, n in counts.items() if n)) if rows else
               "no claim concerns these datasets")
    if tested:
        cells = [(r.dataset, pct(r.target) + "%" if r.target is not None else "—", _effect(r, r.stats.mean),
                  f"[{_effect(r, r.stats.low)}, {_effect(r, r.stats.high)}]" if r.stats.has_interval else "",
                  str(r.stats.n), fmt_p(r.p_holm) if r.p_holm is not None else "", budget_text(r), r.verdict[0])
                 for r in tested]
        head = ("dataset", "target", "mean", "95% CI", "n", "Holm p", "a/b", "verdict")
        w = [max(len(c[i]) for c in cells + [head]) for i in range(len(head))]
        line = lambda c: "  " + " ".join(x.ljust(w[i]) if i in (0, 3, 7) else x.rjust(w[i])
                                        for i, x in enumerate(c)).rstrip()
        out += ["", line(head)]
        claim = None
        for r, c in zip(tested, cells):
            if r.claim.id != claim:
                claim = r.claim.id
                out.append(wrap(f"{claim}: {r.claim.compared()}, claimed {r.claim.claimed()}"))
            out.append(line(c))
            reason = r.verdict[1]
            if reason and reason != "interval contains 0" and not reason.startswith("Holm-adjusted"):
                out.append(wrap(reason, "      "))
    untested = len(rows) - len(tested)
    if untested:
        what = ", ".join(f"{counts[v]} {v}" for v in NO_PAIRS if counts.get(v))
        out += ["", wrap(f"{untested} row(s) without pairs ({what}): listed with their reasons in {claims_md}")]
    return "\n".join(out) + "\n"
