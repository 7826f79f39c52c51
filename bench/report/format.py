"""Formatting primitives shared by every table: number formatting, escaping, the output dialects
(plain, Markdown, LaTeX) and the Markdown / booktabs / CSV writers.

Pure functions of their inputs: the same values give the same bytes.
"""
from __future__ import annotations

import csv
import io
import math

DASH_MD = "—"


# --------------------------------------------------------------------------- formatting helpers

def fmt(x: float | None, digits: int = 2) -> str:
    """Fixed-point text; never '-0.00'."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    r = round(float(x), digits)
    if r == 0:
        r = 0.0
    return f"{r:.{digits}f}"


def fmt_signed(x: float, digits: int = 2) -> str:
    r = round(float(x), digits)
    if r == 0:
        return f"{0.0:.{digits}f}"
    return f"{r:+.{digits}f}"


def pct(x: float | None) -> str:
    return "" if x is None else fmt(100 * x)


def num(x: float | None, digits: int = 6) -> str:
    """Numbers in CSV files: fixed digits, empty for missing."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    r = round(float(x), digits)
    return f"{0.0 if r == 0 else r:.{digits}f}"


_TEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def tex_escape(s: str) -> str:
    out = "".join(_TEX_ESCAPES.get(ch, ch) for ch in str(s))
    for a, b in (("±", r"$\pm$"), ("—", "---"), ("–", "--"), ("×", r"$\times$"), ("−", "-"), ("†", r"\dag{}"),
                 ("‡", r"\ddag{}"), ("§", r"\S{}"), ("¶", r"\P{}"), (">", r"$>$"), ("<", r"$<$"), ("∅", r"$\emptyset$"),
                 ("≥", r"$\geq$"), ("≤", r"$\leq$"), ("°", r"$^\circ$"), ("…", r"\ldots{}")):
        out = out.replace(a, b)
    return out


def md_escape(s: str) -> str:
    return str(s).replace("|", r"\|").replace("\n", " ")


class Dialect:
    """How a cell's parts are written in one output format."""
    name = "plain"
    dash = DASH_MD
    pm = " ± "
    dagger = "†"       # the cell has failed runs
    ddagger = "‡"      # the cell leaves out reused phases made on another device
    section = "§"      # the cell is off target: its realised sparsity misses the target
    pilcrow = "¶"      # the cell is unreachable: the method's set cannot reach the target
    collapse = "∅"     # a run of the cell (nearly) emptied a layer
    percent = "%"

    def bold(self, s: str) -> str:
        return s

    def n(self, n: int) -> str:
        return f" (n={n})"

    def text(self, s: str) -> str:
        return s


class MarkdownDialect(Dialect):
    name = "md"

    def bold(self, s):
        return f"**{s}**"

    def text(self, s):
        return md_escape(s)


class TexDialect(Dialect):
    name = "tex"
    dash = "---"
    pm = r" $\pm$ "
    dagger = r"$^\dagger$"
    ddagger = r"$^\ddagger$"
    section = r"$^\S$"
    pilcrow = r"$^\P$"
    collapse = r"$^\emptyset$"
    percent = r"\%"

    def bold(self, s):
        return rf"\textbf{{{s}}}"

    def n(self, n):
        return f" ($n{{=}}{n}$)"

    def text(self, s):
        return tex_escape(s)


PLAIN, MD, TEX = Dialect(), MarkdownDialect(), TexDialect()



def _md_table(header: list[str], rows: list[list[str]], align: list[str]) -> str:
    out = ["| " + " | ".join(header) + " |",   # header cells arrive escaped, like the rows
           "| " + " | ".join("---:" if a == "r" else ":---" if a == "l" else ":---:" for a in align) + " |"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out) + "\n"



def _tex_tabular(header: list[str], rows: list[list[str]], spec: str, dense_row: int | None = None,
                 label_cols: int = 2, rule_before: int | None = None, span: int | None = None) -> list[str]:
    """A booktabs tabular; ``dense_row``: a row whose first value spans ``span`` data columns (default all),
    ruled below; ``rule_before``: a row with a rule above it (the budget rows)."""
    ncols = len(header)
    span = ncols - label_cols if span is None else span
    out = [rf"\begin{{tabular}}{{{spec}}}", r"\toprule", " & ".join(header) + r" \\", r"\midrule"]
    for i, r in enumerate(rows):
        if i == rule_before and i > 0 and i - 1 != dense_row:
            out.append(r"\midrule")
        if i == dense_row and span > 1:
            rest = "".join(f" & {c}" for c in r[label_cols + span:])
            out.append(" & ".join(r[:label_cols]) + rf" & \multicolumn{{{span}}}{{c}}{{{r[label_cols]}}}{rest} \\")
            out.append(r"\midrule")
        else:
            out.append(" & ".join(r) + r" \\")
            if i == dense_row:
                out.append(r"\midrule")
    out += [r"\bottomrule", r"\end{tabular}"]
    return out



def _csv_text(header: list[str], rows: list[list]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()

