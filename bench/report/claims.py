"""The paper's claims tested on paired runs, with a verdict printed either way (``python -m bench claims``).

A claim (``results/reference/claims.yaml``, format in docs/reporting.md, "Claims") compares side
``a`` with side ``b``: two methods of the harness (or a method and a published number), on some
datasets, over a sparsity range under a stated sparsity definition, in a direction.

For each claim, dataset, model and target sparsity in the range, the runs of ``a`` and ``b`` with the
same seed form a pair (same seed: the same dense model, teacher and data order) when both are ok and
on target, with their targets on the same measure; an unreachable or off-target run is never paired,
and the row says why. The pairs give differences ``a - b`` (top-1, percentage points) or
``ln(minutes a / minutes b)`` (minutes per run + teacher, the cost convention of docs/reporting.md,
both runs on the same device), their mean and a 95% Student-t interval, and a verdict:

* ``holds``: at least ``MIN_PAIRS`` pairs and the interval lies entirely on the claimed side of 0;
* ``contradicted``: at least ``MIN_PAIRS`` pairs and the interval lies entirely on the other side;
* ``inconclusive``: fewer pairs, or the interval contains 0.

Rows without pairs are kept, never dropped: ``not testable yet`` when a method of the claim is not in
the harness (and no usable published number stands in for ``b``), ``no data`` when the methods exist
but the records hold no pair in the claim's range.

Why t and not a bootstrap: with the 2-5 seeds a grid runs, a bootstrap has at most a few dozen
distinct resamples and its percentile interval undercovers badly (for n = 3 it is close to
[min, max], about 75% coverage); the t-interval is exact for normal differences and the honest
small-n choice. Every row says ``t`` in its ``interval`` column.

Rendering is a pure function of the records, the claims and the reference rows: the same inputs give
the same bytes (tables and figure).
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import yaml

from ..store import atomic_write_bytes, load_runs
from .aggregate import (ACCURACY_SHORT, DEFAULT_ACCURACY, TOLERANCE, accuracy_field, datasets_of, match_reference,
                        measured_sparsity, models_of, on_target, realised_sparsity, record_device, record_measure,
                        run_time, select, sparsity_key, target_scale)
from .format import _csv_text, _md_table, fmt, fmt_signed, md_escape, num, pct
from .references import CLAIMS_FILE, Reference, for_dataset

METRICS = ("top1", "minutes")
DIRECTIONS = ("greater", "less")
# How a claim's sparsity range is read. "target": the grid's target on the records' measure (overall in
# every preset; old records: over each method's own prunable set). A measure name: the target itself
# when the records' targets are on that measure, else that measured sparsity of side a's runs (mean over
# the seeds at a target). "unstated": every target. Bounds are inclusive, widened by the tolerance.
RANGE_DEFINITIONS = {
    "target": "the grid's target, on the records' sparsity measure (overall in every preset)",
    "overall": "zeros / (conv + linear + BN weights), COLT's and the paper's figure",
    "conv": "zeros / all conv weights",
    "conv+linear": "zeros / (conv + linear weights)",
    "conv-noshortcut": "zeros / the convs without the shortcut convs (EGP's set)",
    "unstated": "the source states no sparsity: every target is tested",
}
# A later label of a side stands in for an earlier one where the earlier has no record at that target
# and seed ("absent": a budget variant such as <method>-matched), or only where the earlier's record is
# unreachable ("unreachable": a variant that prunes another set, such as egp-shortcut).
FALLBACKS = ("absent", "unreachable")
EVIDENCE = ("stated", "press", "inferred", "harness")
VERDICTS = ("holds", "contradicted", "inconclusive", "not testable yet", "no data")
MIN_PAIRS = 3
LEVEL = 0.95

VERDICT_RULE = (
    "Each row pairs the runs of a and b with the same dataset, model, target sparsity and seed (hence the same dense "
    "model, teacher and data order), only where both runs are ok and on target with their targets on the same "
    "measure (an unreachable or off-target run is never paired; the note says why a row has no pair), and takes the "
    "differences a − b of top-1 (percentage points; {accuracy}), or for latency claims ln(minutes a / minutes b) of "
    "the minutes per run + teacher (the cost convention of docs/reporting.md: from a randomly initialised student "
    "to the final pruned model, dense pre-training included, plus the teacher's training; both runs on the same "
    "device, never across devices), shown as the ratio a / b, the ratio without the teacher in the note. "
    "mean: the mean difference (latency: the geometric-mean ratio). 95% CI: mean ± t(0.975, n − 1) · s / √n, a "
    "Student-t interval (s: sample std of the differences); a bootstrap is not used, because with so few seeds it "
    "has too few distinct resamples to reach 95% coverage. Verdict: **holds** when n ≥ {k} and the interval lies "
    "entirely on the claimed side of 0 (latency: of ratio 1); **contradicted** when n ≥ {k} and it lies entirely "
    "on the other side; **inconclusive** when n < {k} or the interval contains 0. **not testable yet**: a method "
    "of the claim is not in the harness and no published number can stand in; **no data**: the methods exist but "
    "no pair was run in the claim's range. Where b has no runs on a dataset, b's published top-1 at a sparsity "
    "matched to ours (docs/reporting.md) stands in, and the differences vary only with our seeds (basis "
    "'published'); published numbers whose sparsity is unstated or counted over another set are listed, not "
    "compared. Each row is one test; with many rows, some verdicts at 95% can be chance (no correction for "
    "multiple comparisons).")


class ClaimError(ValueError):
    """A claims file that cannot be used; the message names the file, the claim and the fix."""


# --------------------------------------------------------------------------- statistics

def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 400):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b)."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1) / (a + b + 2):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: int) -> float:
    """P(T <= t) for Student's t with ``df`` degrees of freedom."""
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def t_quantile(p: float, df: int) -> float:
    """The ``p`` quantile of Student's t with ``df`` degrees of freedom (bisection on the CDF)."""
    if not 0 < p < 1 or df < 1:
        raise ValueError(f"t_quantile needs 0 < p < 1 and df >= 1, got p={p}, df={df}")
    if p < 0.5:
        return -t_quantile(1 - p, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        hi *= 2
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if t_cdf(mid, df) < p else (lo, mid)
    return (lo + hi) / 2


@dataclass(frozen=True)
class PairedStats:
    n: int
    mean: float | None
    low: float | None      # the 95% t-interval; None when n < 2
    high: float | None

    @property
    def has_interval(self) -> bool:
        return self.low is not None


def paired_stats(diffs: Sequence[float], level: float = LEVEL) -> PairedStats:
    """Mean and Student-t interval of paired differences (None where undefined)."""
    n = len(diffs)
    if n == 0:
        return PairedStats(0, None, None, None)
    mean = math.fsum(diffs) / n
    if n < 2:
        return PairedStats(n, mean, None, None)
    s = math.sqrt(math.fsum((d - mean) ** 2 for d in diffs) / (n - 1))
    half = t_quantile(0.5 + level / 2, n - 1) * s / math.sqrt(n)
    return PairedStats(n, mean, mean - half, mean + half)


def verdict(st: PairedStats, direction: str) -> tuple[str, str]:
    """(verdict, reason) for paired differences claimed to be > 0 (``greater``) or < 0 (``less``)."""
    if st.n < MIN_PAIRS:
        return "inconclusive", f"n < {MIN_PAIRS}"
    if st.low <= 0 <= st.high:
        return "inconclusive", "interval contains 0"
    claimed = st.low > 0 if direction == "greater" else st.high < 0
    return ("holds", "") if claimed else ("contradicted", "")


# --------------------------------------------------------------------------- claims file

@dataclass(frozen=True)
class Side:
    """One side of a comparison: the runs of ``labels`` (the first present wins) whose config has ``config``."""
    method: str                               # the method's registry name (is it in the harness?)
    labels: tuple[str, ...]
    config: tuple[tuple[str, Any], ...] = ()  # (dotted key, value) the run's config must have
    name: str = ""
    fallback: str = "absent"                  # when a later label stands in for an earlier one (FALLBACKS)

    @property
    def display(self) -> str:
        if self.name:
            return self.name
        extra = ", ".join(f"{k.split('.')[-1]}={v}" for k, v in self.config)
        return f"{self.method} ({extra})" if extra else self.method

    def matches(self, rec: dict) -> bool:
        if rec.get("method") not in self.labels:
            return False
        for key, want in self.config:
            node: Any = rec.get("config") or {}
            for part in key.split("."):
                node = node.get(part) if isinstance(node, dict) else None
            if not _same(node, want):
                return False
        return True


def _same(have: Any, want: Any) -> bool:
    if isinstance(want, (int, float)) and not isinstance(want, bool) and isinstance(have, (int, float)):
        return float(have) == float(want)
    return have == want


@dataclass(frozen=True)
class Claim:
    id: str
    statement: str
    a: Side
    b: Side
    direction: str                      # greater: a above b; less: a below b (latency: a cheaper)
    datasets: tuple[str, ...]
    metric: str = "top1"
    sparsity_definition: str = "target"
    sparsity_min: float | None = None   # percent, inclusive
    sparsity_max: float | None = None
    source: str = ""
    quote: str = ""
    evidence: str = "harness"
    paper_ratio: float | None = None    # minutes a / minutes b as printed (shown, not tested)
    note: str = ""

    def range_text(self) -> str:
        if self.sparsity_definition == "unstated":
            return "sparsity not stated (every target)"
        lo = "" if self.sparsity_min is None else f"≥ {fmt(self.sparsity_min)}%"
        hi = "" if self.sparsity_max is None else f"≤ {fmt(self.sparsity_max)}%"
        bounds = " and ".join(x for x in (lo, hi) if x) or "every sparsity"
        return f"{bounds} ({self.sparsity_definition})"

    def compared(self) -> str:
        if self.metric == "minutes":
            return f"{self.a.display} / {self.b.display}, minutes per run + teacher"
        return f"{self.a.display} − {self.b.display}, top-1 (pp)"

    def claimed(self) -> str:
        if self.metric == "minutes":
            side = "< 1×" if self.direction == "less" else "> 1×"
            return side + (f" (paper {fmt(self.paper_ratio)}×)" if self.paper_ratio is not None else "")
        return "> 0" if self.direction == "greater" else "< 0"


_CLAIM_KEYS = {"id", "statement", "a", "b", "direction", "datasets", "metric", "sparsity", "source", "quote",
               "evidence", "paper_ratio", "note"}
_REQUIRED = ("id", "statement", "a", "b", "direction", "datasets")


def _side(raw: Any, where: str) -> Side:
    if isinstance(raw, str) and raw.strip():
        return Side(raw.strip(), (raw.strip(),))
    if not isinstance(raw, dict) or not isinstance(raw.get("method"), str):
        raise ClaimError(f"{where}: a side is a method label or a mapping with 'method' (and optional 'labels', "
                         f"'config', 'name', 'fallback'), got {raw!r}")
    unknown = sorted(set(raw) - {"method", "labels", "config", "name", "fallback"})
    if unknown:
        raise ClaimError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: method, labels, config, name, "
                         f"fallback")
    fallback = raw.get("fallback", "absent")
    if fallback not in FALLBACKS:
        raise ClaimError(f"{where}: 'fallback' is {fallback!r}; allowed: {', '.join(FALLBACKS)}")
    labels = raw.get("labels") or [raw["method"]]
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise ClaimError(f"{where}: 'labels' must be a list of grid labels, got {labels!r}")
    config = raw.get("config") or {}
    if not isinstance(config, dict):
        raise ClaimError(f"{where}: 'config' must map dotted config keys to values, got {config!r}")
    return Side(raw["method"], tuple(labels), tuple(sorted(config.items())), str(raw.get("name") or ""), fallback)


