"""Fair by construction: equal student budgets, one prunable set, one augmentation, records that say
how they were computed (threads, processor) and reproduce bit for bit, final accuracies on the whole
test split."""
import pytest
import torch

from bench import budget as B
from bench.config import Config, from_dict, load_config
from bench.grid import expand_grid
from bench.runner import run_grid
from bench.store import load_runs

from conftest import quiet
from tiny import TINY

SD_ROWS = ["cskd", "pskd", "dlb", "cskd-simple", "cskd-epsd", "pskd-simple", "pskd-epsd", "dlb-simple", "dlb-epsd"]


def _smoke_like(**grid):
    """TINY at equal budgets (its pipeline: 3 + 1 + 1 epochs of 256 images, batch 64)."""
    return from_dict(Config, {**TINY, "budget": {"basis": "equal"}, "pai": {"batch_size": 32},
                              "grid": {"sparsities": [0.9], "seeds": [0], **grid}})


@pytest.mark.slow
def test_equal_budgets_give_every_row_from_initialisation_the_pipelines_student_epochs(tmp_path):
    cfg = _smoke_like(methods=["tgp", "cskd-simple", "dlb-epsd", "pskd", {"name": "gmp", "set": {"gmp.start": "init"}}])
    counts = run_grid(cfg, tmp_path, tmp_path, log=quiet)
    assert counts["ok"] == 5 and counts["failed"] == 0
    recs = {r["method"]: r["budget"] for r in load_runs(tmp_path)}
    tgp = recs.pop("tgp")
    assert tgp["basis"] == "equal" and tgp["ratio"] == pytest.approx(1.0)
    for label, b in recs.items():
        assert b["basis"] == "equal" and b["reference_student_epochs"] == tgp["student_epochs"]
        assert abs(b["student_epochs"] / tgp["student_epochs"] - 1) <= B.SLACK, (label, b)
        assert abs(b["ratio"] - 1) <= B.SLACK


def test_the_smoke_grid_gives_every_row_from_initialisation_an_equal_budget():
    """The plan of every SD row of the smoke preset: within 2% of the proposed pipeline's budget."""
    from baselines import selfdistill as sd

    cfg = load_config("smoke")
    n = cfg.dataset.synthetic.train_size
    ref = B.reference_epochs(cfg, n)
    assert cfg.budget.basis == "equal"
    for spec in expand_grid(cfg, "cpu"):
        if spec.method.name in SD_ROWS:
            method = spec.method.name.split("-")[0]
            r = sd.recipe_of(spec.config, method, n)
            assert abs(B.full_data_epochs(r, n) / ref - 1) <= B.SLACK, spec.method.display


def test_every_default_row_prunes_the_convs_and_the_sd_head_only_in_the_official_variant():
    from baselines import selfdistill as sd

    cfg = load_config("smoke")
    for spec in expand_grid(cfg, "cpu"):
        if spec.method.name in SD_ROWS[3:]:
            assert sd.layers_of(spec.config) == "conv" and spec.method.display == spec.method.name
    official = from_dict(Config, {**TINY, "sd": {"protocol": "official"}})
    assert sd.layers_of(official) == "conv+linear" and sd.label_suffix(official) == "-official"
    assert sd.augment_of(official).rotate_deg == 0 and sd.augment_of(cfg) == cfg.dataset.augment


@pytest.mark.slow
def test_one_target_gives_every_conv_pruning_row_the_same_conv_sparsity(tmp_path):
    """At one overall target the rows that prune the convs (the head dense) agree on the conv sparsity
    within the tolerance, the SD rows included."""
    cfg = from_dict(Config, {**TINY, "budget": {"basis": "retrain-matched"}, "pai": {"batch_size": 32},
                             "colt": {"rate": 0.5, "train": {**TINY["retrain"], "drop_last": False}},
                             "grid": {"methods": ["magnitude", "tgp", "random", "cskd-simple", "dlb-epsd", "colt"],
                                      "sparsities": [0.9], "seeds": [0]}})
    run_grid(cfg, tmp_path, tmp_path, log=quiet)
    recs = load_runs(tmp_path, status="ok")
    assert len(recs) == 6
    conv = {r["method"]: r["sparsity"]["conv"] for r in recs}
    assert max(conv.values()) - min(conv.values()) <= 0.0005, conv
    assert all(r["prunable_set"] == "conv" and r["layer_density"]["linear.weight"] == 1.0 for r in recs)


def test_a_record_says_its_threads_and_processor_and_repeats_bit_for_bit(tmp_path):
    cfg = from_dict(Config, {**TINY, "grid": {"methods": ["magnitude"], "sparsities": [0.9], "seeds": [0]}})
    digests = []
    for k in range(2):            # two fresh folders: nothing cached is shared
        run_grid(cfg, tmp_path / str(k), tmp_path, log=quiet)
        (rec,) = load_runs(tmp_path / str(k), status="ok")
        num = rec["numerics"]
        assert num["threads"] == torch.get_num_threads() and num["processor"]["model"]
        assert isinstance(num["processor"]["isa"], list) and num["processor"]["torch_capability"]
        digests.append((rec["final_weights_sha256"], rec["top1_final"], rec["history"]))
    assert digests[0] == digests[1]


