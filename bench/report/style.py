"""One place for how methods look and in which order they appear, in every table and figure.

Methods belong to families (``family_of``): the proposed method and its temperature labels, the
reference methods, the controls, the self-distillation rows, the iterative baselines. Each family
has one colour family (reds, blues and greys, greens, purples, browns); inside it every method has
its own shade, marker or line style (the self-distillation rows: Simple solid, EPSD dashed).
Known labels keep a fixed position, colour and marker. A label not in ``METHOD_STYLES`` that
varies a known one (``magnitude-x``) sorts right after it and keeps its colour and line with
another marker; any other label sorts after the known ones (A-Z) and gets a shade and a marker of
its family chosen by a hash of the label, so it looks the same in every figure whatever else is
plotted beside it.
"""
from __future__ import annotations

import hashlib
import re
from typing import Iterable, NamedTuple

from .. import datasets as D


class Style(NamedTuple):
    colour: str
    marker: str
    linestyle: str = "-"


FAMILIES = ("proposed", "references", "controls", "self-distillation", "iterative", "other")
CONTROLS = ("magnitude-ft", "grad-ce", "random-layerwise", "tgp-rewind", "dense-kd", "tgp-magnitude-alloc",
            "magnitude-tgp-alloc")
REFERENCES = ("dense", "magnitude", "random")


def family_of(method: str) -> str:
    """The family a grid label belongs to (the figures draw one panel per family beside the proposed one)."""
    if method in CONTROLS:
        return "controls"
    if method in REFERENCES:
        return "references"
    if method == "tgp" or method.startswith(("tgp-kd", "tgp-T")):
        return "proposed"
    if re.match(r"(cskd|pskd|dlb)(-|$)", method):
        return "self-distillation"
    if re.match(r"(colt|egp)(-|$)", method):
        return "iterative"
    base = _known_base(method)          # a variant of a known label (magnitude-x) joins its family
    return family_of(base) if base else "other"


# label -> style; the order of this table is the column order of every table.
# The star marker is reserved for paper-reported points (PAPER_MARKER).
METHOD_STYLES: dict[str, Style] = {
    "dense": Style("#525252", "s"),                 # references: greys and blues
    "dense-kd": Style("#00441b", "s"),              # controls: greens
    "magnitude": Style("#08519c", "o"),
    "magnitude-ft": Style("#238b45", "o"),
    "random": Style("#6baed6", "v"),
    "random-layerwise": Style("#74c476", "v"),
    "grad-ce": Style("#41ab5d", "D", "--"),
    "tgp-magnitude-alloc": Style("#006d2c", "<", "--"),     # allocation against selection
    "magnitude-tgp-alloc": Style("#a1d99b", ">", "--"),
    "tgp": Style("#f16913", "D"),                   # proposed: oranges and reds; temperature labels dashed
    "tgp-kd": Style("#a50f15", "o"),
    "tgp-kd-T3": Style("#fb6a4a", "v", "--"),
    "tgp-kd-T5": Style("#fb6a4a", "^", "--"),
    "tgp-rewind": Style("#005a32", "p", "--"),
    "colt": Style("#8c510a", "^"),                  # iterative: browns
    "egp": Style("#bf812d", "P"),
    "egp-shortcut": Style("#543005", "X", "--"),
    # self-distillation: purples, one shade per SD method; Simple solid, EPSD dashed, the dense references
    # dotted; the matched-budget variants (<label>-matched) with markers of their own.
    "cskd-simple": Style("#3f007d", "<"),
    "cskd-simple-matched": Style("#3f007d", "^"),
    "cskd-epsd": Style("#3f007d", ">", "--"),
    "cskd-epsd-matched": Style("#3f007d", "v", "--"),
    "pskd-simple": Style("#6a51a3", "h"),
    "pskd-simple-matched": Style("#6a51a3", "p"),
    "pskd-epsd": Style("#6a51a3", "H", "--"),
    "pskd-epsd-matched": Style("#6a51a3", "8", "--"),
    "dlb-simple": Style("#9e9ac8", "d"),
    "dlb-simple-matched": Style("#9e9ac8", "D"),
    "dlb-epsd": Style("#9e9ac8", "X", "--"),
    "dlb-epsd-matched": Style("#9e9ac8", "P", "--"),
    "cskd": Style("#3f007d", "s", ":"),
    "cskd-matched": Style("#3f007d", "o", ":"),
    "pskd": Style("#6a51a3", "s", ":"),
    "pskd-matched": Style("#6a51a3", "o", ":"),
    "dlb": Style("#9e9ac8", "s", ":"),
    "dlb-matched": Style("#9e9ac8", "o", ":"),
}

