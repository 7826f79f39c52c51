"""Results on disk: one JSON file per run, written atomically.

Layout under a results directory (default ``results/``)::

    runs/<dataset>/<method>__sp<sparsity>__seed<seed>__<run_id>.json   one file per run
    cache/                                                            reusable checkpoints
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterable

from .interrupt import fault_point


def utc_now() -> str:
    """The time stamp of records and leases: UTC, ISO 8601, to the second."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def atomic_write_bytes(path: Path, data: bytes, fault: str = "") -> None:
    """Write ``data`` to ``path`` so that a reader sees either the old file or the new one, never half:
    a temporary file in the same folder, fsynced, then renamed over ``path``. (``fault`` names the
    fault-injection point between the two steps; see bench/interrupt.py.)"""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)                 # mkstemp makes it owner-only
        if fault:
            fault_point(fault)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.new(algorithm, usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _json_safe(obj: Any) -> Any:
    """NaN/inf are not JSON: store them as null so every reader can parse the file."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def atomic_write_json(path: Path, obj: Any, fault: str = "") -> None:
    atomic_write_bytes(path, (json.dumps(_json_safe(obj), indent=1, sort_keys=True) + "\n").encode(), fault)


def run_filename(method: str, sparsity: float, seed: int, run_id: str) -> str:
    return f"{method}__sp{sparsity:g}__seed{seed}__{run_id}.json"


def run_path(results_dir: Path, dataset: str, method: str, sparsity: float, seed: int, run_id: str) -> Path:
    return Path(results_dir) / "runs" / dataset / run_filename(method, sparsity, seed, run_id)


# A cell's state from its record's status: an unreachable target is a finished cell (a rerun could
# only find it unreachable again); a failed one is retried, an interrupted one resumed.
_STATE_OF_STATUS = {"ok": "done", "unreachable": "done", "interrupted": "interrupted", None: "pending"}


def cell_state(record: dict | None) -> str:
    """done, failed, interrupted or pending: where the cell of ``record`` (None: no record) stands."""
    return _STATE_OF_STATUS.get((record or {}).get("status"), "failed")


class ResultsDirError(ValueError):
    """The results folder cannot be used (a file, not writable); the message says what to do."""


class CorruptResultError(ValueError):
    """A result file that cannot be parsed; it is never overwritten automatically."""


def read_run(path: Path) -> dict | None:
    """The record at ``path``, or None when there is none. A file that is not valid JSON is an error:
    it is never silently treated as 'not run' (that would overwrite it)."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CorruptResultError(f"result file {path} is not valid JSON ({e}); move it aside to rerun that run") from e


def quarantine(path: Path) -> Path:
    """Move a corrupt record aside (never delete it): ``<results>/quarantine/<name>.<utc time>``, where a
    person can look at it; its cell then counts as not run."""
    path = Path(path)
    results = path.parents[2]             # <results>/runs/<dataset>/<file>
    dest = results / "quarantine" / f"{path.name}.{utc_now().replace(':', '')}"
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.replace(path, dest)
    return dest


def status_of(results_dir: Path, spec, move_corrupt: bool = False) -> tuple[str, dict | None]:
    """done, failed, interrupted or pending, and the stored record if any, of grid cell ``spec`` (a RunSpec).
    A corrupt record file is a failed cell (its record says why); with ``move_corrupt`` (the runner, about
    to rerun the cell) it is moved aside first and the cell is pending."""
    path = run_path(results_dir, spec.dataset, spec.method.display, spec.sparsity, spec.seed, spec.run_id)
    try:
        rec = read_run(path)
    except CorruptResultError as e:
        if move_corrupt:
            dest = quarantine(path)
            warn(f"warning: moved the corrupt record {path} to {dest} ({_reason(e)}); its cell runs again")
            return "pending", None
        return "failed", {"status": "failed", "error": f"corrupt record file: {_reason(e)}", "corrupt": str(path)}
    return cell_state(rec), rec


def iter_run_files(results_dir: Path, dataset: str | None = None) -> Iterable[Path]:
    root = Path(results_dir) / "runs"
    pattern = f"{dataset}/*.json" if dataset else "*/*.json"
    return sorted(root.glob(pattern))


def warn(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _reason(e: Exception) -> str:
    return str(e.__cause__ or e).splitlines()[0]


_WARNED: set[str] = set()


def read_runs(results_dir: Path, dataset: str | None = None) -> tuple[list[dict], list[Path]]:
    """(the readable run records under ``results_dir``, the corrupt record files skipped). Each corrupt file
    is named once per process in one warning line on stderr; it is never changed."""
    runs, corrupt = [], []
    for p in iter_run_files(results_dir, dataset):
        try:
            rec = read_run(p)
        except CorruptResultError as e:
            corrupt.append(p)
            if str(p) not in _WARNED:
                _WARNED.add(str(p))
                warn(f"warning: skipped the corrupt record {p} ({_reason(e)}); a rerun of its grid moves it aside")
            continue
        if rec is not None:
            rec["_path"] = str(p)
            runs.append(rec)
    return runs, corrupt


def load_runs(results_dir: Path, dataset: str | None = None, status: str | None = None) -> list[dict]:
    """Every readable run record under ``results_dir`` (optionally one dataset, optionally one status); a
    corrupt file is skipped with a warning (``read_runs``)."""
    runs, _ = read_runs(results_dir, dataset)
    return [r for r in runs if status is None or r.get("status") == status]
