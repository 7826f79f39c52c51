"""The cost preview (bench/plan.py, bench/estimate.py): plans without data, shared artifacts once,
unreachable cells free, the step-time model against the measured rows and the committed H100 grid,
the dry-run without data, the refusal of a paper-scale grid on the CPU. Nothing here trains."""
import json
import re
import shutil
import subprocess

import pytest
import torch

from bench import estimate as E
from bench import registry
from bench.cli import main
from bench.config import Config, from_dict
from bench.grid import expand_grid

from conftest import REPO
from tiny import TINY, write_config

H100 = REPO / "results" / "h100-small-cifar10"
H100_NAME = "NVIDIA H100 80GB HBM3"


def cells_of(grid: dict, **sections) -> list[E.Cell]:
    cfg = from_dict(Config, {**TINY, **sections, "grid": grid})
    specs = expand_grid(cfg, "cpu")
    return E.plan_cells(specs, ["pending"] * len(specs))


def test_every_registered_method_declares_a_plan():
    assert [n for n, m in registry.methods().items() if not callable(getattr(m, "plan", None))] == []


def test_shared_artifacts_are_counted_once():
    cells = cells_of({"methods": ["dense", "magnitude", "tgp", "tgp-kd", "magnitude-ft", "grad-ce"],
                      "sparsities": [0.5, 0.9], "seeds": [0, 1]})
    work = E.distinct_work(cells)
    kinds = {}
    for _, w, users in work:
        kinds.setdefault(w.shared[0] if w.shared else w.phase, []).append(users)
    # one teacher for every seed, a dense model and each fine-tune per seed
    assert kinds["teachers"] == [8] and sorted(kinds["dense"]) == [11, 11]
    assert sorted(kinds["tgp-finetune"]) == [4, 4] and sorted(kinds["ce-finetune"]) == [4, 4]
    assert len(kinds["retrain"]) == 5 * 2 * 2 and len(cells) == 2 + 5 * 2 * 2
    # TINY: 256 training images, batch 64 (drop_last): 256 images an epoch; 3 pretrain epochs
    dense = next(w for _, w, _ in work if w.shared and w.shared[0] == "dense")
    assert dense.images == 3 * 256 and dense.epochs == 3 and dense.eval_images == 3 * 64