def make_claim(raw: Any, origin: str) -> Claim:
    if not isinstance(raw, dict):
        raise ClaimError(f"{origin}: a claim must be a mapping, got {type(raw).__name__}")
    where = f"{origin} ({raw.get('id', '?')})"
    unknown = sorted(set(raw) - _CLAIM_KEYS)
    if unknown:
        raise ClaimError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(_CLAIM_KEYS))}")
    missing = [k for k in _REQUIRED if raw.get(k) in (None, "", [])]
    if missing:
        raise ClaimError(f"{where}: missing required key(s) {', '.join(missing)}")
    metric = raw.get("metric", "top1")
    checks = [("direction", raw["direction"], DIRECTIONS), ("metric", metric, METRICS),
              ("evidence", raw.get("evidence", "harness"), EVIDENCE)]
    for key, value, allowed in checks:
        if value not in allowed:
            raise ClaimError(f"{where}: '{key}' is {value!r}; allowed: {', '.join(allowed)}")
    datasets = raw["datasets"]
    if isinstance(datasets, str):
        datasets = [datasets]
    sp = raw.get("sparsity") or {}
    if not isinstance(sp, dict) or set(sp) - {"min", "max", "definition"}:
        raise ClaimError(f"{where}: 'sparsity' is a mapping with keys min, max (percent) and definition, got {sp!r}")
    definition = sp.get("definition", "target")
    if definition not in RANGE_DEFINITIONS:
        raise ClaimError(f"{where}: sparsity definition {definition!r}; allowed: {', '.join(RANGE_DEFINITIONS)}")
    bounds = []
    for k in ("min", "max"):
        v = sp.get(k)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 100):
            raise ClaimError(f"{where}: sparsity {k} is a percentage in [0, 100], got {v!r}")
        bounds.append(None if v is None else float(v))
    ratio = raw.get("paper_ratio")
    if ratio is not None and (not isinstance(ratio, (int, float)) or ratio <= 0):
        raise ClaimError(f"{where}: 'paper_ratio' must be a number > 0, got {ratio!r}")
    return Claim(id=str(raw["id"]), statement=str(raw["statement"]).strip(), a=_side(raw["a"], f"{where}: a"),
                 b=_side(raw["b"], f"{where}: b"), direction=raw["direction"], datasets=tuple(datasets),
                 metric=metric, sparsity_definition=definition, sparsity_min=bounds[0], sparsity_max=bounds[1],
                 source=str(raw.get("source") or ""), quote=str(raw.get("quote") or "").strip(),
                 evidence=raw.get("evidence", "harness"), paper_ratio=None if ratio is None else float(ratio),
                 note=str(raw.get("note") or "").strip())


