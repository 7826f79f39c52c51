"""``python -m bench <command>``: run a grid, collect results, train teachers, render reports."""
from __future__ import annotations

import argparse
import os
import shlex
import sys
import traceback
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import yaml

from . import registry, config as C
from .artifacts import CorruptCheckpointError, Artifacts
from .checkpoint import CorruptEpochCheckpointError
from .cluster import run_with_workers
from .config import ConfigError, load_config, CONFIG_DIR, to_dict
from .configdoc import update_file
from .context import RunContext
from .data import DatasetFileError, DatasetNotFoundError, load_dataset
from .estimate import CostError, refuse_on_cpu as refuse, CPU_HOURS_LIMIT, register as register_estimate
from .grid import expand_grid
from .interrupt import exit_code
from .provenance import code_versions, code_state
from .report.cli import no_records, register as register_report
from .report.references import ReferenceFileError
from .report.style import family_of
from .runner import run_grid
from .runtime import resolve_device
from .speed import register as register_speed
from .status import register as register_status
from .store import CorruptResultError, ResultsDirError, status_of, read_runs


def user_errors() -> tuple[type, ...]:
    """Errors caused by the input (config, data files, device, results folder, checkpoints, report
    inputs): one line, exit code 2. Anything else is a bug and keeps its traceback."""
    return (ConfigError, registry.RegistryError, CostError, CorruptResultError, ResultsDirError, DatasetNotFoundError, DatasetFileError,
            CorruptCheckpointError, CorruptEpochCheckpointError, ReferenceFileError, FileNotFoundError,
            NotADirectoryError, IsADirectoryError, PermissionError)


def _add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="a YAML file, or the name of a shipped preset (smoke, cifar10-fast, ...)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set retrain.epochs=3 (repeatable)")
    p.add_argument("--results", type=Path, default=Path("results"), help="results directory (default: results)")
    p.add_argument("--data-dir", type=Path, default=Path("data"),
                   help="where datasets live in their standard layouts (default: data)")
    p.add_argument("--download", action="store_true",
                   help="fetch missing datasets (official archives, via torchvision; needs a network)")


def cmd_run(args) -> int:

    cfg = load_config(args.config, args.overrides)
    if args.workers is not None and args.workers < 1:
        raise ConfigError(f"--workers {args.workers}: give a number of workers >= 1")
    if not args.dry_run and args.executor != "slurm" and not args.allow_cpu:
        refuse_on_cpu(cfg, args)
    if args.executor != "inline" and not args.dry_run:
        return run_with_workers(cfg, args.results, args.data_dir, executor=args.executor, workers=args.workers,
                                download=args.download, keep_checkpoints=args.keep_checkpoints, wait=not args.no_wait)
    if (args.workers is not None and not args.dry_run) or args.no_wait:
        raise ConfigError("--workers and --no-wait go with --executor local or slurm (or --dry-run: cells per device)")
    counts = run_grid(cfg, args.results, args.data_dir, download=args.download, dry_run=args.dry_run,
                      keep_checkpoints=args.keep_checkpoints, workers=args.workers, verbose=args.verbose,
                      config_name=str(args.config))
    if counts.get("interrupted"):
        print(f"interrupted: finished runs are recorded, the run in progress resumes from its last checkpoint; "
              f"resume with: {resume_command(args)}")
        return exit_code(counts["interrupted"])
    return 1 if counts.get("failed") else 0


def resume_command(args) -> str:
    """The command line that resumes this one (``python -m bench`` and the arguments as given)."""
    argv = getattr(args, "argv", None) or sys.argv[1:]
    return "python -m bench " + " ".join(shlex.quote(a) for a in argv)


def refuse_on_cpu(cfg, args) -> None:
    """A grid that would train on this machine's CPU for more than estimate.CPU_HOURS_LIMIT hours (a paper
    grid) is refused without --allow-cpu (SLURM jobs run elsewhere: not checked)."""
    if resolve_device(cfg.runtime).type != "cpu":
        return
    specs = expand_grid(cfg, "cpu")
    refuse(cfg, specs, [status_of(args.results, s)[0] for s in specs], args.config)


