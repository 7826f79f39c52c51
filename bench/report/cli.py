"""Subcommands ``table``, ``plot``, ``claims`` and ``report`` of ``python -m bench`` (added by ``register``).

    python -m bench table  [--dataset cifar10] [--format md|tex|csv|all] [--accuracy best|final] [--transpose]
    python -m bench plot   [--dataset cifar10] [--format png|pdf|all] [--sparsity 0.985]
    python -m bench claims [--dataset cifar10] [--claims FILE]
    python -m bench report [--out results/REPORT.md]

All read ``--results DIR`` (default ``results``) and never train anything.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .aggregate import ACCURACY_FIELDS, DEFAULT_ACCURACY


def _common(p: argparse.ArgumentParser, *, plots: bool, dataset: bool) -> None:
    p.add_argument("--results", type=Path, default=Path("results"), help="results directory (default: results)")
    if plots:
        p.add_argument("--plots", type=Path, default=Path("plots"), help="figures directory (default: plots)")
    if dataset:
        p.add_argument("--dataset", action="append", default=None, metavar="NAME",
                       help="dataset to render (repeatable; default: every dataset with run records)")
    p.add_argument("--accuracy", choices=sorted(ACCURACY_FIELDS), default=DEFAULT_ACCURACY,
                   help="which test accuracy: final epoch (default) or best epoch (the maximum over the epochs: "
                        "selected on the test set, optimistic; the COLT/paper convention)")
    p.add_argument("--reference", type=Path, default=None, metavar="DIR",
                   help="paper-reported numbers (default: <results>/reference if it has files, else the "
                        "repository's results/reference)")
    p.add_argument("--ref-method", action="append", default=None, metavar="LABEL",
                   help="method latency ratios are taken against: the first of these that was run "
                        "(repeatable; default: tgp-kd, then tgp)")


def _sparsity(text: str) -> float:
    x = float(text)
    if not 0 <= x < 100:
        raise argparse.ArgumentTypeError("a fraction in [0, 1) or a percentage")
    return x / 100 if x >= 1 else x


def cmd_table(args) -> int:
    from .tables import write_tables

    formats = "all" if args.format == "all" else [args.format]
    for p in write_tables(args.results, args.dataset, formats=formats, accuracy=args.accuracy,
                          transpose=args.transpose, paper=args.paper, reference_dir=args.reference,
                          ref_method=args.ref_method, tables_dir=args.tables):
        print(f"wrote {p}")
    return 0


def cmd_plot(args) -> int:
    from .figures import FIG_FORMATS, write_figures

    formats = FIG_FORMATS if args.format == "all" else (args.format,)
    for p in write_figures(args.results, args.plots, args.dataset, accuracy=args.accuracy, sparsity=args.sparsity,
                           reference_dir=args.reference, ref_method=args.ref_method, formats=formats):
        print(f"wrote {p}")
    return 0


def cmd_claims(args) -> int:
    from .claims import write_claims

    formats = ("png", "pdf") if args.format == "all" else (args.format,)
    for p in write_claims(args.results, args.plots, args.dataset, accuracy=args.accuracy, claims_path=args.claims,
                          reference_dir=args.reference, formats=formats):
        print(f"wrote {p}")
    return 0


def cmd_report(args) -> int:
    from .report import write_report

    out = write_report(args.results, args.plots, args.out, accuracy=args.accuracy, reference_dir=args.reference,
                       ref_method=args.ref_method, transpose=args.transpose, paper=args.paper,
                       sparsity=args.sparsity)
    print(f"wrote {out}")
    return 0


def _wrap(func):
    """Report errors in the inputs (bad reference file, unknown dataset, sparsity not present) in one line."""
    def run(args) -> int:
        from .references import ReferenceError

        try:
            return func(args)
        except (ReferenceError, ValueError, FileNotFoundError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    run.__name__ = func.__name__
    run.__doc__ = func.__doc__
    return run


def register(subparsers) -> None:
    """Add the ``table``, ``plot``, ``claims`` and ``report`` subcommands to an argparse subparsers object."""
    p = subparsers.add_parser("table", help="accuracy and latency tables per dataset (md, tex, csv)",
                              description="Render <results>/tables/<dataset>.{md,tex,csv} (plus <dataset>_paper.csv "
                                          "and <dataset>_latency.csv) from stored results.")
    _common(p, plots=False, dataset=True)
    p.add_argument("--format", choices=("md", "tex", "csv", "all"), default="all", help="output format (default: all)")
    p.add_argument("--transpose", action="store_true", help="rows = methods, columns = sparsity levels")
    p.add_argument("--paper", choices=("block", "inline"), default="block",
                   help="paper-reported values in a separate block (default) or also inside the cells")
    p.add_argument("--tables", type=Path, default=None, metavar="DIR", help="output directory (default: <results>/tables)")
    p.set_defaults(func=_wrap(cmd_table))

    p = subparsers.add_parser("plot", help="figures per dataset (accuracy vs sparsity, layer density, latency)",
                              description="Render <plots>/<dataset>_{accuracy,density,latency}.{png,pdf}.")
    _common(p, plots=True, dataset=True)
    p.add_argument("--format", choices=("png", "pdf", "all"), default="all", help="output format (default: all)")
    p.add_argument("--sparsity", type=_sparsity, default=None,
                   help="target sparsity of the density profile (fraction or percent; default: the highest present)")
    p.set_defaults(func=_wrap(cmd_plot))

    p = subparsers.add_parser("claims", help="the paper's claims tested on paired runs, with a verdict",
                              description="Evaluate results/reference/claims.yaml on the run records: write "
                                          "<results>/tables/claims.{md,csv} and the forest plot <plots>/claims.{png,pdf}.")
    p.add_argument("--results", type=Path, default=Path("results"), help="results directory (default: results)")
    p.add_argument("--plots", type=Path, default=Path("plots"), help="figures directory (default: plots)")
    p.add_argument("--dataset", action="append", default=None, metavar="NAME",
                   help="test the claims on this dataset only (repeatable; default: every dataset a claim names)")
    p.add_argument("--accuracy", choices=sorted(ACCURACY_FIELDS), default=DEFAULT_ACCURACY,
                   help="which test accuracy: final epoch (default) or best epoch (selected on the test set)")
    p.add_argument("--claims", type=Path, default=None, metavar="FILE",
                   help="claims file (default: <results>/reference/claims.yaml if present, else the repository's "
                        "results/reference/claims.yaml)")
    p.add_argument("--reference", type=Path, default=None, metavar="DIR",
                   help="published numbers that stand in for a method without runs (default as for table)")
    p.add_argument("--format", choices=("png", "pdf", "all"), default="all", help="figure format (default: all)")
    p.set_defaults(func=_wrap(cmd_claims))

    p = subparsers.add_parser("report", help="results/REPORT.md: every table and figure, and the environment",
                              description="Render every dataset's tables and figures and write a Markdown report.")
    _common(p, plots=True, dataset=False)
    p.add_argument("--out", type=Path, default=None, help="report path (default: <results>/REPORT.md)")
    p.add_argument("--transpose", action="store_true", help="rows = methods, columns = sparsity levels")
    p.add_argument("--paper", choices=("block", "inline"), default="block",
                   help="paper-reported values in a separate block (default) or also inside the cells")
    p.add_argument("--sparsity", type=_sparsity, default=None,
                   help="target sparsity of the density profiles (default: the highest present per dataset)")
    p.set_defaults(func=_wrap(cmd_report))


def main(argv: list[str] | None = None) -> int:
    """Standalone entry (tests, or before bench/cli.py registers these subcommands)."""
    parser = argparse.ArgumentParser(prog="bench-report")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