def load_claims(path: Path) -> list[Claim]:
    """The claims of a YAML file ``{claims: [...]}``; errors name the file and the claim."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ClaimError(f"{path}: not valid YAML ({e})") from e
    if not isinstance(data, dict) or set(data) != {"claims"} or not isinstance(data["claims"], list):
        raise ClaimError(f"{path}: a claims file is a mapping with one key, 'claims', holding a list")
    claims = [make_claim(raw, f"{path}: claim {i}") for i, raw in enumerate(data["claims"], start=1)]
    ids = [c.id for c in claims]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise ClaimError(f"{path}: claim id(s) {', '.join(dup)} appear twice")
    return claims


def default_claims_path(results_dir: Path) -> Path | None:
    """``<results>/reference/claims.yaml`` when present, else the repository's ``results/reference/claims.yaml``."""
    own = Path(results_dir) / "reference" / CLAIMS_FILE
    if own.is_file():
        return own
    repo = Path(__file__).resolve().parents[2] / "results" / "reference" / CLAIMS_FILE
    return repo if repo.is_file() else None


# --------------------------------------------------------------------------- evaluation

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

    @property
    def stats(self) -> PairedStats:
        return paired_stats(self.diffs)

    @property
    def verdict(self) -> tuple[str, str]:
        if self.status:
            return self.status, ""
        return verdict(self.stats, self.claim.direction)

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