def cmd_collect(args) -> int:
    if not Path(args.results).is_dir():
        raise FileNotFoundError(no_records(args.results))
    runs, corrupt = read_runs(args.results)
    skipped = f" ({len(corrupt)} corrupt record file(s) skipped)" if corrupt else ""
    print(f"the code that made the {len(runs)} records in {args.results}{skipped} (fingerprint, git commit, harness "
          f"version):")
    for line in code_versions(runs):
        print(line)
    return 0


def cmd_list(args) -> int:
    """The shipped presets (one line each: what it is, its cells) and the registered methods (built-in,
    installed and --plugin ones: family, what it is, what it prunes)."""
    if args.what in ("presets", "all"):
        print("presets (python -m bench run NAME; bench/configs/NAME.yaml):")
        for path in sorted(CONFIG_DIR.glob("*.yaml")):
            cells = len(expand_grid(load_config(path), "cpu"))
            print(f"  {path.stem:28s} {cells:5d} cells  {_preset_summary(path)}")
    if args.what in ("methods", "all"):
        cfg = load_config(None)
        print("methods (grid names; prunes: the set on the default config):")
        for name in registered_methods():
            mod = registry.get(name)
            pruned = registry.prunable_set(mod, cfg) or "no pruning"
            where = registry.origin(name)
            plugin = "" if where.startswith(registry.BUILTIN_PACKAGES) else f" (plug-in: {where})"
            print(f"  {name:20s} {family_of(name):18s} {pruned:16s} {registry.describe(mod)}{plugin}")
        var = registry.variants()
        if var:
            print("named variants (a grid may list the label alone):")
            for label, (base, sets) in sorted(var.items()):
                print(f"  {label:20s} {base} with " + ", ".join(f"{k}: {v}" for k, v in sets.items()))
    return 0


def _preset_summary(path: Path, limit: int = 110) -> str:
    """The first sentence of a preset's header comment, cut to ``limit`` characters."""
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    text = " ".join(x for x in lines if x)
    cut = text.find(". ")
    text = text if cut < 0 else text[:cut + 1]
    return text if len(text) <= limit else text[:limit - 1].rstrip() + "…"


def cmd_teacher(args) -> int:
    """Train (or report) the teacher of every dataset in the config's grid."""
    cfg = load_config(args.config, args.overrides)
    device = resolve_device(cfg.runtime)
    for name in cfg.grid.datasets or [cfg.dataset.name]:
        run_cfg = C.config_copy(cfg)
        run_cfg.dataset.name = name
        data = load_dataset(run_cfg.dataset, args.data_dir, device, download=args.download)
        ctx = RunContext(run_cfg, data, device, Artifacts(args.results / "cache"),
                         load_data=lambda d: load_dataset(d, args.data_dir, device, download=args.download))
        ctx.teacher()
        info = ctx.teacher_info
        print(f"{name}: teacher {info['arch']} top1 {info['top1']:.2f}% (best {info['top1_best']:.2f}%) "
              f"sha256 {info['sha256'][:16]}... at {info['path']}")
    return 0


def cmd_config(args) -> int:
    """Print a config as the runs will see it (every default filled in), or update the reference docs."""
    if args.docs:
        changed = update_file(args.docs)
        print(f"{'updated' if changed else 'unchanged'}: {args.docs}")
        return 0

    if args.config is None:
        raise ConfigError("give a config (a YAML file or a preset name) or --docs FILE")
    print(yaml.safe_dump(to_dict(load_config(args.config, args.overrides)), sort_keys=False), end="")
    return 0


def version_text() -> str:
    """What ``--version`` prints: the harness version the records carry, the git commit (with the dirty
    flag over the code paths) and the code fingerprint, the same for any copy of the same code."""

    st = code_state()
    if st["git_commit"]:
        git = f"git {st['git_commit'][:12]}" + (" (dirty: the code differs from the commit)" if st["git_dirty"] else "")
    else:
        git = "git: none (not a git checkout)"
    try:
        number = version("prune-kd-bench")
    except PackageNotFoundError:       # run from a copy that was never installed
        number = f"{st['harness_version']}.x (not installed)"
    return (f"prune-kd-bench {number} (its major number is the harness version records carry), {git}, code "
            f"fingerprint {st['code_fingerprint']}")


