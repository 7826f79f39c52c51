"""Published numbers (``results/reference/*.yaml|*.yml|*.csv``): load, validate, match to our runs.

A reference row is one number a source reported: a top-1 accuracy and/or a training time, for one
dataset, method and sparsity. The file format is described in docs/reporting.md; in short:

* YAML: a list of rows, or a mapping ``{defaults: {...}, rows: [...]}`` whose ``defaults`` are
  copied into every row that does not set the key itself.
* CSV: one header line with the column names, one row per line; lines starting with ``#`` are
  comments; ``compare_to`` is a ``;``-separated list.

Sparsities in reference files are in **percent** (as papers print them); accuracies are percent;
times are minutes. A number whose sparsity the source does not state has an empty ``sparsity``
and ``sparsity_definition: unknown``: it is listed, flagged, and never matched to a sparsity of ours.

``claims.yaml`` in the same directory is not a reference file (it is read by ``claims.py``).
"""
from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import yaml

# How a source counted its sparsity. Only "conv" and "overall" can be matched to our runs
# (our prunable set is every Conv2d weight; "overall" is the COLT-style figure).
SPARSITY_DEFINITIONS = {
    "overall": "zeros / (conv + linear + BN weights), COLT-style",
    "conv": "zeros / all conv weights (= our prunable set)",
    "conv+linear": "zeros / (conv + linear weights)",
    "conv-relu": "zeros / conv layers followed by a ReLU (EGP)",
    "unknown": "not stated by the source (the number, or how it was counted)",
}
CLAIMS_FILE = "claims.yaml"     # lives beside the reference files; not one of them
ACCURACY_KINDS = ("best", "final", "unknown")

REQUIRED = ("dataset", "method", "sparsity_definition", "source")
OPTIONAL = ("sparsity", "top1", "minutes", "sparsity_conv", "sparsity_overall", "where", "accuracy", "model", "gpu",
            "method_reported", "compare_to", "note")
COLUMNS = REQUIRED + OPTIONAL
NUMERIC = ("sparsity", "top1", "minutes", "sparsity_conv", "sparsity_overall")

CONV_MATCH_TOL = 0.005    # percentage points: a conv sparsity must equal our target (to the printed digits)
OVERALL_MATCH_TOL = 0.1   # percentage points: nearest overall sparsity within this distance


class ReferenceFileError(ValueError):
    """A reference file that cannot be used; the message names the file, the row and the fix."""


@dataclass(frozen=True)
class Reference:
    dataset: str
    method: str                    # our grid label this row belongs to (colour, figure overlay)
    sparsity: float | None         # as reported, percent; None: the source states no sparsity
    sparsity_definition: str
    source: str
    top1: float | None = None
    minutes: float | None = None
    sparsity_conv: float | None = None      # percent over the conv (prunable) set, given or implied
    sparsity_overall: float | None = None   # percent, COLT-style
    where: str = ""                # table / text / figure of the source
    accuracy: str = "unknown"      # best | final | unknown: which epoch the source reports
    model: str = ""
    gpu: str = ""
    method_reported: str = ""      # the method's name in the source
    compare_to: tuple[str, ...] = ()   # our grid labels compared with this row (default: (method,))
    note: str = ""
    origin: str = field(default="", compare=False)   # file:row, for messages

    @property
    def labels(self) -> tuple[str, ...]:
        return self.compare_to or (self.method,)

    @property
    def reported_as(self) -> str:
        return self.method_reported or self.method

    @property
    def sparsity_stated(self) -> bool:
        return self.sparsity is not None

    def sparsity_text(self) -> str:
        if self.sparsity is None:
            return "not stated"
        return f"{self.sparsity:.2f} ({self.sparsity_definition})"

    def source_text(self) -> str:
        return f"{self.source}, {self.where}" if self.where else self.source


def _err(origin: str, msg: str) -> ReferenceFileError:
    return ReferenceFileError(f"{origin}: {msg}")


