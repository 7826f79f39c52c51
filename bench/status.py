"""``python -m bench status [CONFIG] [--results DIR]``: where every cell of a grid stands.

Each cell is done, running (by whom, since when, at which epoch), interrupted, failed (with the
one-line reason) or pending. With a CONFIG the cells are that grid's (pending ones included);
without one, every stored record and live claim in the results folder. A rich table on a
terminal, plain text otherwise (logs, CI). With a CONFIG, stored records of the grid's datasets
that are no cell of it here are counted by the device and precision they were made on, with the
command that shows them (a run id includes both: a CUDA grid's records are no cell of the same grid
on a CPU machine).
"""
from __future__ import annotations

import shlex
import sys
from pathlib import Path

from .cluster import job_states, latest_submission
from .config import load_config
from .grid import expand_grid
from .leases import is_stale, read_lease
from .report.cli import no_records
from .runtime import device_type, precision
from .store import CorruptResultError, cell_state, iter_run_files, read_run, warn, run_filename, run_path

ORDER = ("running", "interrupted", "failed", "pending", "done")


def _claim(results_dir: Path, run_id: str, stale_after_s: float) -> dict | None:
    info = read_lease(results_dir / "claims" / f"{run_id}.claim")
    if info is None:
        return None
    info["stale"] = is_stale(info, stale_after_s)
    return info


def _row(dataset, method, sparsity, seed, run_id, record, claim, jobs=None) -> dict:
    state = cell_state(record)
    detail = ""
    if claim is not None and not claim["stale"]:
        state = "running"
        prog = claim.get("progress") or {}
        at = f", {prog['phase']} epoch {prog['epoch']}/{prog['epochs']}" if prog.get("phase") else ""
        job = f" job {claim['job_id']}" if claim.get("job_id") else ""
        if jobs and jobs.get(claim.get("job_id"), "unknown") != "unknown":
            job += f" ({jobs[claim['job_id']]})"
        detail = f"{claim.get('host')} pid {claim.get('pid')}{job} since {claim.get('started_at')}{at}"
    elif state in ("failed", "interrupted"):
        detail = ((record.get("error") or "").splitlines() or [""])[0][:120]
        argv = (record.get("provenance") or {}).get("argv") or []
        if state == "interrupted" and len(argv) > 1:
            detail = detail.replace("; rerun the same command to resume", "")
            detail += "; resume: python -m bench " + " ".join(shlex.quote(str(a)) for a in argv[1:])
        if claim is not None:
            detail += " (a stale claim: its runner stopped; a rerun takes it over)"
    elif state == "done" and record.get("status") == "unreachable":
        detail = f"unreachable: {record.get('reason')}"
    elif state == "done":
        job = (record.get("provenance") or {}).get("job_id")
        detail = f"top1 {record.get('top1_final', 0):.2f}% on {record.get('device_name')}" + (f", job {job}" if job else "")
    elif claim is not None:
        detail = f"stale claim by {claim.get('host')} pid {claim.get('pid')} (a rerun takes it over)"
    return {"state": state, "dataset": dataset, "method": method, "sparsity": f"{sparsity:g}", "seed": str(seed),
            "run_id": run_id, "detail": detail}


def _read(path: Path) -> dict | None:
    """The record at ``path``; a corrupt one is a failed cell whose detail says so (one warning line)."""
    try:
        return read_run(path)
    except CorruptResultError as e:
        why = str(e.__cause__ or e).splitlines()[0]
        warn(f"warning: corrupt record {path} ({why}); a rerun of its grid moves it aside and runs the cell again")
        return {"status": "failed", "error": f"corrupt record file ({why})", "corrupt": str(path)}