class _Version(argparse.Action):
    """--version, computed only when asked (it hashes the code and asks git)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        print(version_text())
        parser.exit()


def registered_methods() -> list[str]:
    """The method names in the harness (imports every method: only when a command needs them)."""
    return sorted(registry.methods())


DESCRIPTION = ("Run a grid of pruning runs, collect their records, train teachers, and render tables, figures, "
               "claims and reports from the records. 'python -m bench COMMAND --help' describes each command.")


# The commands that read a config or expand a grid: they take --plugin (a method of one's own).
GRID_COMMANDS = ("run", "teacher", "config", "estimate", "status", "list")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=DESCRIPTION)
    parser.add_argument("--version", action=_Version,
                        help="print the harness version, git commit and code fingerprint, and exit")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run (or resume) a grid of runs")
    _add_run_args(p)
    p.add_argument("--dry-run", action="store_true",
                   help="check the config, device and data files, and list each run as done, failed, "
                        "interrupted or pending (trains nothing)")
    p.add_argument("--verbose", action="store_true",
                   help="with --dry-run: list every cell (state, run id) and every stored record that matches none")
    p.add_argument("--keep-checkpoints", action="store_true",
                   help="keep the epoch checkpoints of finished runs (default: removed once the record is written)")
    p.add_argument("--executor", choices=("inline", "local", "slurm"), default="inline",
                   help="inline: this process runs the grid (default); local: worker processes on this machine, "
                        "one per GPU (or --workers N); slurm: a SLURM job array (resources: the slurm config "
                        "section, e.g. --set slurm.partition=gpu). See docs/cluster.md")
    p.add_argument("--workers", type=int, metavar="N",
                   help="how many workers pull cells: local default one per visible GPU (required on the CPU); "
                        "slurm default one job per cell left to run; with --dry-run: cells per device in the estimate")
    p.add_argument("--no-wait", action="store_true",
                   help="slurm: submit and return; follow with python -m bench status")
    p.add_argument("--allow-cpu", action="store_true",
                   help=f"train on the CPU even a grid estimated at more than {CPU_HOURS_LIMIT:g} CPU-hours (a paper grid), "
                        "which is refused otherwise")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("collect", help="list the code (fingerprint, git commit, harness version) that made the run records")
    p.add_argument("--results", type=Path, default=Path("results"),
                   help="the results folder whose records to list (default: results); it must exist")
    p.set_defaults(func=cmd_collect)

    p = sub.add_parser("list", help="the shipped presets and the registered methods (plug-ins included)")
    p.add_argument("what", nargs="?", choices=("all", "presets", "methods"), default="all",
                   help="what to list (default: all)")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("teacher", help="train (or report) the teacher of each dataset in a config")
    _add_run_args(p)
    p.set_defaults(func=cmd_teacher)

    p = sub.add_parser("config", help="print a config with every default filled in, or regenerate docs/config.md")
    p.add_argument("config", nargs="?", help="a YAML file or a preset name")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, as in run (repeatable)")
    p.add_argument("--docs", type=Path, metavar="FILE", help="rewrite the generated config reference in FILE")
    p.set_defaults(func=cmd_config)

    register_status(sub)
    register_speed(sub)
    register_estimate(sub)
    register_report(sub, method_names=registered_methods)
    for name in GRID_COMMANDS:
        sub.choices[name].add_argument(
            "--plugin", dest="plugins", action="append", default=[], metavar="FILE",
            help="a Python file that registers a method (and its config section) beside the built-in ones, "
                 "e.g. --plugin my_method.py (repeatable; docs/adding-a-method.md)")
    return parser


def main(argv: list[str] | None = None) -> int:
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)  # progress lines reach logs as they happen
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    if debug:
        argv.remove("--debug")
    parser = build_parser()
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    args = parser.parse_args(argv)
    args.argv = argv
    try:
        registry.load_plugins(getattr(args, "plugins", ()))
        return args.func(args) or 0
    except BrokenPipeError:     # the reader went away (`| head`): stop quietly, as a filter does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())   # no second error at exit's flush
        return 1
    except user_errors() as e:
        if debug:
            traceback.print_exc()
        kind = "config error" if isinstance(e, ConfigError) else "plug-in error" if isinstance(e, registry.RegistryError) \
            else "error"
        print(f"{kind}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interrupted: finished runs are recorded; resume with: {resume_command(args)}")
        return 130


if __name__ == "__main__":
    sys.exit(main())