def _run_rows(claim: Claim, dataset: str, model: str, a: dict[Key, dict], b: dict[Key, dict], fld: str
              ) -> tuple[list[ClaimRow], list[str]]:
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
        rows.append(row)
    return rows, skipped


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
             datasets: Sequence[str] | None = None, accuracy: str = DEFAULT_ACCURACY,
             known: Iterable[str] | None = None) -> list[ClaimRow]:
    """Every claim on every one of its datasets (``datasets`` filters them; a claim's ``all`` is every
    dataset with records): rows in claim order, then dataset, model and target. The datasets of a claim
    that have no records at all share one row. ``known``: the method names in the harness (default: the
    registry)."""
    if known is None:
        from .. import registry

        known = registry.methods()
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
    return rows


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
        rows, skipped = _run_rows(claim, dataset, model, a, b, fld)
        out += rows
        if not rows:
            none = [s.display for s, recs in ((claim.a, a), (claim.b, b)) if not recs]
            why = f"no runs of {', '.join(none)}" if none else "no target with runs of both in the claim's range"
            row = _untested(claim, dataset, missing, why, model)
            row.notes += skipped
            out.append(row)
    return out or [_untested(claim, dataset, missing, "no runs of either side")]


# --------------------------------------------------------------------------- rendering

def _effect(row: ClaimRow, x: float | None, signed: bool = True) -> str:
    if x is None:
        return ""
    if row.claim.metric == "minutes":
        return f"{fmt(math.exp(x))}×"
    return fmt_signed(x) if signed else fmt(x)