def collect_status(results_dir: Path, specs=None, stale_after_s: float = 120.0, jobs=None) -> list[dict]:
    """One row per cell; ``jobs`` ({job id: scheduler state}) adds the state of a running cell's job."""
    results_dir = Path(results_dir)
    rows = []
    if specs is not None:
        for s in specs:
            rec = _read(run_path(results_dir, s.dataset, s.method.display, s.sparsity, s.seed, s.run_id))
            rows.append(_row(s.dataset, s.method.display, s.sparsity, s.seed, s.run_id, rec,
                             _claim(results_dir, s.run_id, stale_after_s), jobs))
        return rows
    seen = set()
    for p in iter_run_files(results_dir):
        rec = _read(p) or {}
        rid = rec.get("run_id") or p.stem.rsplit("__", 1)[-1]
        if rec.get("corrupt"):          # nothing of it can be read but its file name
            parts = p.stem.split("__")
            rec.update(method=parts[0], dataset=p.parent.name,
                       seed=parts[2].removeprefix("seed") if len(parts) == 4 else "?")
        seen.add(rid)
        rows.append(_row(rec.get("dataset"), rec.get("method"), float(rec.get("target_sparsity") or 0),
                         rec.get("seed"), rid, rec, _claim(results_dir, rid, stale_after_s), jobs))
    for c in sorted((results_dir / "claims").glob("*.claim")):
        rid = c.stem
        if rid not in seen:
            claim = _claim(results_dir, rid, stale_after_s)
            if claim is not None:
                what = (claim.get("what") or "? ? sparsity 0 seed ?").split()
                rows.append(_row(what[0], what[1] if len(what) > 1 else "?", 0.0, "?", rid, None, claim, jobs)
                            | {"sparsity": what[3] if len(what) > 3 else "?", "seed": what[-1]})
    return rows


def render(rows: list[dict], tty: bool) -> str:
    rows = sorted(rows, key=lambda r: (ORDER.index(r["state"]), str(r["dataset"]), str(r["method"]),
                                       r["sparsity"], r["seed"]))
    counts = {s: sum(r["state"] == s for r in rows) for s in ORDER}
    summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n) or "no cells"
    corrupt = sum(r["detail"].startswith("corrupt record") for r in rows)
    if corrupt:
        summary += f" ({corrupt} of the failed: corrupt record files, named above)"
    cols = ("state", "dataset", "method", "sparsity", "seed", "run_id", "detail")
    if tty:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=summary)
        for c in cols:
            table.add_column(c)
        for r in rows:
            table.add_row(*(str(r[c]) for c in cols))
        console = Console(record=True, width=200)
        with console.capture() as cap:
            console.print(table)
        return cap.get()
    lines = [summary]
    widths = [max([len(c)] + [len(str(r[c])) for r in rows]) for c in cols[:-1]] + [0]
    lines += ["  ".join(f"{str(r[c]):<{w}}" for c, w in zip(cols, widths)).rstrip() for r in rows]
    return "\n".join(lines) + "\n"


def jobs_text(submission: dict, states: dict[str, str]) -> str:
    """The last submission's workers and their scheduler states, one line."""
    counts: dict[str, int] = {}
    for st in states.values():
        counts[st] = counts.get(st, 0) + 1
    listed = ", ".join(f"{i} {states[i]}" for i in submission["jobs"][:20])
    more = f", ... ({len(submission['jobs']) - 20} more)" if len(submission["jobs"]) > 20 else ""
    summary = ", ".join(f"{n} {st}" for st, n in sorted(counts.items()))
    return (f"jobs ({submission.get('executor')}, submitted {submission.get('submitted_at')}): {summary}: "
            f"{listed}{more}; worker logs in {submission.get('logs')}\n")


