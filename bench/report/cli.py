"""Subcommands ``table``, ``plot``, ``claims`` and ``report`` of ``python -m bench`` (added by ``register``).

    python -m bench table  [--dataset cifar10] [--format md|tex|csv|all] [--accuracy best|final] [--transpose]
    python -m bench plot   [--dataset cifar10] [--format png|pdf|all] [--sparsity 0.985]
    python -m bench claims [--dataset cifar10] [--claims FILE]
    python -m bench report [--out results/REPORT.md]

All read ``--results DIR`` (default ``results``) and never train anything. Figures go to ``--plots DIR``,
by default the results folder's own ``plots/`` (two results folders never overwrite each other's
figures). A folder without run records, or a ``--dataset`` without records, is an error (exit code 2,
nothing written), never a silent no-op: the message names the datasets, or the folders, that have
records. Without ``--dataset`` every dataset with records is rendered.
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import Callable, Iterable

from .aggregate import ACCURACY_FIELDS, DEFAULT_ACCURACY, datasets_of
from .references import ReferenceFileError
from ..store import read_runs
from .style import remember_titles
from .tables import write_tables


PLOTS_HELP = "figures directory (default: <results>/plots)"


def plots_dir(args) -> Path:
    """Where figures go: ``--plots``, else the results folder's own ``plots/``."""
    return args.plots if args.plots is not None else Path(args.results) / "plots"


def folders_with_records(results: Path) -> list[Path]:
    """Sub-folders of ``results`` that hold run records (results/<name>/runs/<dataset>/*.json)."""
    return sorted({p.parents[2] for p in Path(results).glob("*/runs/*/*.json")})


def no_records(results: Path) -> str:
    """The one-line error for a results folder without run records, naming where records are."""
    results = Path(results)
    if not results.is_dir():
        where = f"results folder {results} does not exist"
    else:
        where = f"no run records under {results / 'runs'}"
    found = folders_with_records(results) if results.is_dir() else []
    if found:
        return f"{where}; folders with records: {', '.join(str(f) for f in found)} (give one as --results DIR)"
    return f"{where} (give --results the folder a grid wrote: python -m bench run CONFIG --results DIR)"


def output_folder(path: Path | None, what: str, created: bool = True) -> None:
    """An output folder must be a folder (or, if ``created``, not exist yet): a file there is an error
    before anything is written (exit 2)."""
    if path is not None and Path(path).exists() and not Path(path).is_dir():
        raise NotADirectoryError(f"{what} {path} is a file, not a folder; give a folder"
                                 + (" (it is created if absent)" if created else ""))


def records(results: Path, datasets: list[str] | None, *outputs: tuple[Path | None, str]) -> list[dict]:
    """The run records of ``results``; FileNotFoundError (exit 2, nothing written) when there are none, or
    when a dataset asked for has none; NotADirectoryError when ``results`` or an output folder of
    ``outputs`` ((path, what) pairs) is a file. Corrupt record files are skipped with a warning each."""
    output_folder(results, "results path", created=False)
    for path, what in outputs:
        output_folder(path, what)
    runs, corrupt = read_runs(results) if Path(results).is_dir() else ([], [])
    remember_titles(runs)
    if corrupt:
        print(f"{len(corrupt)} corrupt record file(s) skipped (named above); the tables leave their cells out",
              file=sys.stderr)
    present = datasets_of(runs)
    if not present:
        raise FileNotFoundError(no_records(results))
    missing = [d for d in datasets or [] if d not in present]
    if missing:
        raise FileNotFoundError(f"no run records for dataset {', '.join(repr(d) for d in missing)} under "
                                f"{Path(results) / 'runs'}; datasets with records: {', '.join(present)}")
    return runs


def _common(p: argparse.ArgumentParser, *, plots: bool, dataset: bool) -> None:
    p.add_argument("--results", type=Path, default=Path("results"), help="results directory (default: results)")
    if plots:
        p.add_argument("--plots", type=Path, default=None, help=PLOTS_HELP)
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
    runs = records(args.results, args.dataset, (args.tables, "--tables"))
    formats = "all" if args.format == "all" else [args.format]
    for p in write_tables(args.results, args.dataset, formats=formats, accuracy=args.accuracy,
                          transpose=args.transpose, paper=args.paper, reference_dir=args.reference,
                          ref_method=args.ref_method, tables_dir=args.tables, runs=runs):
        print(f"wrote {p}")
    return 0


def cmd_export(args) -> int:
    from .frame import runs_frame, write_frame

    out = args.output or Path(args.results)
    runs = records(args.results, args.dataset, (out, "--output"))
    frame = runs_frame(runs)
    for p in write_frame(frame, out):
        print(f"wrote {p}")
    print(f"{len(frame)} runs, {frame['dataset'].nunique()} dataset(s), {frame['method'].nunique()} method label(s); "
          f"pd.read_json('{out / 'runs.json'}', orient='table') restores the dtypes")
    return 0


def cmd_plot(args) -> int:
    from .figures import write_figures
    from .plotting import FIG_FORMATS

    runs = records(args.results, args.dataset, (plots_dir(args), "--plots"))
    formats = FIG_FORMATS if args.format == "all" else (args.format,)
    for p in write_figures(args.results, plots_dir(args), args.dataset, accuracy=args.accuracy,
                           sparsity=args.sparsity, reference_dir=args.reference, ref_method=args.ref_method,
                           formats=formats, runs=runs):
        print(f"wrote {p}")
    return 0