def _number(origin: str, key: str, value: Any) -> float | None:
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return None
    if isinstance(value, bool):
        raise _err(origin, f"column '{key}' must be a number, got {value!r}")
    try:
        x = float(str(value).strip().rstrip("%")) if isinstance(value, str) else float(value)
    except ValueError:
        raise _err(origin, f"column '{key}' must be a number, got {value!r}") from None
    if not math.isfinite(x):
        raise _err(origin, f"column '{key}' must be a finite number, got {value!r}")
    return x


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def make_reference(raw: dict, origin: str = "<row>") -> Reference:
    """Validate one raw row (from YAML or CSV) and build a Reference; raise ReferenceFileError if it is wrong."""
    if not isinstance(raw, dict):
        raise _err(origin, f"a row must be a mapping of column -> value, got {type(raw).__name__}")
    unknown = sorted(set(raw) - set(COLUMNS))
    if unknown:
        raise _err(origin, f"unknown column(s) {', '.join(unknown)}; allowed: {', '.join(COLUMNS)}")
    missing = [k for k in REQUIRED if _text(raw.get(k)) == ""]
    if missing:
        raise _err(origin, f"missing required column(s) {', '.join(missing)} "
                           f"(required: {', '.join(REQUIRED)})")
    nums = {k: _number(origin, k, raw.get(k)) for k in NUMERIC}
    if nums["top1"] is None and nums["minutes"] is None:
        raise _err(origin, "a row needs a value: 'top1' (accuracy, %) and/or 'minutes' (training time)")
    for k in ("sparsity", "sparsity_conv", "sparsity_overall"):
        v = nums[k]
        if v is None:
            continue
        if not 0 <= v < 100:
            raise _err(origin, f"'{k}' is a percentage in [0, 100), got {v}")
        if 0 < v < 1:
            raise _err(origin, f"'{k}' is in percent (e.g. 98.41), but {v} looks like a fraction; write {v * 100:g}")
    if nums["top1"] is not None and not 0 <= nums["top1"] <= 100:
        raise _err(origin, f"'top1' is a percentage in [0, 100], got {nums['top1']}")
    if nums["minutes"] is not None and nums["minutes"] < 0:
        raise _err(origin, f"'minutes' must be >= 0, got {nums['minutes']}")
    definition = _text(raw["sparsity_definition"]).lower()
    if definition not in SPARSITY_DEFINITIONS:
        raise _err(origin, f"'sparsity_definition' is {definition!r}; allowed: {', '.join(SPARSITY_DEFINITIONS)}")
    if nums["sparsity"] is None and definition != "unknown":
        raise _err(origin, "'sparsity' is empty: give the sparsity as reported, or, when the source states "
                           "none, set 'sparsity_definition: unknown'")
    # The reported sparsity is, by definition, the figure of its own kind.
    for kind, key in (("overall", "sparsity_overall"), ("conv", "sparsity_conv")):
        if definition == kind:
            if nums[key] is None:
                nums[key] = nums["sparsity"]
            elif abs(nums[key] - nums["sparsity"]) > 1e-9:
                raise _err(origin, f"'sparsity_definition' is {kind} but '{key}' ({nums[key]}) differs from "
                                   f"'sparsity' ({nums['sparsity']})")
    accuracy = _text(raw.get("accuracy")).lower() or "unknown"
    if accuracy not in ACCURACY_KINDS:
        raise _err(origin, f"'accuracy' is {accuracy!r}; allowed: {', '.join(ACCURACY_KINDS)}")
    compare = raw.get("compare_to")
    if compare is None or compare == "":
        compare_to: tuple[str, ...] = ()
    elif isinstance(compare, str):
        compare_to = tuple(s.strip() for s in compare.split(";") if s.strip())
    elif isinstance(compare, (list, tuple)) and all(isinstance(s, str) for s in compare):
        compare_to = tuple(s.strip() for s in compare if s.strip())
    else:
        raise _err(origin, f"'compare_to' must be a list of method labels (CSV: 'a;b'), got {compare!r}")
    return Reference(
        dataset=_text(raw["dataset"]).lower(), method=_text(raw["method"]), sparsity=nums["sparsity"],
        sparsity_definition=definition, source=_text(raw["source"]), top1=nums["top1"], minutes=nums["minutes"],
        sparsity_conv=nums["sparsity_conv"], sparsity_overall=nums["sparsity_overall"],
        where=_text(raw.get("where")), accuracy=accuracy, model=_text(raw.get("model")), gpu=_text(raw.get("gpu")),
        method_reported=_text(raw.get("method_reported")), compare_to=compare_to, note=_text(raw.get("note")),
        origin=origin,
    )