def cmd_status(args) -> int:
    if not Path(args.results).is_dir():
        raise FileNotFoundError(no_records(args.results))

    specs, stale_after = None, 120.0
    if args.config:
        cfg = load_config(args.config, args.overrides)
        # device_type, not resolve_device: a login node without a GPU can look at a GPU grid
        # (give --set runtime.device=cuda there).
        specs = expand_grid(cfg, device_type(cfg.runtime))
        stale_after = cfg.runtime.stale_after_s
    claims = [read_lease(c) or {} for c in sorted((Path(args.results) / "claims").glob("*.claim"))]
    submission = latest_submission(args.results)
    ids = sorted({c["job_id"] for c in claims if c.get("job_id")} | set((submission or {}).get("jobs", [])))
    states = job_states(ids) if ids else {}
    rows = collect_status(args.results, specs, stale_after, states)
    sys.stdout.write(render(rows, sys.stdout.isatty()))
    if specs is not None:
        sys.stdout.write(elsewhere_text(args, specs))
    if submission:
        sys.stdout.write(jobs_text(submission, {i: states.get(i, "unknown") for i in submission["jobs"]}))
    return 0


def _names(specs) -> set[str]:
    """The record file names of the cells of ``specs`` (label and run id: what status reads)."""
    return {run_filename(s.method.display, s.sparsity, s.seed, s.run_id) for s in specs}


def _command(args, extra: list[str]) -> str:
    sets = [f"--set {shlex.quote(o)}" for o in list(args.overrides) + extra]
    return " ".join(["python -m bench status", shlex.quote(str(args.config)), "--results",
                     shlex.quote(str(args.results))] + sets)


def elsewhere_text(args, specs) -> str:
    """Lines on the stored records of the grid's datasets that are no cell of ``specs`` (the grid on this
    machine): per device type and precision they were made on, how many, and the command that lists them,
    a status with --set runtime.device/amp when that makes them cells of the grid, else one without a config."""
    cfg = load_config(args.config, args.overrides)
    here = device_type(cfg.runtime), precision(cfg.runtime, device_type(cfg.runtime))
    groups: dict[tuple[str, str], list[str]] = {}
    cells = _names(specs)
    for ds in sorted({s.dataset for s in specs}):
        for p in iter_run_files(args.results, ds):
            if p.name not in cells:
                rec = _read(p) or {}
                key = (str(rec.get("device_type") or "unknown"), str(rec.get("precision") or "unknown"))
                groups.setdefault(key, []).append(p.name)
    out = []
    for (dev, prec), rids in sorted(groups.items()):
        made = f"{len(rids)} stored record(s) of these datasets were made on {dev}/{prec}"
        extra = []
        if dev in ("cpu", "cuda") and dev != here[0]:
            extra.append(f"runtime.device={dev}")
        if prec in ("bf16", "fp32"):
            there = load_config(args.config, list(args.overrides) + extra)
            if precision(there.runtime, dev) != prec:
                extra.append(f"runtime.amp={'bf16' if prec == 'bf16' else 'off'}")
        matched = 0
        if extra and dev in ("cpu", "cuda"):
            there = load_config(args.config, list(args.overrides) + extra)
            matched = len(set(rids) & _names(expand_grid(there, dev)))
        every = f"python -m bench status --results {shlex.quote(str(args.results))} lists every stored record"
        if matched:
            rest = len(rids) - matched
            out.append(f"{made}, not {here[0]}/{here[1]} as this grid runs here: {matched} are cells of this grid "
                       f"there, shown by: {_command(args, extra)}" +
                       (f"; the other {rest} are no cell of it (another config or an older code version): {every}"
                        if rest else ""))
        else:
            out.append(f"{made} and are no cell of this grid {'there' if (dev, prec) != here else 'here'} (another "
                       f"config or an older code version): {every}")
    return "".join(line + "\n" for line in out)


def register(sub) -> None:
    p = sub.add_parser("status", help="each cell of a grid: done, running (by whom), interrupted, failed, pending")
    p.add_argument("config", nargs="?", help="a grid config (to list pending cells too); default: what is stored")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, as in run (the cells of that grid)")
    p.add_argument("--results", type=Path, default=Path("results"),
                   help="the results folder the grid writes (default: results); it must exist")
    p.set_defaults(func=cmd_status)