def _row_cells(row: ClaimRow) -> list[str]:
    st = row.stats
    ci = f"[{_effect(row, st.low)}, {_effect(row, st.high)}]" if st.has_interval else ""
    notes = ([f"basis: {row.basis}"] if row.basis != "runs" else []) + \
            ([f"device: {row.device}"] if row.device else []) + row.notes
    return [row.claim.id, row.dataset, row.model or "—", pct(row.target) + "%" if row.target is not None else "—",
            row.claim.compared(), row.claim.claimed(), _effect(row, st.mean), ci, str(st.n) if st.n else "",
            row.verdict_text, "; ".join(notes)]


HEADER = ["claim", "dataset", "model", "sparsity", "compared", "claimed", "mean", "95% CI", "n", "verdict", "note"]


def claims_markdown(rows: Sequence[ClaimRow], claims: Sequence[Claim], accuracy: str = DEFAULT_ACCURACY,
                    level: int = 1) -> str:
    h = "#" * level
    out = [f"{h} The paper's claims, tested on paired runs\n"]
    if rows:
        out.append(_md_table(HEADER, [[md_escape(c) for c in _row_cells(r)] for r in rows],
                             ["l", "l", "l", "r", "l", "l", "r", "l", "r", "l", "l"]))
    else:
        out.append("No claim concerns the datasets asked for.\n")
    out.append(VERDICT_RULE.format(accuracy=ACCURACY_SHORT[accuracy], k=MIN_PAIRS) + "\n")
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
               "device", "n", "mean", "ci_low", "ci_high", "interval", "verdict", "reason", "seeds", "diffs", "note"]


