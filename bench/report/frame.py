"""The run records of a results folder as one tidy pandas DataFrame: a row per run, typed columns
(``runs_frame``), and ``bench export``, which writes it as ``runs.csv`` and as ``runs.json`` in pandas'
``orient="table"`` form (a JSON Table Schema beside the data: ``pd.read_json(path, orient="table")``
gives back the same dtypes, with nothing beyond pandas). Every value comes from the record through the
readers of aggregate.py, so the frame and the tables agree on what "realised", "on target" and
"budget" mean."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import pandas as pd

from ..phases import TIMED_GROUPS
from ..store import atomic_write_bytes
from .aggregate import (budget_basis, budget_ratio, collapsed_layers, head_density, on_target,
                        realised_sparsity, record_budget, record_device, record_images, run_time, target_scale)
from .style import family_of

# column -> pandas dtype; the order is the frame's column order (docs/reporting.md, "The runs as data")
COLUMNS: dict[str, str] = {
    "run_id": "string", "dataset": "string", "model": "string",
    "method": "string",                 # the grid label (a variant's own name, e.g. egp-shortcut)
    "method_name": "string",            # the registered method it runs
    "family": "string",                 # proposed, references, controls, self-distillation, iterative
    "status": "string", "seed": "Int64",
    "target_sparsity": "Float64", "measure": "string", "realised_sparsity": "Float64", "on_target": "boolean",
    "top1_final": "Float64", "top1_best": "Float64", "top5_final": "Float64", "top5_best": "Float64",
    "budget_basis": "string", "student_epochs": "Float64", "teacher_epochs": "Float64", "budget_ratio": "Float64",
    "student_images": "Int64", "teacher_images": "Int64",
    "teacher_arch": "string", "teacher_top1": "Float64", "teacher_train_images": "Int64",
    "prunable_set": "string", "head_kept": "Float64", "collapsed_layers": "string",
    **{f"minutes_{g.replace('+', '_')}": "Float64" for g in TIMED_GROUPS},
    "time_total_s": "Float64",
    "device_type": "string", "device": "string", "precision": "string", "threads": "Int64",
    "processor": "string", "data_official": "boolean", "train_images": "Int64", "test_images": "Int64",
    "git_commit": "string", "code_fingerprint": "string", "harness_version": "Int64",
    "started_at": "string", "ended_at": "string",
}


def _get(d, *keys):
    for k in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


def run_row(r: dict) -> dict:
    """One record as a flat mapping of ``COLUMNS``."""
    student, teacher = record_budget(r)
    student_images, teacher_images = record_images(r)
    minutes = run_time(r).minutes
    ok = r.get("status") == "ok"
    label = r.get("method")
    collapsed = collapsed_layers(r)
    processor = _get(r, "numerics", "processor")
    return {
        "run_id": r.get("run_id"), "dataset": r.get("dataset"), "model": r.get("model"),
        "method": label, "method_name": r.get("method_name") or label,
        "family": family_of(label) if label else None,
        "status": r.get("status"), "seed": r.get("seed"),
        "target_sparsity": r.get("target_sparsity"), "measure": target_scale(r),
        "realised_sparsity": realised_sparsity(r) if ok else None, "on_target": on_target(r) if ok else None,
        "top1_final": r.get("top1_final"), "top1_best": r.get("top1_best"),
        "top5_final": r.get("top5_final"), "top5_best": r.get("top5_best"),
        "budget_basis": budget_basis(r), "student_epochs": student, "teacher_epochs": teacher,
        "budget_ratio": budget_ratio(r), "student_images": student_images, "teacher_images": teacher_images,
        "teacher_arch": _get(r, "teacher", "arch"), "teacher_top1": _get(r, "teacher", "top1"),
        "teacher_train_images": _get(r, "teacher", "train_images"),
        "prunable_set": r.get("prunable_set"),
        "head_kept": head_density(r),
        "collapsed_layers": "; ".join(f"{k} {100 * v:.2f}%" for k, v in collapsed.items()) or None,
        **{f"minutes_{g.replace('+', '_')}": minutes.get(g) for g in TIMED_GROUPS},
        "time_total_s": r.get("time_total_s"),
        "device_type": r.get("device_type"), "device": record_device(r), "precision": r.get("precision"),
        "threads": _get(r, "numerics", "threads"),
        "processor": " ".join(str(x) for x in (_get(processor, "model"), _get(processor, "torch_capability")) if x)
                     or None,
        "data_official": _get(r, "data", "official"),
        "train_images": _get(r, "data", "n_train"), "test_images": _get(r, "data", "n_test"),
        "git_commit": _get(r, "provenance", "git_commit"),
        "code_fingerprint": _get(r, "provenance", "code_fingerprint"),
        "harness_version": _get(r, "provenance", "harness_version"),
        "started_at": r.get("started_at"), "ended_at": r.get("ended_at"),
    }


def runs_frame(runs: Iterable[dict]) -> pd.DataFrame:
    """The records ``runs`` as one DataFrame with the dtypes of ``COLUMNS``, ordered by dataset, method,
    target and seed (missing values: pandas' NA)."""
    frame = pd.DataFrame([run_row(r) for r in runs], columns=list(COLUMNS))
    frame = frame.astype(COLUMNS)
    return frame.sort_values(["dataset", "method", "target_sparsity", "seed"], kind="stable",
                             ignore_index=True)


def write_frame(frame: pd.DataFrame, out_dir: Path) -> list[Path]:
    """``<out_dir>/runs.csv`` and ``runs.json`` (orient="table"), each written atomically."""
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = out_dir / "runs.csv", out_dir / "runs.json"
    atomic_write_bytes(csv_path, frame.to_csv(index=False).encode())
    atomic_write_bytes(json_path, frame.to_json(orient="table", index=False, indent=1).encode())
    return [csv_path, json_path]


def read_frame(path: Path) -> pd.DataFrame:
    """A frame written by ``write_frame`` (runs.json), dtypes restored."""
    return pd.read_json(path, orient="table")
