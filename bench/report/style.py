"""One place for how methods look and in which order they appear, in every table and figure.

Known methods keep a fixed position, colour and marker. A method not in ``METHOD_STYLES`` sorts
after the known ones (alphabetically) and gets a colour and marker derived from a hash of its
label, so it looks the same in every figure whatever else is plotted beside it.
"""
from __future__ import annotations

import hashlib
from typing import Iterable, NamedTuple


class Style(NamedTuple):
    colour: str
    marker: str


# label -> (colour, marker); the order of this table is the column order of every table.
# The star marker is reserved for paper-reported points (PAPER_MARKER).
METHOD_STYLES: dict[str, Style] = {
    "dense": Style("#4d4d4d", "s"),
    "dense-kd": Style("#843c39", "s"),
    "magnitude": Style("#1f77b4", "o"),
    "magnitude-ft": Style("#aec7e8", "o"),
    "random": Style("#8c8c8c", "v"),
    "random-layerwise": Style("#bcbd22", "v"),
    "grad-ce": Style("#ffbb78", "D"),
    "tgp": Style("#ff7f0e", "D"),
    "tgp-kd": Style("#d62728", "p"),
    "tgp-rewind": Style("#ff9896", "p"),
    "colt": Style("#2ca02c", "^"),
    "egp": Style("#9467bd", "P"),
    "cskd-simple": Style("#8c564b", "<"),
    "cskd-epsd": Style("#c49c94", ">"),
    "pskd-simple": Style("#e377c2", "h"),
    "pskd-epsd": Style("#f7b6d2", "H"),
    "dlb-simple": Style("#17becf", "X"),
    "dlb-epsd": Style("#9edae5", "d"),
    "cskd": Style("#5c3a33", "<"),          # dense self-distillation references
    "pskd": Style("#a0527f", "h"),
    "dlb": Style("#0f7c87", "X"),
}

PAPER_MARKER = "*"

# Colours and markers for methods not in the table above (chosen by a hash of the label).
_EXTRA_COLOURS = ("#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd",
                  "#e6550d", "#31a354", "#756bb1", "#636363", "#bcbd22", "#6b6ecf")
_EXTRA_MARKERS = ("o", "s", "^", "v", "D", "<", ">", "h", "8")

# Nice names for datasets in captions and titles; unknown datasets show their name.
DATASET_NAMES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "tinyimagenet": "Tiny-ImageNet",
                 "synthetic": "synthetic"}


def dataset_title(dataset: str) -> str:
    return DATASET_NAMES.get(dataset, dataset)


def _digest(label: str) -> int:
    return int(hashlib.sha256(label.encode()).hexdigest()[:8], 16)


def style_for(method: str) -> Style:
    """The colour and marker of ``method`` (fixed for known methods, hash-derived otherwise)."""
    if method in METHOD_STYLES:
        return METHOD_STYLES[method]
    h = _digest(method)
    return Style(_EXTRA_COLOURS[h % len(_EXTRA_COLOURS)], _EXTRA_MARKERS[(h // 7) % len(_EXTRA_MARKERS)])


def method_sort_key(method: str) -> tuple:
    known = list(METHOD_STYLES)
    return (0, known.index(method), "") if method in known else (1, 0, method)


def order_methods(methods: Iterable[str]) -> list[str]:
    """Distinct methods in the canonical order: the known ones as in METHOD_STYLES, then the rest A-Z."""
    return sorted(set(methods), key=method_sort_key)
