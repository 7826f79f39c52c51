"""python -m bench speed on the CPU: every configuration runs and appends its row, the profile
accounts for the whole step, and the pipeline's extrapolation is per phase (a tiny CIFAR-format
folder, a small ResNet; the figures themselves are measured elsewhere, never asserted)."""
import pickle

import numpy as np
import pytest

from bench import estimate as E
from bench import speed
from bench.cli import build_parser
from bench.speed import StepProfile

pytestmark = pytest.mark.slow          # trains, and spawns two processes for the concurrent cells

CPU = ["--device", "cpu", "--set", "model.arch=resnet_small", "--set", "teacher.arch=resnet_small",
       "--set", "retrain.batch_size=8", "--set", "runtime.eval_batch_size=16"]


@pytest.fixture(scope="module")
def cifar(tmp_path_factory):
    """A CIFAR-10 folder in the pickled layout torchvision reads: 5 x 8 train and 16 test images."""
    root = tmp_path_factory.mktemp("data")
    folder = root / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)

    def batch(name, n):
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        (folder / name).write_bytes(pickle.dumps({"data": data, "labels": [int(i % 10) for i in range(n)]}, 2))

    for i in range(1, 6):
        batch(f"data_batch_{i}", 8)
    batch("test_batch", 16)
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [str(c) for c in range(10)]}, 2))
    return root


def args(*argv):
    return build_parser().parse_args(["speed", *argv])


def test_every_configuration_appends_a_row(cifar, tmp_path, capsys):
    out = tmp_path / "performance.md"
    out.write_text("# Performance\n\nprose that stays\n")
    rows = speed.run_speed(args(*CPU, "--data-dir", str(cifar), "--results", str(tmp_path / "r"), "--epochs", "1",
                                "--official-steps", "2", "--official-warmup", "1",
                                "--only", "official-0,engine,warp-9,official-1,cells-2", "--output", str(out),
                                "--throughput", str(tmp_path / "throughput.csv")))
    assert "warp-9" in capsys.readouterr().out          # reported; the configurations after it still ran
    assert [r["name"] for r in rows] == ["official-0", "engine", "official-1", "cells-2"]
    assert rows[0]["ratio"] == 1.0 and all(r["images_per_s"] > 0 and r["ratio"] > 0 for r in rows)
    assert rows[1]["precision"] == "fp32" and rows[0]["precision"] == "fp32"
    text = out.read_text()
    assert text.startswith("# Performance\n\nprose that stays\n") and text.count(speed.MARK) == 1
    table = [l for l in text.splitlines() if l.startswith("| 20")]
    assert [l.split(" | ")[7] for l in table] == ["official-0", "engine", "official-1", "cells-2"]
    assert all("cpu" in l and "cifar10 (40 train, not the official files)" in l for l in table)
    speed.run_speed(args(*CPU, "--data-dir", str(cifar), "--results", str(tmp_path / "r"), "--epochs", "1",
                         "--only", "engine", "--output", str(out)))
    text = out.read_text()       # a second run adds its row under the same header
    assert text.count(speed.MARK) == 1 and len([l for l in text.splitlines() if l.startswith("| 20")]) == 5
    # the cells row went to the throughput table named (never to the repository's bench/throughput.csv)
    assert [r["cells"] for r in E.load_rows(tmp_path / "throughput.csv")] == [2]


def test_profile_covers_every_part_of_the_step(cifar, tmp_path, capsys, monkeypatch):
    seen = {}
    real = StepProfile.table

    def spy(self):
        seen.update(self.seconds)
        return real(self)

    monkeypatch.setattr(StepProfile, "table", spy)
    speed.run_speed(args(*CPU, "--data-dir", str(cifar), "--results", str(tmp_path), "--epochs", "1", "--profile"))
    out = capsys.readouterr().out
    assert set(seen) == set(StepProfile.SECTIONS)
    for part in ("data", "forward", "backward", "optimizer", "masks", "evaluation"):
        assert seen[part] > 0, part
    assert "| total |" in out and all(StepProfile.LABELS[k] in out for k in StepProfile.SECTIONS)