def _yaml_rows(path: Path) -> list[tuple[str, dict]]:
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ReferenceFileError(f"{path}: not valid YAML ({e})") from e
    if data is None:
        return []
    defaults: dict = {}
    if isinstance(data, dict):
        extra = sorted(set(data) - {"defaults", "rows"})
        if extra:
            raise ReferenceFileError(f"{path}: unknown top-level key(s) {', '.join(map(str, extra))}; "
                                 "a reference YAML is a list of rows or {defaults: {...}, rows: [...]}")
        defaults = data.get("defaults") or {}
        if not isinstance(defaults, dict):
            raise ReferenceFileError(f"{path}: 'defaults' must be a mapping")
        data = data.get("rows") or []
    if not isinstance(data, list):
        raise ReferenceFileError(f"{path}: expected a list of rows (or {{defaults, rows}}), got {type(data).__name__}")
    out = []
    for i, row in enumerate(data, start=1):
        if not isinstance(row, dict):
            raise ReferenceFileError(f"{path}: row {i}: a row must be a mapping, got {row!r}")
        out.append((f"{path}: row {i}", {**defaults, **row}))
    return out


def _csv_rows(path: Path) -> list[tuple[str, dict]]:
    lines = path.read_text().splitlines()
    numbered = [(n, line) for n, line in enumerate(lines, start=1)
                if line.strip() and not line.lstrip().startswith("#")]
    if not numbered:
        return []
    reader = csv.reader(io.StringIO("\n".join(line for _, line in numbered)))
    rows = list(reader)
    header = [h.strip() for h in rows[0]]
    out = []
    for (lineno, _), values in zip(numbered[1:], rows[1:]):
        if len(values) != len(header):
            raise ReferenceFileError(f"{path}: line {lineno}: {len(values)} values for {len(header)} columns")
        out.append((f"{path}: line {lineno}", dict(zip(header, values))))
    return out


def reference_files(reference_dir: Path) -> list[Path]:
    d = Path(reference_dir)
    if not d.is_dir():
        return []
    return sorted(p for p in d.iterdir() if p.is_file() and p.suffix.lower() in (".yaml", ".yml", ".csv")
                  and p.name != CLAIMS_FILE)


def load_reference_file(path: Path) -> list[Reference]:
    path = Path(path)
    rows = _csv_rows(path) if path.suffix.lower() == ".csv" else _yaml_rows(path)
    return [make_reference(raw, origin) for origin, raw in rows]


def load_references(reference_dir: Path | None) -> list[Reference]:
    """Every row of every reference file in ``reference_dir`` (files in name order); [] when there is none."""
    if reference_dir is None:
        return []
    refs: list[Reference] = []
    for p in reference_files(reference_dir):
        refs.extend(load_reference_file(p))
    return refs


def default_reference_dir(results_dir: Path) -> Path | None:
    """``<results>/reference`` when it holds reference files, else the repository's ``results/reference``."""
    own = Path(results_dir) / "reference"
    if reference_files(own):
        return own
    repo = Path(__file__).resolve().parents[2] / "results" / "reference"
    return repo if reference_files(repo) else None


def for_dataset(refs: Iterable[Reference], dataset: str, *, top1: bool | None = None,
                minutes: bool | None = None) -> list[Reference]:
    out = [r for r in refs if r.dataset == dataset]
    if top1:
        out = [r for r in out if r.top1 is not None]
    if minutes:
        out = [r for r in out if r.minutes is not None]
    return out


def match_target(ref: Reference, overall_by_target: dict[float, float | None]) -> float | None:
    """Our target sparsity (fraction over the prunable set) that ``ref`` compares with, or None.

    When the reference gives a conv sparsity, it must equal our target to within CONV_MATCH_TOL
    percentage points. Otherwise, when it gives an overall (COLT-style) sparsity, the target whose
    measured overall sparsity is nearest, within OVERALL_MATCH_TOL points. Other definitions do
    not match anything (they are listed, unmatched).
    """
    if ref.sparsity_conv is not None:
        for t in sorted(overall_by_target):
            if abs(t * 100 - ref.sparsity_conv) <= CONV_MATCH_TOL + 1e-9:
                return t
        return None
    if ref.sparsity_overall is not None:
        best = None
        for t in sorted(overall_by_target):
            ov = overall_by_target[t]
            if ov is None:
                continue
            d = abs(ov * 100 - ref.sparsity_overall)
            if d <= OVERALL_MATCH_TOL + 1e-9 and (best is None or d < best[0]):
                best = (d, t)
        return None if best is None else best[1]
    return None
