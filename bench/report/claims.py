"""The paper's claims tested on paired runs, with a verdict printed either way (``python -m bench claims``).

A claim (``results/reference/claims.yaml``, format in docs/reporting.md, "Claims") compares side
``a`` with side ``b``: two methods of the harness (or a method and a published number), on some
datasets, over a sparsity range under a stated sparsity definition, in a direction.

For each claim, dataset, model and target sparsity in the range, the runs of ``a`` and ``b`` with the
same seed form a pair (same seed: the same dense model, teacher and data order) when both are ok and
on target, with their targets on the same measure; an unreachable or off-target run is never paired,
and the row says why. The pairs give differences ``a - b`` (top-1, percentage points) or
``ln(minutes a / minutes b)`` (minutes per run + teacher, the cost convention of docs/reporting.md,
both runs on the same device), their mean, a 95% Student-t interval and a two-sided paired t-test, and a
verdict. The rows of one claims evaluation (one claims file) are one family: their p-values are adjusted
with Holm's method, and a verdict needs the adjusted value below 0.05:

* ``holds``: at least ``MIN_PAIRS`` pairs, Holm-adjusted p < 0.05, the mean on the claimed side of 0;
* ``contradicted``: the same, the mean on the other side;
* ``inconclusive``: fewer pairs, the interval contains 0, or the adjusted p is not below 0.05;
* ``confounded``: a holds or contradicted that favours the side with more student budget (more than
  ``budget.SLACK`` more full-data epochs; or budgets not recorded): the difference may be the budget's;
* ``untestable here``: the claim's precondition fails on these records (``requires: {teacher_margin:
  m}``: the teacher is less than m points above the dense student), so the test would test nothing.

Rows without pairs are kept, never dropped: ``not testable yet`` when a method of the claim is not in
the harness (and no usable published number stands in for ``b``), ``no data`` when the methods exist
but the records hold no pair in the claim's range.

The claims file is parsed in claims_file.py, the interval in stats.py (why t and not a bootstrap);
the tables and the figure are drawn in claims_render.py.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from .aggregate import (DEFAULT_ACCURACY, TOLERANCE, accuracy_field, collapse_text, collapsed_layers, datasets_of,
                        match_reference, measured_sparsity, models_of, on_target, realised_sparsity, record_budget,
                        record_device, record_images, record_measure, run_time, select, sparsity_key, target_scale)
from ..budget import SLACK
from .claims_file import CLAIMS_FILE, Claim, Side, default_claims_path, load_claims
from .format import fmt, fmt_signed, pct
from .references import Reference, for_dataset, default_reference_dir, load_references
from .stats import ALPHA, PairedStats, holm, paired_stats
from ..store import load_runs

VERDICTS = ("holds", "contradicted", "inconclusive", "confounded", "untestable here", "not testable yet", "no data")
MIN_PAIRS = 3


def verdict(st: PairedStats, direction: str, p_adjusted: float | None = None) -> tuple[str, str]:
    """(verdict, reason) for paired differences claimed to be > 0 (``greater``) or < 0 (``less``); with
    ``p_adjusted`` (the row's Holm-adjusted p-value) a difference must also survive the adjustment."""
    if st.n < MIN_PAIRS:
        return "inconclusive", f"n < {MIN_PAIRS}"
    if st.low <= 0 <= st.high:
        return "inconclusive", "interval contains 0"
    if p_adjusted is not None and p_adjusted >= ALPHA:
        return "inconclusive", f"Holm-adjusted p = {fmt_p(p_adjusted)}"
    claimed = st.low > 0 if direction == "greater" else st.high < 0
    return ("holds", "") if claimed else ("contradicted", "")


def fmt_p(p: float | None) -> str:
    """'0.031', '< 0.001', '' (none)."""
    if p is None:
        return ""
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


@dataclass
class SideRuns:
    """What one side's runs of a row trained: per pair, student epochs (None: not recorded), teacher epochs
    and images, student images, and the collapsed layers of each run."""
    label: str = ""
    student: list = field(default_factory=list)
    teacher_epochs: list = field(default_factory=list)
    teacher_images: list = field(default_factory=list)
    student_images: list = field(default_factory=list)
    collapsed: list = field(default_factory=list)      # {layer: density} per run

    def add(self, r: dict) -> None:
        st, te = record_budget(r)
        si, ti = record_images(r)
        self.label = self.label or r["method"]
        self.student.append(st)
        self.teacher_epochs.append(te or 0)
        self.teacher_images.append(ti or 0)
        self.student_images.append(si)
        self.collapsed.append(collapsed_layers(r))

    @property
    def epochs(self) -> float | None:
        """Mean student epochs over the pairs (None if a run has none recorded)."""
        if not self.student or any(x is None for x in self.student):
            return None
        return math.fsum(self.student) / len(self.student)

    def teacher_text(self) -> str:
        """'teacher 25 epochs, 125,000 images (2.7x its student images)' or 'no teacher'."""
        if not any(self.teacher_epochs):
            return "no teacher"
        ep, im = max(self.teacher_epochs), max(self.teacher_images)
        out = f"teacher {fmt(ep) if ep % 1 else int(ep)} epochs, {im:,} images"
        si = [x for x in self.student_images if x]
        if si and im:
            out += f" ({fmt(im / (math.fsum(si) / len(si)))}× its student's images)"
        return out

    def collapse_note(self, role: str) -> str | None:
        hit = [c for c in self.collapsed if c]
        if not hit:
            return None
        layers: dict[str, float] = {}
        for c in hit:
            for k, v in c.items():
                layers[k] = max(v, layers.get(k, 0.0))
        return (f"{role} ({self.label}): layer collapse in {len(hit)} of {len(self.collapsed)} runs: "
                f"{collapse_text(layers)}")


@dataclass
class ClaimRow:
    """One test of a claim: one dataset, model and target sparsity (or why there is none)."""
    claim: Claim
    dataset: str
    model: str = ""
    target: float | None = None         # fraction; None for rows without pairs
    basis: str = "runs"                 # runs | published (<source>)
    diffs: list[float] = field(default_factory=list)
    seeds: list = field(default_factory=list)
    device: str = ""                    # latency rows: the device both runs of every pair ran on
    status: str = ""                    # 'not testable yet' / 'no data' for rows without pairs
    notes: list[str] = field(default_factory=list)
    side_a: SideRuns = field(default_factory=SideRuns)
    side_b: SideRuns = field(default_factory=SideRuns)
    untestable: str = ""                # why the claim's precondition fails here ('untestable here')
    teacher_top1: list = field(default_factory=list)   # the teachers' top-1 of the pairs' runs
    p_holm: float | None = None         # the Holm-adjusted p-value within the family of the evaluation

    @property
    def stats(self) -> PairedStats:
        return paired_stats(self.diffs)

    @property
    def budget_ratio(self) -> float | None:
        """a's mean student epochs over b's (None: a budget not recorded, or b published)."""
        a, b = self.side_a.epochs, self.side_b.epochs
        return a / b if a is not None and b else None

    def confound(self) -> str:
        """Why a verdict on this row would favour the side with more student budget ('' when it does not)."""
        if self.claim.metric != "top1" or self.basis != "runs" or self.stats.mean is None:
            return ""
        ratio = self.budget_ratio
        if ratio is None:
            return "student budgets not recorded (records made before budgets were)"
        win, lose, r = (self.side_a, self.side_b, ratio) if self.stats.mean > 0 else \
            (self.side_b, self.side_a, 1 / ratio)
        if r <= 1 + SLACK:
            return ""
        teacher = " and a teacher" if any(win.teacher_epochs) and not any(lose.teacher_epochs) else ""
        return f"{win.label} had {fmt(r)}× the student epochs of {lose.label}{teacher}"

    @property
    def verdict(self) -> tuple[str, str]:
        if self.status:
            return self.status, ""
        if self.untestable:
            return "untestable here", self.untestable
        v, why = verdict(self.stats, self.claim.direction, self.p_holm)
        if v in ("holds", "contradicted"):
            conf = self.confound()
            if conf:
                return "confounded", f"{v} before the budget check; {conf}"
        return v, why

    @property
    def verdict_text(self) -> str:
        v, why = self.verdict
        return f"{v} ({why})" if why else v


Key = tuple[str, float, Any]     # (target scale, target, seed)


def _side_records(recs: Iterable[dict], side: Side) -> dict[Key, dict]:
    """{(scale, target, seed): record} of ``side`` over ok and unreachable records. The first label listed
    wins; a later one stands in where the earlier has no record (``fallback: absent``) or only where the
    earlier's record is unreachable (``fallback: unreachable``). Two records of one label and key: the
    newer."""
    found: dict[Key, list[tuple[int, str, dict]]] = {}
    for r in recs:
        if side.matches(r):
            key = (target_scale(r), sparsity_key(r.get("target_sparsity") or 0), r.get("seed"))
            found.setdefault(key, []).append((side.labels.index(r["method"]), str(r.get("ended_at") or ""), r))
    out = {}
    for key, cands in found.items():
        cands.sort(key=lambda c: c[1], reverse=True)      # the newest first, then (stable) by label rank
        cands.sort(key=lambda c: c[0])
        pick = cands[0][2]
        if side.fallback == "unreachable":
            if cands[0][0] != 0:
                continue            # the first label has no record here: nothing is unreachable, no stand-in
            for _, _, r in cands:
                pick = r
                if r.get("status") != "unreachable":
                    break
        out[key] = pick
    return out


def _range_value(claim: Claim, target: float, a_recs: list[dict], b_recs: list[dict]) -> float | None:
    """Where ``target`` sits on the claim's range definition, percent (None: the records lack it): the target
    itself when the records' targets are on that measure, else the mean measured sparsity of side a's ok runs
    (b's when a has none, as when a is unreachable)."""
    recs = a_recs or b_recs
    if claim.sparsity_definition == "target" or (recs and all(record_measure(r) == claim.sparsity_definition
                                                               for r in recs)):
        return 100 * target
    for side in (a_recs, b_recs):
        vals = [_measured(r, claim.sparsity_definition) for r in side if r.get("status") == "ok"]
        if vals and all(v is not None for v in vals):
            return 100 * math.fsum(vals) / len(vals)
    return None


def _in_range(claim: Claim, target: float, a_recs: list[dict], b_recs: list[dict] = ()) -> bool | None:
    """Whether ``target`` lies in the claim's range, bounds widened by the tolerance (None: the records lack
    the sparsity the range is on)."""
    if claim.sparsity_definition == "unstated":
        return True
    x = _range_value(claim, target, a_recs, list(b_recs))
    if x is None:
        return None
    lo, hi = claim.sparsity_min, claim.sparsity_max
    tol = 100 * TOLERANCE + 1e-9
    return (lo is None or x >= lo - tol) and (hi is None or x <= hi + tol)


def _measured(r: dict, definition: str) -> float | None:
    sp = r.get("sparsity")
    if isinstance(sp, dict) and sp.get(definition) is not None:
        return float(sp[definition])
    return measured_sparsity(r, definition) if definition == "overall" else None


def _minutes(r: dict) -> tuple[float | None, float | None, bool]:
    """(minutes per run + teacher, minutes per run without the teacher, whether reused phases made on another
    device were left out), on the record's own device."""
    rt = run_time(r)
    with_teacher, student = rt.with_teacher, rt.per_run
    return (with_teacher if with_teacher > 0 else None), (student if student > 0 else None), rt.left_out()


def _why_unpaired(ra: dict, rb: dict, target: float) -> str | None:
    """Why two runs of one seed are not a pair (None: they are): targets on different scales, a side
    unreachable, a side off target. Names the run's label."""
    sa, sb = target_scale(ra), target_scale(rb)
    if sa != sb:
        old = "" if record_measure(ra) and record_measure(rb) else "; old accounting"
        return f"targets on different measures ({ra['method']}: {sa}, {rb['method']}: {sb}{old})"
    for r in (ra, rb):
        if r.get("status") == "unreachable":
            top = r.get("max_sparsity")
            return f"{r['method']} unreachable at {pct(target)}% {sa}" + (f" (max {pct(float(top))}%)" if top is not None else "")
    for r in (ra, rb):
        if not on_target(r):
            real = realised_sparsity(r)
            return f"{r['method']} off target" + (f" (realised {pct(real)}% {sa})" if real is not None else "")
    return None


def _by_seed(recs: dict[Key, dict], target: float, other: dict[Key, dict]) -> dict[Any, dict]:
    """{seed: record} at ``target``; where a seed has records on several scales, the one ``other`` shares."""
    out: dict[Any, dict] = {}
    for (sc, t, s), r in sorted(recs.items(), key=lambda kv: str(kv[0])):
        if t != target:
            continue
        if s not in out or ((sc, t, s) in other and (target_scale(out[s]), t, s) not in other):
            out[s] = r
    return out


def _label_notes(side: Side, role: str, used: list[str]) -> list[str]:
    """'b runs: cskd-simple-matched (3 pairs)' when a later label stood in for the first."""
    if len(side.labels) < 2 or not used:
        return []
    counts = Counter(used)
    if set(counts) == {side.labels[0]}:
        return []
    why = f"; {side.labels[0]} unreachable there" if side.fallback == "unreachable" else ""
    parts = ", ".join(f"{lab} ({k} pair{'s' if k > 1 else ''}{why if lab != side.labels[0] else ''})"
                      for lab, k in sorted(counts.items()))
    return [f"{role} runs: {parts}"]


def _run_rows(claim: Claim, dataset: str, model: str, a: dict[Key, dict], b: dict[Key, dict], fld: str,
              dense_top1: float | None = None) -> tuple[list[ClaimRow], list[str]]:
    """One row per target in the claim's range where both sides have records: with pairs, or (status
    'no data') with the reason none could be paired; and notes about targets left out."""
    rows, skipped = [], []
    for target in sorted({t for _, t, _ in a} & {t for _, t, _ in b}):
        a_at, b_at = _by_seed(a, target, b), _by_seed(b, target, a)
        seeds = sorted(set(a_at) & set(b_at), key=str)
        if not seeds:
            continue
        ok = _in_range(claim, target, [a_at[s] for s in seeds], [b_at[s] for s in seeds])
        if ok is None:
            skipped.append(f"{pct(target)}%: the records lack the {claim.sparsity_definition} sparsity")
        if not ok:
            continue
        row = ClaimRow(claim, dataset, model, target)
        dropped: Counter = Counter()
        unpaired: Counter = Counter()
        student: list[float] = []
        used_a, used_b = [], []
        for s in seeds:
            ra, rb = a_at[s], b_at[s]
            why = _why_unpaired(ra, rb, target)
            if why:
                unpaired[why] += 1
                continue
            row.teacher_top1 += [(r.get("teacher") or {}).get("top1") for r in (ra, rb) if r.get("teacher")]
            if claim.metric == "top1":
                va, vb = ra.get(fld), rb.get(fld)
                if va is None or vb is None:
                    dropped["no accuracy recorded"] += 1
                    continue
                d = float(va) - float(vb)
            else:
                (ma, sa, xa), (mb, sb, xb) = _minutes(ra), _minutes(rb)
                if record_device(ra) != record_device(rb):
                    dropped["on different devices"] += 1
                    continue
                if xa or xb:
                    dropped["leave out cached phases made on another device"] += 1
                    continue
                if ma is None or mb is None:
                    dropped["no timed phases"] += 1
                    continue
                d = math.log(ma / mb)
                if sa is not None and sb is not None:
                    student.append(math.log(sa / sb))
                row.device = record_device(ra) if not row.device or row.device == record_device(ra) else "several"
            row.diffs.append(d)
            row.seeds.append(s)
            row.side_a.add(ra)
            row.side_b.add(rb)
            used_a.append(ra["method"])
            used_b.append(rb["method"])
        if not row.diffs:
            row.status = "no data"
        for why, k in sorted(unpaired.items()):
            row.notes.append(f"{'no pair' if not row.diffs else f'{k} pair(s) not formed'}: {why}"
                             + (f" ({k} seed{'s' if k > 1 else ''})" if not row.diffs else ""))
        for why, k in sorted(dropped.items()):
            row.notes.append(f"{k} pair(s) dropped: {why}")
        if student and claim.metric == "minutes":
            row.notes.append(f"without the teacher: {fmt(math.exp(math.fsum(student) / len(student)))}× "
                             f"(per run / per run, geometric mean over {len(student)} pairs)")
        row.notes += _label_notes(claim.a, "a", used_a) + _label_notes(claim.b, "b", used_b)
        if row.diffs:
            row.notes += [n for n in (row.side_a.collapse_note("a"), row.side_b.collapse_note("b")) if n]
            if claim.teacher_margin is not None:
                row.untestable = _teacher_gap(claim.teacher_margin, row, dense_top1)
        rows.append(row)
    return rows, skipped


def _teacher_gap(margin: float, row: ClaimRow, dense_top1: float | None) -> str:
    """Why the teacher is too weak for a KD claim on this row ('' when it is strong enough): its top-1 against
    the dense student's mean, on the same test set."""
    teachers = [t for t in row.teacher_top1 if t is not None]
    if not teachers or dense_top1 is None:
        return "no teacher and dense records to check the teacher's margin over the student"
    t = math.fsum(teachers) / len(teachers)
    gap = t - dense_top1
    if gap >= margin:
        return ""
    return (f"the teacher ({fmt(t)}%) is {fmt_signed(gap)} points above the dense student ({fmt(dense_top1)}%), "
            f"under the {fmt(margin)} this claim needs")


def _published_rows(claim: Claim, dataset: str, model: str, a: dict[Key, dict], refs: Sequence[Reference],
                    fld: str) -> list[ClaimRow]:
    """b's published top-1 against a's ok, on-target runs, at the target each published number matches (or
    flagged)."""
    a = {k: r for k, r in a.items() if r.get("status") == "ok" and on_target(r)}
    measures = {record_measure(r) for r in a.values()}
    measure = measures.pop() if len(measures) == 1 else None
    overall: dict[float, float | None] = {}
    for t in sorted({t for _, t, _ in a}):
        vals = [_measured(r, "overall") for (_, tt, _), r in a.items() if tt == t]
        vals = [v for v in vals if v is not None]
        overall[t] = math.fsum(vals) / len(vals) if vals else None
    rows = []
    for ref in refs:
        basis = f"published ({ref.source_text()})"
        if ref.model and model and ref.model != model:
            continue
        target = match_reference(ref, measure, overall)
        if target is None:
            why = ("the source states no sparsity" if not ref.sparsity_stated else
                   f"counted over '{ref.sparsity_definition}', not matchable to our targets"
                   if ref.sparsity_conv is None and ref.sparsity_overall is None else "no run at a matching sparsity")
            rows.append(ClaimRow(claim, dataset, model, None, basis, status="no data",
                                 notes=[f"published {fmt(ref.top1)}% at {ref.sparsity_text()}: not compared, {why}"]))
            continue
        at = {s: r for (_, t, s), r in sorted(a.items(), key=lambda kv: str(kv[0])) if t == target}
        seeds = sorted(at, key=str)
        if not _in_range(claim, target, [at[s] for s in seeds]):
            continue
        row = ClaimRow(claim, dataset, model, target, basis,
                       notes=[f"b = published {fmt(ref.top1)}% at {ref.sparsity_text()} (not a run: the differences "
                              f"vary only with our seeds)"])
        for s in seeds:
            v = at[s].get(fld)
            if v is not None:
                row.diffs.append(float(v) - ref.top1)
                row.seeds.append(s)
        rows.append(row)
    return rows


def evaluate(claims: Sequence[Claim], runs: Sequence[dict], references: Sequence[Reference] = (),
             datasets: Sequence[str] | None = None, accuracy: str = DEFAULT_ACCURACY, *,
             known: Iterable[str]) -> list[ClaimRow]:
    """Every claim on every one of its datasets (``datasets`` filters them; a claim's ``all`` is every
    dataset with records): rows in claim order, then dataset, model and target. The datasets of a claim
    that have no records at all share one row. ``known``: the method names in the harness (the registry's;
    the command layer passes them, so that report/ imports no method code)."""
    known = set(known)
    fld = accuracy_field(accuracy)
    runs = list(runs)
    present = datasets_of(runs)
    rows: list[ClaimRow] = []
    for claim in claims:
        names = list(claim.datasets) if claim.datasets != ("all",) else (list(datasets) if datasets else present)
        wanted = [d for d in names if not datasets or d in datasets]
        if datasets and not wanted:
            continue                                    # the claim is about other datasets
        missing = [s.method for s in (claim.a, claim.b) if s.method not in known]
        stand_in = claim.metric == "top1" and any(claim.b.method in r.labels and r.top1 is not None
                                                  for r in references if r.dataset in wanted)
        if missing and (claim.a.method in missing or not stand_in):
            rows.append(_untested(claim, ", ".join(wanted) or "any", missing, ""))   # one row: nothing to test
            continue
        for ds in (d for d in wanted if d in present):
            rows += _claim_rows(claim, ds, runs, references, fld, missing)
        absent = [d for d in wanted if d not in present] or ([] if wanted or datasets else ["any"])
        if absent:
            rows.append(_untested(claim, ", ".join(absent), missing, "no run records of this dataset"
                                  if len(absent) == 1 and absent != ["any"] else "no run records"))
    adjust(rows)
    return rows


def family(rows: Sequence[ClaimRow]) -> list[ClaimRow]:
    """The rows that are tests: pairs enough for a verdict and a precondition that holds."""
    return [r for r in rows if not r.status and not r.untestable and r.stats.n >= MIN_PAIRS and r.stats.p is not None]


def adjust(rows: Sequence[ClaimRow]) -> None:
    """Holm's adjustment over the family of ``rows`` (their ``p_holm``)."""
    fam = family(rows)
    for r, p in zip(fam, holm([r.stats.p for r in fam])):
        r.p_holm = p


def _untested(claim: Claim, dataset: str, missing: list[str], why: str, model: str = "") -> ClaimRow:
    """A row without pairs: 'not testable yet' when a method is not in the harness, else 'no data'."""
    if missing:
        return ClaimRow(claim, dataset, model, status="not testable yet",
                        notes=[f"not in the harness: {', '.join(missing)}"])
    return ClaimRow(claim, dataset, model, status="no data", notes=[why])


def _claim_rows(claim: Claim, dataset: str, runs: list[dict], references: Sequence[Reference], fld: str,
                missing: list[str]) -> list[ClaimRow]:
    published = [r for r in for_dataset(references, dataset, top1=True)
                 if claim.b.method in r.labels] if claim.metric == "top1" else []
    out: list[ClaimRow] = []
    for model in models_of(runs, dataset):
        sel = select(runs, dataset, model)
        a, b = _side_records(sel.ok + sel.unreachable, claim.a), _side_records(sel.ok + sel.unreachable, claim.b)
        if not a and not b:
            continue
        if a and not b and published and not claim.b.config:
            out += _published_rows(claim, dataset, model, a, published, fld)
            continue
        dense = [float(r[fld]) for r in sel.ok if r.get("method") == "dense" and r.get(fld) is not None]
        rows, skipped = _run_rows(claim, dataset, model, a, b, fld, math.fsum(dense) / len(dense) if dense else None)
        out += rows
        if not rows:
            none = [s.display for s, recs in ((claim.a, a), (claim.b, b)) if not recs]
            why = f"no runs of {', '.join(none)}" if none else "no target with runs of both in the claim's range"
            row = _untested(claim, dataset, missing, why, model)
            row.notes += skipped
            out.append(row)
    return out or [_untested(claim, dataset, missing, "no runs of either side")]


def evaluate_claims(results_dir: Path, dataset: str | Sequence[str] | None = None, *, known: Iterable[str],
                    accuracy: str = DEFAULT_ACCURACY, claims_path: Path | None = None,
                    reference_dir: Path | None = None, runs: list[dict] | None = None
                    ) -> tuple[list[Claim], list[ClaimRow]]:
    """The claims (``claims_path``, default ``default_claims_path``) and their rows on the records."""
    results_dir = Path(results_dir)
    path = default_claims_path(results_dir) if claims_path is None else Path(claims_path)
    if path is None or not path.is_file():
        raise FileNotFoundError(f"claims file {path or CLAIMS_FILE} not found (give --claims FILE)")
    claims = load_claims(path)
    runs = load_runs(results_dir) if runs is None else runs
    refs = load_references(default_reference_dir(results_dir) if reference_dir is None else reference_dir)
    names = None if dataset is None else ([dataset] if isinstance(dataset, str) else list(dataset))
    return claims, evaluate(claims, runs, refs, names, accuracy, known=known)