def cmd_claims(args) -> int:
    # claims (scipy.stats, about a second) is imported here, not at the top: every command loads this module
    from .claims import evaluate_claims
    from .claims_render import terminal_text, write_claim_figure, write_claim_tables

    runs = records(args.results, args.dataset, (plots_dir(args), "--plots"), (Path(args.results) / "tables", "tables"))
    formats = ("png", "pdf") if args.format == "all" else (args.format,)
    claims, rows = evaluate_claims(args.results, args.dataset, known=args.method_names(), accuracy=args.accuracy, claims_path=args.claims,
                                   reference_dir=args.reference, runs=runs)
    width = shutil.get_terminal_size().columns if sys.stdout.isatty() else 80
    sys.stdout.write(terminal_text(rows, Path(args.results) / "tables" / "claims.md", width))
    for p in write_claim_tables(args.results, claims, rows, args.accuracy) + \
            write_claim_figure(plots_dir(args), rows, formats):
        print(f"wrote {p}")
    return 0


def cmd_report(args) -> int:
    from .report import write_report

    runs = records(args.results, None, (plots_dir(args), "--plots"), (Path(args.results) / "tables", "tables"))
    out = write_report(args.results, plots_dir(args), args.out, accuracy=args.accuracy,
                       reference_dir=args.reference, ref_method=args.ref_method, transpose=args.transpose,
                       paper=args.paper, sparsity=args.sparsity, runs=runs, known=args.method_names())
    print(f"wrote {out}")
    return 0


def _wrap(func):
    """Report errors in the inputs (bad reference file, unknown dataset, sparsity not present) in one line."""
    def run(args) -> int:
        try:
            return func(args)
        except (ReferenceFileError, ValueError, FileNotFoundError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    run.__name__ = func.__name__
    run.__doc__ = func.__doc__
    return run


def register(subparsers, method_names: Callable[[], Iterable[str]]) -> None:
    """Add the ``table``, ``plot``, ``claims`` and ``report`` subcommands to an argparse subparsers object.
    ``method_names()``: the methods in the harness, which claims are tested against (the caller imports the
    registry; report/ imports no method code)."""
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

    p = subparsers.add_parser("export", help="every run as one row of a table: runs.csv and runs.json",
                              description="Write <output>/runs.csv and runs.json (pandas' orient='table': "
                                          "pd.read_json(path, orient='table') restores the dtypes), a row per run "
                                          "record and a typed column per field (docs/reporting.md, 'The runs as "
                                          "data').")
    p.add_argument("--results", type=Path, default=Path("results"), help="results directory (default: results)")
    p.add_argument("--dataset", action="append", default=None, metavar="NAME",
                   help="export this dataset only (repeatable; default: every dataset with run records)")
    p.add_argument("--output", type=Path, default=None, metavar="DIR", help="output directory (default: <results>)")
    p.set_defaults(func=_wrap(cmd_export))

    p = subparsers.add_parser("plot", help="figures per dataset (accuracy vs sparsity, layer density, latency)",
                              description="Render <plots>/<dataset>_{accuracy,density,latency}.{png,pdf} "
                                          "(<plots>: --plots, default <results>/plots) for every dataset with "
                                          "records, or the --dataset ones.")
    _common(p, plots=True, dataset=True)
    p.add_argument("--format", choices=("png", "pdf", "all"), default="all", help="output format (default: all)")
    p.add_argument("--sparsity", type=_sparsity, default=None,
                   help="target sparsity of the density profile (fraction or percent; default: the highest present)")
    p.set_defaults(func=_wrap(cmd_plot))

    p = subparsers.add_parser("claims", help="the paper's claims tested on paired runs, with a verdict",
                              description="Evaluate results/reference/claims.yaml on the run records: print the "
                                          "verdicts, write <results>/tables/claims.{md,csv} and the forest plot "
                                          "<plots>/claims.{png,pdf} (<plots>: --plots, default <results>/plots).")
    p.add_argument("--results", type=Path, default=Path("results"), help="results directory (default: results)")
    p.add_argument("--plots", type=Path, default=None, help=PLOTS_HELP)
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
    p.set_defaults(func=_wrap(cmd_claims), method_names=method_names)

    p = subparsers.add_parser("report", help="results/REPORT.md: every table and figure, and the environment",
                              description="Render every dataset's tables and figures and write a Markdown report.")
    _common(p, plots=True, dataset=False)
    p.add_argument("--out", type=Path, default=None, help="report path (default: <results>/REPORT.md)")
    p.add_argument("--transpose", action="store_true", help="rows = methods, columns = sparsity levels")
    p.add_argument("--paper", choices=("block", "inline"), default="block",
                   help="paper-reported values in a separate block (default) or also inside the cells")
    p.add_argument("--sparsity", type=_sparsity, default=None,
                   help="target sparsity of the density profiles (default: the highest present per dataset)")
    p.set_defaults(func=_wrap(cmd_report), method_names=method_names)