PAPER_MARKER = "*"

# Shades and markers of each family for labels not in the table above (chosen by a hash of the label).
FAMILY_COLOURS = {
    "proposed": ("#fb6a4a", "#cb181d", "#fd8d3c", "#67000d", "#d94801"),
    "references": ("#2171b5", "#4292c6", "#084594", "#737373"),
    "controls": ("#006d2c", "#31a354", "#a1d99b", "#00441b"),
    "self-distillation": ("#54278f", "#807dba", "#bcbddc", "#3f007d"),
    "iterative": ("#8c510a", "#dfc27d", "#a6611a", "#543005"),
    "other": ("#393b79", "#637939", "#8c6d31", "#7b4173", "#3182bd", "#636363", "#6b6ecf"),
}
_MARKERS = ("o", "s", "^", "v", "D", "<", ">", "h", "p", "P", "X", "d", "8")
# A temperature label of the proposed method (tgp-kd-T5): the kd colour family, its own marker and a dashed line.
_TEMPERATURE = re.compile(r"^tgp-kd-T([0-9.]+)$")

# Titles the records carry (``data.title``): a dataset registered by a plug-in is titled in the tables
# without the plug-in being loaded (remember_titles, called where the records are read).
_TITLES: dict[str, str] = {}


def remember_titles(runs) -> None:
    for r in runs:
        d = r.get("data")
        if isinstance(d, dict) and d.get("title") and r.get("dataset"):
            _TITLES.setdefault(str(r["dataset"]), str(d["title"]))


def dataset_title(dataset: str) -> str:
    """How captions and titles name a dataset: its records' title, else its registry entry's (bench/datasets.py),
    else its name."""
    return _TITLES.get(dataset) or D.title(dataset)


def _digest(label: str) -> int:
    return int(hashlib.sha256(label.encode()).hexdigest()[:8], 16)


def _other_marker(base: str, label: str) -> str:
    """A marker other than ``base``'s, fixed by the label."""
    choices = [m for m in _MARKERS if m != base]
    return choices[_digest(label) % len(choices)]


def style_for(method: str) -> Style:
    """The colour, marker and line style of ``method``: fixed for known labels; a variant of a known label
    (``<label>-matched``, ``<label>-<anything>``) keeps its colour and line with another marker; any other
    label gets a shade and a marker of its family from a hash of the label."""
    if method in METHOD_STYLES:
        return METHOD_STYLES[method]
    if _TEMPERATURE.match(method):          # another temperature label: the T3/T5 colour, a marker of its own
        return Style("#fb6a4a", ("s", "v", "<", ">", "p")[_digest(method) % 5], "--")
    base = _known_base(method)
    if base is not None:
        st = METHOD_STYLES[base]
        return Style(st.colour, _other_marker(st.marker, method), st.linestyle)
    h = _digest(method)
    colours = FAMILY_COLOURS[family_of(method)]
    return Style(colours[h % len(colours)], _MARKERS[(h // 7) % len(_MARKERS)])


def _known_base(method: str) -> str | None:
    """The longest label of METHOD_STYLES that ``method`` varies (``cskd-simple`` for ``cskd-simple-x``)."""
    parts = method.split("-")
    for k in range(len(parts) - 1, 0, -1):
        if "-".join(parts[:k]) in METHOD_STYLES:
            return "-".join(parts[:k])
    return None


def method_sort_key(method: str) -> tuple:
    known = list(METHOD_STYLES)
    if method in known:
        return (0, known.index(method), 0, "")
    base = _known_base(method)
    return (0, known.index(base), 1, method) if base else (1, 0, 0, method)


def order_methods(methods: Iterable[str]) -> list[str]:
    """Distinct methods in the canonical order: the known ones as in METHOD_STYLES, each followed by its
    variants (A-Z), then the rest A-Z."""
    return sorted(set(methods), key=method_sort_key)
