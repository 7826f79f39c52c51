"""The runs as data: `bench export` writes one typed row per record, and the frame agrees with the tables."""
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from bench.cli import main
from bench.report.aggregate import accuracy_cells, select
from bench.report.frame import COLUMNS, read_frame, runs_frame
from bench.store import load_runs

REPO = Path(__file__).resolve().parents[1]
FAIR = REPO / "results" / "cpu-small-cifar10"       # records with budgets, numerics, 5 targets
OLD = REPO / "results" / "h100-small-cifar10"       # old accounting: no budgets, no numerics


def test_export_writes_csv_and_a_json_that_restores_every_dtype(tmp_path, capsys):
    assert main(["export", "--results", str(FAIR), "--output", str(tmp_path)]) == 0
    assert "restores the dtypes" in capsys.readouterr().out
    frame = read_frame(tmp_path / "runs.json")
    assert list(frame.columns) == list(COLUMNS)
    assert {c: str(t) for c, t in frame.dtypes.items()} == COLUMNS
    assert len(frame) == len(load_runs(FAIR)) == len(pd.read_csv(tmp_path / "runs.csv"))
    assert frame["run_id"].is_unique
    tgp = frame[(frame.method == "tgp-kd") & (frame.target_sparsity == 0.9)]
    assert len(tgp) == 3 and (tgp.budget_basis == "equal").all() and (tgp.teacher_epochs == 25).all()
    assert (tgp.threads == 1).all() and (tgp.test_images == 10_000).all() and tgp.on_target.all()


def test_the_frame_groups_to_the_tables_cells():
    runs = load_runs(FAIR)
    frame = runs_frame(runs)
    ok = frame[(frame.status == "ok") & frame.on_target]
    means = ok.groupby(["method", "target_sparsity"]).top1_final.mean()
    cells = accuracy_cells(select(runs, "cifar10"))
    assert len(cells) == len(means)
    for (method, target), cell in cells.items():
        assert means[(method, target)] == pytest.approx(sum(cell.values) / len(cell.values)), (method, target)


def test_old_records_export_with_missing_values_not_errors(tmp_path):
    frame = runs_frame(load_runs(OLD))
    assert frame.student_epochs.isna().all() and frame.budget_ratio.isna().all()
    assert frame.top1_final.notna().any() and (frame.measure == "conv").any()


def test_a_corrupt_record_is_skipped_with_a_warning_and_exported_without_it(tmp_path, capsys):
    results = tmp_path / "r"
    shutil.copytree(FAIR / "runs", results / "runs")
    victim = sorted((results / "runs" / "cifar10").glob("*.json"))[0]
    victim.write_text("{not json")
    assert main(["export", "--results", str(results)]) == 0
    assert str(victim) in capsys.readouterr().err
    frame = read_frame(results / "runs.json")
    assert len(frame) == len(list((results / "runs" / "cifar10").glob("*.json"))) - 1
    assert json.loads((results / "runs.json").read_text())["schema"]["fields"][0]["name"] == "run_id"