def test_pipeline_times_each_phase_and_extrapolates_per_phase(cifar, tmp_path):
    out = tmp_path / "performance.md"
    row = speed.run_pipeline(args(*CPU, "--pipeline", "--data-dir", str(cifar), "--results", str(tmp_path / "r"),
                                  "--epochs-scale", "0.02", "--sparsity", "0.9", "--output", str(out)))
    phases = row["phases"]
    assert {"pretrain", "finetune", "score", "prune", "retrain", "eval"} <= set(phases)
    assert "teacher" not in phases and row["teacher_s"] > 0      # the teacher is counted apart
    # cifar10-paper: 50 pretrain, 10 fine-tune, 50 retrain epochs; each cut to 1 here
    full = (phases["pretrain"] * 50 + phases["finetune"] * 10 + phases["retrain"] * 50 + phases["eval"] * 110 / 3
            + phases["score"] + phases["prune"] + phases.get("compile", 0.0))
    assert row["extrapolated"] and row["student_full_s"] == pytest.approx(full)
    assert row["student_s"] == pytest.approx(sum(phases.values()))
    text = out.read_text()
    assert speed.PIPELINE_MARK in text and "(extrapolated)" in text and "tgp, 0.9 | 1/1/1; 1 |" in text


def test_candidate_names_parse_into_switches_and_a_batch():
    assert speed.parse_candidate("engine") == ("engine", {}, None)
    assert speed.parse_candidate("engine-compiled") == ("engine", {"compile": "on"}, None)
    assert speed.parse_candidate("kd-graphs-stream-fold:b512") == (
        "kd", {"cuda_graphs": "on", "teacher_stream": "on", "teacher_fold_bn": "on"}, 512)
    for bad in ("engine-fold", "engine-stream", "kd-warp", "kd-graphs-graphs", "kd:512", "kd:b0", "cells-2", "official-0"):
        assert speed.parse_candidate(bad) is None, bad


def test_steps_bound_the_candidate_rows(cifar, tmp_path, capsys, monkeypatch):
    """--steps: each row trains two epochs of N batches and times the second, s/epoch extrapolated
    to the whole split; the rows say so, carry their own batch and are set against the 1.5 s goal."""
    calls = []
    real = speed.train

    def spy(model, data, recipe, **kw):
        calls.append((len(data.train_y), recipe.epochs, recipe.batch_size, kw["runtime"].cuda_graphs,
                      kw["runtime"].teacher_fold_bn, type(kw["objective"]).__name__))
        return real(model, data, recipe, **kw)

    monkeypatch.setattr(speed, "train", spy)
    out = tmp_path / "performance.md"
    rows = speed.run_speed(args(*CPU, "--data-dir", str(cifar), "--results", str(tmp_path / "r"), "--steps", "2",
                                "--only", "engine,engine-graphs:b4,kd-fold", "--output", str(out)))
    assert [r["name"] for r in rows] == ["engine", "engine-graphs:b4", "kd-fold"]
    assert calls == [(16, 2, 8, "off", "off", "NoneType"), (8, 2, 4, "on", "off", "NoneType"),
                     (16, 2, 8, "off", "on", "Distillation")]
    assert all(r["s_per_epoch"] > 0 for r in rows)
    printed = capsys.readouterr().out
    assert printed.count("goal 1.5 s/epoch") == 3 and "(the goal is for ResNet-18 on a GPU)" in printed
    table = [l.split(" | ") for l in out.read_text().splitlines() if l.startswith("| 20")]
    assert [(t[5], t[7]) for t in table] == [("8", "engine (2 steps)"), ("4", "engine-graphs:b4 (2 steps)"),
                                             ("8", "kd-fold (2 steps)")]
    with pytest.raises(speed.ConfigError, match="--steps"):
        speed.run_speed(args(*CPU, "--data-dir", str(cifar), "--steps", "0", "--only", "engine"))


def test_bounded_profile_covers_a_retraining_and_a_tgp_kd_fine_tune_step(cifar, tmp_path, capsys):
    speed.run_speed(args(*CPU, "--data-dir", str(cifar), "--results", str(tmp_path), "--steps", "2", "--profile"))
    out = capsys.readouterr().out
    assert out.count("| total |") == 2 and "2 steps (evaluation: one test batch)" in out
    assert "a retraining step (cross-entropy, masks at 90% sparsity)" in out
    assert "a tgp-kd fine-tune step (student forward and backward, resnet_small teacher forward" in out