def test_unreachable_cells_cost_nothing(tmp_path, capsys):
    # EGP's own set (convs followed by a ReLU) holds less than 98% of resnet_small's weights
    cells = cells_of({"methods": ["egp", "magnitude"], "sparsities": [0.5, 0.98], "seeds": [0]})
    egp = {c.spec.sparsity: c for c in cells if c.spec.method.name == "egp"}
    assert egp[0.98].unreachable and egp[0.98].work == [] and "conv-noshortcut" in egp[0.98].note
    assert not egp[0.5].unreachable and egp[0.5].work
    cfg = write_config(tmp_path / "c.yaml", grid={"methods": ["egp"], "sparsities": [0.5, 0.98], "seeds": [0]})
    assert main(["run", str(cfg), "--dry-run", "--verbose", "--results", str(tmp_path / "r"),
                 "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"pending .*egp .*sparsity 0\.98 .*[0-9a-f]{16}  unreachable: costs nothing", out)
    assert re.search(r"no cost: egp at sparsity 0\.98 \(seed 0\): unreachable", out)


def test_iterative_rounds_from_the_rate_against_the_h100_records():
    """COLT: the AND of two masks keeps (1 - 0.15)^2 per round if they overlap little; the records
    need one round more at 98% (they overlap a little). EGP: exactly 1 - rate per iteration."""
    got = {}
    for c in E.cells_from_records(H100):
        rec = json.loads(next(H100.glob(f"runs/*/*__{c.spec.run_id}.json")).read_text())
        if c.spec.method.name in ("colt", "egp"):
            planned = max(int(w.phase[5:7]) for w in c.work if re.fullmatch(r"round\d\d", w.phase))
            got.setdefault((c.spec.method.name, c.spec.sparsity), set()).add((planned, rec["extra"]["final_round"]))
    assert got == {("colt", 0.9): {(8, 8)}, ("colt", 0.98): {(13, 14)},
                   ("egp", 0.9): {(4, 4)}, ("egp", 0.98): {(6, 6)}}


def test_plans_share_what_the_h100_runs_shared():
    """The distinct cached artifacts per kind the plans predict against those the 87 ok records used."""
    planned, recorded = {}, {}
    for _, w, _ in E.distinct_work(E.cells_from_records(H100)):
        if w.shared:
            planned[w.shared[0]] = planned.get(w.shared[0], 0) + 1
    for p in H100.glob("runs/*/*.json"):
        rec = json.loads(p.read_text())
        if rec["status"] == "ok":
            for a in rec["artifacts"]:
                recorded.setdefault(a["kind"], set()).add(a["key"])
    recorded = {k: len(v) for k, v in recorded.items()}
    assert recorded == {**planned, "colt-round": planned["colt-round"] + 3}     # one COLT round more per seed


def test_the_throughput_table_holds_the_measured_rows_of_performance_md():
    doc = (REPO / "docs" / "performance.md").read_text()
    for r in E.load_rows():
        row = (f"| {r['device']} | {r['torch']} | .* | {r['model']} | {r['batch']} | {r['precision']} | "
               f"cells-{r['cells']} | {r['images_per_s']:.0f} |")
        assert re.search(re.escape(row).replace(re.escape(".*"), ".*"), doc), row


def test_step_model_reproduces_the_measured_rows():
    speed = E.speed_for("H100", "bf16")
    assert speed.name == H100_NAME and not speed.notes
    rate = {k: k * 256 / max(speed.parts("resnet18", 32, 256)[0], k * speed.parts("resnet18", 32, 256)[1])
            for k in (1, 2, 4)}
    assert rate[1] == pytest.approx(17115) and rate[4] == pytest.approx(48082)
    assert rate[2] == pytest.approx(34695, rel=0.02)
    # another network is scaled, and says how; another device falls back and says so
    speed.parts("resnet50", 32, 256)
    assert "scaled from resnet18 32px batch 256" in speed.used[("resnet50", 32, 256)]
    assert E.speed_for("NVIDIA A100-SXM4-80GB", "bf16").notes == [f"no rows for NVIDIA A100-SXM4-80GB: the rows of "
                                                                   f"{H100_NAME}, unscaled"]
    assert E.speed_for("cpu (4 threads)", "fp32").scale == 0.5


def test_estimate_is_within_2x_of_the_h100_grid_and_the_docs_say_by_how_much():
    out = E.check_records(H100, 6, None, log=lambda _: None)
    assert out["measured_min"] == pytest.approx(12.34, abs=0.005)        # the latency table's grid total
    assert 0.5 <= out["ratio"] <= 2.0
    doc = (REPO / "docs" / "performance.md").read_text()
    assert f"{out['estimate_min']:.2f} cell-minutes" in doc and f"{out['ratio']:.2f}x" in doc


def test_dry_run_of_the_paper_preset_needs_no_data(tmp_path, capsys):
    args = ["run", "cifar10-paper", "--dry-run", "--data-dir", str(tmp_path / "nodata"), "--results", str(tmp_path / "r"),
            "--set", "grid.methods=[tgp-kd, colt, egp]", "--set", "grid.seeds=[42]", "--workers", "4"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert f"data: cifar10 is not in {tmp_path / 'nodata' / 'cifar-10-batches-py'}" in out and "--download" in out
    assert re.search(rf"on {H100_NAME}: [\d,.]+ GPU-hours estimated", out)
    assert re.search(r"with 4 cells per device \(--workers 4\): [\d,.]+ hours wall-clock", out)
    assert "teachers (shared)" in out and "resnet50" in out and "colt-round (shared)" in out
    assert re.search(r"no cost: egp at sparsity 0\.9841 \(seed 42\): unreachable", out)
    if not torch.cuda.is_available():
        assert "warning: runtime.device is auto and this machine has no GPU" in out
        assert re.search(r"on cpu \(\d+ threads?\): [\d,.]+ CPU-hours estimated", out)
    assert not (tmp_path / "r").exists()


def test_a_paper_scale_grid_is_refused_on_the_cpu(tmp_path, capsys, monkeypatch):
    cfg = write_config(tmp_path / "big.yaml", pretrain={**TINY["pretrain"], "epochs": 1_000_000_000},
                       grid={"methods": ["dense"], "seeds": [0]})
    args = ["run", str(cfg), "--results", str(tmp_path / "r"), "--data-dir", str(tmp_path)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert re.search(r"refusing to train this grid on the CPU: its 1 cells to run need about [\d,]+ CPU-hours", err)
    assert "--allow-cpu" in err and "GPU-hours on" in err and not (tmp_path / "r").exists()
    started = []
    monkeypatch.setattr("bench.cli.run_grid", lambda *a, **k: started.append(k) or {"ok": 1})
    assert main(args + ["--allow-cpu"]) == 0 and started
    small = write_config(tmp_path / "small.yaml", grid={"methods": ["dense"], "seeds": [0]})
    assert main(["run", str(small), "--results", str(tmp_path / "r2"), "--data-dir", str(tmp_path)]) == 0


@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
def test_make_table_previews_before_training_and_passes_run_args():
    out = subprocess.run(["make", "-n", "table-cifar10", "RUN_ARGS=--allow-cpu"],
                         cwd=REPO, capture_output=True, text=True).stdout.splitlines()
    runs = [line for line in out if " -m bench run cifar10-paper" in line]
    assert len(runs) == 2 and "--dry-run" in runs[0] and "--dry-run" not in runs[1]
    assert runs[1].rstrip().endswith("--allow-cpu")


def test_collect_lists_the_code_of_the_records(tmp_path, capsys):
    runs = tmp_path / "runs" / "synthetic"
    runs.mkdir(parents=True)
    prov = {"code_fingerprint": "0123456789abcdef", "git_commit": "e0dd3c5" + "0" * 33, "git_dirty": False,
            "harness_version": 2}
    for i, p in enumerate([prov, prov, {"git_commit": "5dfc9d5" + "0" * 33, "git_dirty": True}]):
        rec = {"run_id": f"r{i}", "status": "ok", "dataset": "synthetic", "method": "dense", "target_sparsity": 0,
               "seed": i, "provenance": p, "identity": {"harness": 2}}
        (runs / f"dense__sp0__seed{i}__r{i}.json").write_text(json.dumps(rec))
    assert main(["collect", "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1:] == ["     2 records  code 0123456789abcdef  git e0dd3c5 (clean)  harness 2",
                       "     1 record   code unknown (made before fingerprints)  git 5dfc9d5 (dirty)  harness 2"]
    from bench.provenance import code_versions
    from bench.store import load_runs
    assert code_versions(load_runs(H100)) == [
        "    93 records  code unknown (made before fingerprints)  git 5dfc9d5 (dirty)  harness 2"]


def test_append_row_keeps_the_table_readable(tmp_path):
    path = tmp_path / "t.csv"
    E.append_row({"date": "2026-12-03", "device": "NVIDIA H200", "torch": "2.14", "model": "resnet18",
                  "image_size": 32, "batch": 256, "precision": "bf16", "cells": 2, "images_per_s": "40000",
                  "source": "bench speed cells-2"}, path)
    (row,) = E.load_rows(path)
    assert row["device"] == "NVIDIA H200" and row["cells"] == 2 and row["images_per_s"] == 40000.0


def test_a_resized_dataset_is_costed_at_its_load_size():
    from bench.config import load_config
    from bench.plan import split

    cfg = load_config("tinyimagenet-cpu")
    assert split(cfg.dataset).image_size == 32        # dataset.image_size: 32, not Tiny ImageNet's native 64
    native = load_config("tinyimagenet-cpu", ["dataset.image_size=null"])
    assert split(native.dataset).image_size == 64


def test_a_dataset_priced_at_its_official_size_says_so():
    """The estimate reads no data: CIFAR-100 without train_limit is priced at 50,000 images, and the
    preview says so (the local slice holds 1,117), while a limited split needs no such line."""
    from bench.config import load_config

    full = expand_grid(load_config("cifar100-cpu", ["grid.methods=[dense]", "grid.seeds=[0]"]), "cpu")
    (line,) = E.size_notes(full)
    assert "cifar100: 50,000 train / 10,000 test" in line and "dataset.train_limit" in line
    assert E.size_notes(expand_grid(load_config("tinyimagenet-cpu", ["grid.methods=[dense]"]), "cpu")) == []
