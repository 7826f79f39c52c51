"""scripts/gpu-paper-slice.sh, prepared on the CPU: its plan (scripts/slice_plan.py) is computed from
the measured rows and fits the call, its preset is the slice the issue asks for, and its time guard
(scripts/guard.sh) leaves interrupted records, not killed cells, when the local executor's workers
are stopped (the script itself runs end to end in MODE=quick: docs/performance.md)."""
import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.config import load_config
from bench.store import load_runs

from conftest import REPO
from tiny import TINY, write_config

spec = importlib.util.spec_from_file_location("slice_plan", REPO / "scripts" / "slice_plan.py")
slice_plan = sys.modules["slice_plan"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(slice_plan)

CORE = {"dense", "tgp-kd", "tgp", "magnitude", "magnitude-ft"}


def test_rates_are_the_rows_of_docs_performance():
    doc = (REPO / "docs" / "performance.md").read_text()
    rows = [l for l in doc.splitlines() if l.startswith("| 2026-11-26 | NVIDIA H100")]
    for k, rate in slice_plan.MEASURED["cells_img_s"].items():
        assert any(f"| cells-{k} | {rate} |" in l for l in rows), k
    m = slice_plan.MEASURED
    pipeline = next(l for l in rows if "| tgp, 0.985 |" in l).split(" | ")
    assert pipeline[7] == f"{m['finetune_s']}" and pipeline[10] == f"{m['eval_s']}"
    assert f"{pipeline[8]}" == f"{m['score_prune_s']}" and pipeline[14].startswith(f"{m['teacher_s']:.0f} ")
    cpu = [l for l in doc.splitlines() if l.startswith("| 2026-11-26 | cpu")]
    for k, rate in slice_plan.MEASURED_CPU["cells_img_s"].items():
        assert any(f"| cells-{k} | {rate} |" in l for l in cpu), k


def test_full_plan_fits_540_s_with_the_core_cells_inside_the_worst_case_limit():
    p = slice_plan.plan("full")
    assert p["budget"] == 540 and p["fits"] and p["total"] <= 540
    assert p["workers"] == 4                                   # the best measured row: 4 cells
    assert len(p["cells"]) == 5 * 3
    core = [end for label, _, end in p["cells"] if label in CORE]
    assert max(core) <= p["limits"]["slice"] < p["slice_available"]     # even if every earlier step overruns
    # the first cells are the core comparison: dense, tgp-kd, tgp, magnitude
    assert [label for label, _, _ in p["cells"][:12]] == [m for m in ("dense", "tgp-kd", "tgp", "magnitude")
                                                         for _ in range(3)]
    assert p["fast_recipe_slice_s"] > p["slice_available"]     # why the preset shortens cifar10-fast
    text = slice_plan.render(p)
    assert text.startswith("PLAN (full mode") and "fits" in text and "tgp-kd" in text


def test_preset_is_the_slice_the_issue_asks_for():
    cfg = load_config("cifar10-gpu-slice")
    assert (cfg.model.arch, cfg.teacher.arch, cfg.dataset.name, cfg.dataset.train_limit) == \
        ("resnet18", "resnet50", "cifar10", None)
    assert cfg.grid.sparsities == [0.9841] and cfg.prune.measure == "overall"
    assert cfg.grid.seeds == [42, 43, 44] and cfg.runtime.device == "cuda"
    assert [m.name for m in cfg.grid.methods] == ["dense", "tgp-kd", "tgp", "magnitude", "magnitude-ft"]
    fast = load_config("cifar10-fast")
    assert cfg.dataset == fast.dataset and cfg.kd == fast.kd            # the same data, augmentation, KD
    assert all(getattr(cfg, s).batch_size == getattr(fast, s).batch_size for s in ("pretrain", "retrain"))


def test_the_plan_prices_every_cell_with_a_margin_and_the_measured_pai_scoring():
    assert slice_plan.MARGIN > 1 and slice_plan.MEASURED["pai_s"] == 45.0
    c = slice_plan.Costs.gpu()
    preset = {"pretrain": {"epochs": 1}, "retrain": {"epochs": 1}, "tgp": {"finetune": {"epochs": 1}},
              "grid": {"methods": ["dlb-epsd"], "seeds": [0]}, "budget": {"basis": "retrain-matched"}}
    ((label, _, tasks),) = slice_plan.cells(preset, c)
    assert label == "dlb-epsd-matched"
    assert tasks[0][1] == pytest.approx(slice_plan.MARGIN * (45.0 + 2 * c.ce_epoch))


@pytest.mark.slow
def test_the_slice_falls_back_to_plain_runners_when_the_local_executor_fails(tmp_path):
    """MODE=quick on the CPU, the local executor forced to fail: plain runners run the slice, the
    evidence comes back (records in slice.tgz, the summary)."""
    shared = REPO.parent / "shared" / "data" / "materialize.py"
    if not shared.exists():
        pytest.skip("needs ../shared/data (the project's CI keeps it beside the clone)")
    data = tmp_path / "data"
    subprocess.run([sys.executable, str(shared), str(data), "--only", "cifar10", "--cifar10-exact"], check=True,
                   capture_output=True)
    env = {**os.environ, "FORCE_EXECUTOR_FAILURE": "1", "MODE": "quick", "PY": sys.executable,
           "OUT": str(tmp_path / "out"), "RESULTS": str(tmp_path / "r"), "DATA_DIR": str(data)}
    proc = subprocess.run(["bash", "scripts/gpu-paper-slice.sh"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "the local executor failed to start (exit 3, no record): 2 plain runners instead" in proc.stdout
    recs = load_runs(tmp_path / "r" / "slice")
    assert recs and all(r["status"] == "ok" for r in recs), [(r["method"], r["status"]) for r in recs]
    assert {r["method"] for r in recs} == CORE
    assert (tmp_path / "out" / "slice.tgz").stat().st_size > 0 and "## Table" in (tmp_path / "out" / "summary.md").read_text()


def test_simulated_workers_wait_for_a_shared_artifact():
    make = ("make", "dense-0", 10.0)
    cells = [("a", 0, [make, ("work", 5.0)]), ("b", 0, [make, ("work", 5.0)])]
    # two workers, one cell's throughput each (flat rates): b waits for a's dense model, then works
    ends = slice_plan.simulate(cells, 2, {1: 1.0, 2: 2.0}, start_s=0.0)
    assert ends[0] == pytest.approx(15, abs=0.6) and ends[1] == pytest.approx(15, abs=0.6)
    # two busy cells share one cell's throughput: the dense model alone at full speed (10 s), then
    # both cells' 5 s of work at half speed
    ends = slice_plan.simulate(cells, 2, {1: 1.0, 2: 1.0}, start_s=0.0)
    assert ends[0] == pytest.approx(20, abs=0.6) and ends[1] == pytest.approx(20, abs=0.6)


def test_concurrency_interpolates_between_measured_rows():
    rates = slice_plan.MEASURED["cells_img_s"]
    assert slice_plan.concurrency(1, rates) == 1.0
    assert slice_plan.concurrency(2, rates) < slice_plan.concurrency(3, rates) < slice_plan.concurrency(4, rates)
    assert slice_plan.concurrency(8, rates) == slice_plan.concurrency(4, rates)


@pytest.mark.parametrize("mode", ["full", "quick"])
def test_shell_assignments_are_what_the_script_reads(mode):
    script = (REPO / "scripts" / "gpu-paper-slice.sh").read_text()
    out = subprocess.run(["bash", "-c", f'eval "$({sys.executable} scripts/slice_plan.py --mode {mode} --shell)"; '
                                        'echo "$PLAN_WORKERS|${#PLAN_SET[@]}|$PLAN_SPEED_ONLY|$PLAN_BUDGET"'],
                         cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
    workers, nset, only, budget = out.split("|")
    assert workers == ("2" if mode == "quick" else "4") and int(nset) == (len(slice_plan.QUICK["set"]) if mode == "quick" else 0)
    assert budget == ("1200" if mode == "quick" else "540") and len(only.split(",")) == 9
    names = {l.split("=")[0] for l in slice_plan.shell(slice_plan.plan(mode)).splitlines()}
    used = {n for n in names if re.search(rf"\b{n}\b", script)}
    assert used == names, names - used                       # every variable is used by the script


submitit = pytest.importorskip("submitit", reason="the local executor needs submitit")


@pytest.mark.slow
def test_guard_stops_local_workers_with_interrupted_records(tmp_path):
    """The slice step's guard on a grid that cannot finish in time: the workers record their cells
    interrupted, nothing of the process group outlives the guard, and the guard returns 124."""
    cfg = write_config(tmp_path / "g.yaml", runtime={"device": "cpu", "checkpoint_every_s": 0, "heartbeat_s": 0.5,
                                                     "stale_after_s": 5},
                       pretrain={**TINY["pretrain"], "epochs": 2000},
                       grid={"methods": ["dense", "magnitude"], "sparsities": [0.9], "seeds": [0, 1]})
    results = tmp_path / "r"
    cmd = (f"source scripts/guard.sh; GUARD_DRAIN_S=60 guard 40 {sys.executable} -m bench run {cfg} --results {results} "
           f"--data-dir {tmp_path} --executor local --workers 2; echo rc=$?")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    t0 = time.monotonic()
    out = subprocess.run(["bash", "-c", cmd], cwd=REPO, env=env, capture_output=True, text=True, timeout=300).stdout
    assert "rc=124" in out and "time limit (40 s) reached" in out and "killed" not in out, out
    recs = load_runs(results)
    assert len(recs) == 2 and all(r["status"] == "interrupted" and "SIGTERM" in r["error"] for r in recs), \
        [(r["status"], r.get("error")) for r in recs]
    states = json.loads(next((results / "jobs").glob("*.json")).read_text())["jobs"]
    for job in states:                                     # the workers' controllers are gone too
        assert not Path(f"/proc/{job.split('-', 1)[1]}").exists()
    assert time.monotonic() - t0 < 40 + 60 + 30
