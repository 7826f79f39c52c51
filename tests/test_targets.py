"""One comparison axis: every method lands on the same target of one declared measure (overall by
default), whatever its own prunable set; unreachable targets are recorded as such; every record
says what its student and teacher trained (the budget)."""
import pytest
import torch

from bench.config import Config, from_dict
from bench.masks import TOLERANCE, Masks, Target, UnreachableSparsity
from bench.models import build_model
from bench.runner import run_grid, status_of
from bench.store import load_runs

from conftest import quiet
from tiny import TINY


@pytest.mark.parametrize("layers,measure", [("conv", "overall"), ("conv+linear", "overall"), ("conv", "conv"),
                                            ("conv+linear", "conv"), ("conv", "conv-noshortcut"),
                                            ("conv-noshortcut", "prunable")])
def test_global_prune_lands_every_set_on_every_measure(layers, measure):
    """A global prune by random scores, to the count Target.global_count gives, realises the target on
    the measure: also where the measure counts only part of the prunable set (conv of conv+linear)."""
    torch.manual_seed(0)
    model = build_model("resnet_small", 10)
    masks = Masks(model, layers)
    target = Target(masks, model, 0.9, measure)
    target.check(layers)
    scores = [torch.rand(p.shape) for p in masks.params]
    masks.prune_count(scores, target.global_count(masks, scores))
    assert abs(target.realised(model, layers) - 0.9) <= 1 / target.total + 1e-12
    assert target.missing(masks) == 0


def test_an_unreachable_target_names_the_highest_sparsity_the_set_allows():
    model = build_model("resnet_small", 200)          # a 200-way head: 8% of the weights
    masks = Masks(model, "conv")
    with pytest.raises(UnreachableSparsity, match="reaches 92.08% overall") as e:
        Target(masks, model, 0.95, "overall").check("conv")
    assert e.value.maximum == pytest.approx(306096 / 332416)
    Target(masks, model, 0.9, "overall").check("conv")     # reachable: no error


def _grid(tmp_path, methods, sparsities, **extra):
    cfg = from_dict(Config, {**TINY, **extra, "grid": {"methods": methods, "sparsities": sparsities, "seeds": [0]}})
    return cfg, run_grid(cfg, tmp_path, tmp_path, log=quiet)


@pytest.mark.slow
def test_methods_with_different_prunable_sets_meet_at_the_same_overall_sparsity(tmp_path):
    _, counts = _grid(tmp_path, ["magnitude", {"name": "cskd-simple", "set": {"pai.layers": "conv+linear"}}], [0.9])
    assert counts["ok"] == 2
    recs = {r["method_name"]: r for r in load_runs(tmp_path)}
    assert recs["magnitude"]["prunable_set"] == "conv" and recs["cskd-simple"]["prunable_set"] == "conv+linear"
    for r in recs.values():
        assert r["sparsity_measure"] == "overall" and r["sparsity_on_target"] is True
        assert abs(r["sparsity_realised"] - 0.9) <= TOLERANCE
        assert r["sparsity_realised"] == r["sparsity"]["overall"]
    # The same number of weights left in both networks (within the tolerance).
    kept = [round((1 - r["sparsity_realised"]) * r["overall_weights"]) for r in recs.values()]
    assert abs(kept[0] - kept[1]) <= TOLERANCE * recs["magnitude"]["overall_weights"]


@pytest.mark.slow
def test_unreachable_cell_is_recorded_done_and_not_retried(tmp_path):
    """EGP's own set (no shortcuts) is 96.1% of a 4-class resnet_small: 0.98 overall is unreachable, recorded
    before any training, counted as done (a rerun skips it)."""
    cfg, counts = _grid(tmp_path, ["egp"], [0.98], egp={"dense": {**TINY["pretrain"], "epochs": 1}})
    assert counts["unreachable"] == 1 and counts["failed"] == 0
    (rec,) = load_runs(tmp_path)
    assert rec["status"] == "unreachable" and rec["sparsity_measure"] == "overall"
    assert rec["max_sparsity"] == pytest.approx(295344 / 307328) and "conv-noshortcut" in rec["reason"]   # 4 classes
    assert not (tmp_path / "cache" / "egp-dense").exists()          # nothing was trained
    from bench import registry
    from bench.grid import expand_grid

    (spec,) = expand_grid(cfg, "cpu")
    assert status_of(tmp_path, spec)[0] == "done"
    assert run_grid(cfg, tmp_path, tmp_path, log=quiet)["skipped"] == 1


@pytest.mark.slow
def test_records_carry_the_budget_of_every_phase_reused_ones_included(tmp_path):
    _, counts = _grid(tmp_path, ["magnitude", "tgp-kd"], [0.5])
    assert counts["ok"] == 2
    recs = {r["method"]: r for r in load_runs(tmp_path)}
    per_epoch = 256                                   # 256 synthetic train images, batch 64, drop_last
    pre, ft, re_, te = (TINY["pretrain"]["epochs"], TINY["tgp"]["finetune"]["epochs"], TINY["retrain"]["epochs"],
                        TINY["teacher"]["train"]["epochs"])
    mag = recs["magnitude"]["budget"]
    assert set(mag["phases"]) == {"pretrain", "retrain"}
    assert mag["phases"]["pretrain"]["epochs"] == pre and mag["phases"]["retrain"]["epochs"] == re_
    assert mag["student_epochs"] == pre + re_ and mag["student_images"] == (pre + re_) * per_epoch
    assert mag["teacher_epochs"] == 0
    kd = recs["tgp-kd"]["budget"]
    assert kd["phases"]["pretrain"]["reused"] is True and kd["phases"]["retrain"]["reused"] is False
    assert kd["student_epochs"] == pre + ft + re_ and kd["teacher_epochs"] == te
    assert kd["teacher_images"] == te * per_epoch
    assert kd["phases"]["retrain"]["augment"] == {"crop_padding": 1, "flip": True, "rotate_deg": 0.0}