def test_monitoring_subset_per_epoch_and_the_whole_test_split_at_the_end(tmp_path):
    cfg = from_dict(Config, {**TINY, "dataset": {**TINY["dataset"], "monitor_limit": 16},
                             "grid": {"methods": ["dense"], "seeds": [0]}})
    run_grid(cfg, tmp_path, tmp_path, log=quiet)
    (rec,) = load_runs(tmp_path, status="ok")
    assert rec["data"]["n_test"] == 64 and rec["data"]["n_monitor"] == 16
    last = rec["history"][-1]
    assert "test_top1_all" in last and all("test_top1_all" not in h for h in rec["history"][:-1])
    assert rec["top1_final"] == last["test_top1_all"]
    assert all((h["test_top1"] * 16 / 100) == pytest.approx(round(h["test_top1"] * 16 / 100)) for h in rec["history"])
    assert (last["test_top1_all"] * 64 / 100) == pytest.approx(round(last["test_top1_all"] * 64 / 100))
    # the run identity of a config without a monitoring subset is what it was before the key existed
    plain = from_dict(Config, {**TINY, "grid": {"methods": ["dense"], "seeds": [0]}})
    assert "monitor_limit" not in expand_grid(plain, "cpu")[0].identity["dataset"]


def test_a_grid_entry_may_run_at_its_own_targets():
    cfg = from_dict(Config, {**TINY, "grid": {"methods": ["magnitude", {"name": "tgp", "sparsities": [0.5, 0.8, 0.9]}],
                                              "sparsities": [0.9], "seeds": [0]}})
    got = sorted((s.method.display, s.sparsity) for s in expand_grid(cfg, "cpu"))
    assert got == [("magnitude", 0.9), ("tgp", 0.5), ("tgp", 0.8), ("tgp", 0.9)]


# --------------------------------------------------------------------------- the table says it

def _record(method, seed, top1, *, target=0.98, density=None, ratio=1.0, rotate=0.0, grid_rotate=0.0,
            prunable_set="conv"):
    aug = {"crop_padding": 4, "flip": True, "rotate_deg": rotate}
    return {"status": "ok", "dataset": "cifar10", "model": "resnet_small", "method": method, "method_name": method,
            "target_sparsity": target, "seed": seed, "run_id": f"{method}-{seed}-{target}",
            "ended_at": "2026-01-01T00:00:00+00:00", "top1_final": top1, "top1_best": top1,
            "sparsity_measure": "overall", "sparsity_realised": target, "sparsity_on_target": True,
            "sparsity": {"overall": target}, "prunable_set": prunable_set,
            "layer_density": density or {"conv1.weight": 0.5, "layer4.0.conv1.weight": 0.01, "linear.weight": 1.0},
            "config": {"dataset": {"augment": {"crop_padding": 4, "flip": True, "rotate_deg": grid_rotate}}},
            "budget": {"phases": {"retrain": {"epochs": 8, "full_data_epochs": 8.0, "images": 40000, "reused": False,
                                              "augment": aug}},
                       "student_epochs": 26.0 * ratio, "student_images": int(130000 * ratio), "teacher_epochs": 0,
                       "teacher_images": 0, "basis": "equal", "reference_student_epochs": 26.0, "ratio": ratio}}


def test_the_table_flags_layer_collapse_budget_ratio_head_and_a_minority_augmentation():
    from bench.report.accuracy_table import accuracy_latex, accuracy_markdown, build_accuracy_table

    empty = {"conv1.weight": 0.5, "layer4.0.conv1.weight": 0.0, "layer4.0.shortcut.0.weight": 0.0023,
             "linear.weight": 1.0}
    runs = ([_record("tgp", s, 33.0 + s, density=empty) for s in range(3)]
            + [_record("magnitude", s, 43.0, ratio=23 / 26) for s in range(3)]
            + [_record("cskd-simple-official", s, 40.0, ratio=200 / 26, prunable_set="conv+linear", rotate=15.0,
                       density={"conv1.weight": 0.5, "linear.weight": 0.4}) for s in range(3)])
    md = accuracy_markdown(build_accuracy_table(runs, "cifar10"))
    row = next(line for line in md.splitlines() if line.startswith("| 98.00 "))
    assert "34.00 ± 1.00 (n=3)∅" in row and "43.00∅" not in row
    assert ("- ∅ tgp at 98.00%: layer collapse in 3 of 3 runs: layer4.0.conv1 (empty), layer4.0.shortcut.0 (0.23%)"
            in md)
    cells = {line.split(" | ")[0].lstrip("| "): line for line in md.splitlines() if line.startswith("| ")}
    assert "| 7.69× |" in cells["× reference budget"] and "| 0.88× |" in cells["× reference budget"]
    assert "conv+linear" in cells["prunable set"] and "| 40.00 |" in cells["head kept %"]
    # one run in three rotates: a minority, still named
    assert "differs: cskd-simple-official (crop 4, flip, rotate 15°: retrain)" in md
    tex = accuracy_latex(build_accuracy_table(runs, "cifar10"))
    assert r"$^\emptyset$" in tex and "∅" not in tex