def claims_csv_rows(rows: Sequence[ClaimRow]) -> list[list[str]]:
    out = []
    for r in rows:
        st = r.stats
        v, why = r.verdict
        out.append([r.claim.id, r.claim.evidence, r.dataset, r.model, r.claim.metric, r.claim.a.display,
                    r.claim.b.display, r.claim.direction, num(r.target), r.basis, r.device, str(st.n), num(st.mean),
                    num(st.low), num(st.high), "t" if st.has_interval else "", v, why,
                    ";".join(str(s) for s in r.seeds), ";".join(num(d) for d in r.diffs), "; ".join(r.notes)])
    return out


VERDICT_COLOURS = {"holds": "#2ca02c", "contradicted": "#d62728", "inconclusive": "#7f7f7f"}


def plot_claims(rows: Sequence[ClaimRow]):
    """A forest plot: one line per row with pairs (mean, 95% interval), the zero line, colour = verdict;
    top-1 rows and latency rows (ratio a / b, log scale, line at 1) in separate panels. None: no pairs."""
    from matplotlib.lines import Line2D

    from .figures import new_figure

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
                  for r in rs]
        ax.set_yticks(ys, labels=labels, fontsize=7)
        ax.set_ylim(-0.7, len(rs) - 0.3)
        if metric == "minutes":
            ax.set_xscale("log")
            ax.set_xlabel("per-run minutes a / b (log scale; 1 = equal cost)")
        else:
            ax.set_xlabel("top-1 a − b (percentage points)")
    handles = [Line2D([], [], color=c, marker="o", linewidth=2, label=v) for v, c in VERDICT_COLOURS.items()]
    handles.append(Line2D([], [], color="#7f7f7f", marker="o", markerfacecolor="white", linestyle="none",
                          label=f"hollow: n < {MIN_PAIRS}"))
    fig.legend(handles=handles, loc="outside lower center", ncols=4, fontsize=8)
    fig.suptitle("The paper's claims: paired differences over seeds (mean, 95% t-interval)")
    return fig


# --------------------------------------------------------------------------- files

def evaluate_claims(results_dir: Path, dataset: str | Sequence[str] | None = None, *,
                    accuracy: str = DEFAULT_ACCURACY, claims_path: Path | None = None,
                    reference_dir: Path | None = None, runs: list[dict] | None = None
                    ) -> tuple[list[Claim], list[ClaimRow]]:
    """The claims (``claims_path``, default ``default_claims_path``) and their rows on the records."""
    from .references import default_reference_dir, load_references

    results_dir = Path(results_dir)
    path = default_claims_path(results_dir) if claims_path is None else Path(claims_path)
    if path is None or not path.is_file():
        raise FileNotFoundError(f"claims file {path or CLAIMS_FILE} not found (give --claims FILE)")
    claims = load_claims(path)
    runs = load_runs(results_dir) if runs is None else runs
    refs = load_references(default_reference_dir(results_dir) if reference_dir is None else reference_dir)
    names = None if dataset is None else ([dataset] if isinstance(dataset, str) else list(dataset))
    return claims, evaluate(claims, runs, refs, names, accuracy)


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
    from .figures import figure_style, save_figure

    with figure_style():
        fig = plot_claims(rows)
        return [] if fig is None else save_figure(fig, Path(plots_dir) / "claims", formats)


def write_claims(results_dir: Path, plots_dir: Path, dataset: str | Sequence[str] | None = None, *,
                 accuracy: str = DEFAULT_ACCURACY, claims_path: Path | None = None,
                 reference_dir: Path | None = None, runs: list[dict] | None = None,
                 formats: Sequence[str] = ("png", "pdf")) -> list[Path]:
    """Evaluate the claims on the records and write ``<results>/tables/claims.{md,csv}`` and
    ``<plots>/claims.{png,pdf}`` (the forest plot, when some claim has pairs); return the paths."""
    claims, rows = evaluate_claims(results_dir, dataset, accuracy=accuracy, claims_path=claims_path,
                                   reference_dir=reference_dir, runs=runs)
    return write_claim_tables(results_dir, claims, rows, accuracy) + write_claim_figure(plots_dir, rows, formats)
