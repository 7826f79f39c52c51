"""The claims file (``results/reference/claims.yaml``, format in docs/reporting.md, "Claims"): parsing and
validation into ``Claim`` objects. A claim compares side ``a`` with side ``b``: two methods of the harness
(or a method and a published number), on some datasets, over a sparsity range under a stated sparsity
definition, in a direction. Errors name the file, the claim and the fix."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .format import fmt
from .references import CLAIMS_FILE

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


class ClaimError(ValueError):
    """A claims file that cannot be used; the message names the file, the claim and the fix."""


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
    # What the claim needs to be testable on a grid (``requires: {teacher_margin: 5}``): the teacher's top-1
    # at least this many points above the dense student's on the same test set; otherwise 'untestable here'.
    teacher_margin: float | None = None

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
               "evidence", "paper_ratio", "note", "requires"}
REQUIREMENTS = ("teacher_margin",)
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
    req = raw.get("requires") or {}
    if not isinstance(req, dict) or set(req) - set(REQUIREMENTS):
        raise ClaimError(f"{where}: 'requires' is a mapping with key(s) {', '.join(REQUIREMENTS)}, got {req!r}")
    margin = req.get("teacher_margin")
    if margin is not None and (isinstance(margin, bool) or not isinstance(margin, (int, float)) or margin < 0):
        raise ClaimError(f"{where}: requires.teacher_margin is a number of percentage points >= 0, got {margin!r}")
    return Claim(id=str(raw["id"]), statement=str(raw["statement"]).strip(), a=_side(raw["a"], f"{where}: a"),
                 b=_side(raw["b"], f"{where}: b"), direction=raw["direction"], datasets=tuple(datasets),
                 metric=metric, sparsity_definition=definition, sparsity_min=bounds[0], sparsity_max=bounds[1],
                 source=str(raw.get("source") or ""), quote=str(raw.get("quote") or "").strip(),
                 evidence=raw.get("evidence", "harness"), paper_ratio=None if ratio is None else float(ratio),
                 note=str(raw.get("note") or "").strip(), teacher_margin=None if margin is None else float(margin))


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
