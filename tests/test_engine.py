"""The engine and what methods build on it: schedules, the two halves of masking, stateful
objectives, multi-round methods with cached chains, and what the proposed method really trains on."""
import math
import types

import pytest
import torch

from bench.masks import sparsity_stats
import torch.nn.functional as F

from bench import engine, registry
from bench.config import Config, RuntimeConfig, TrainConfig, from_dict
from bench.distill import KDConfig
from bench.grid import expand_grid
from bench.context import Artifacts, Outcome, RunContext
from bench.data import load_dataset
from bench.engine import PhaseTimer, lr_factor
from bench.importance import EMAImportance
from bench.losses import CrossEntropy, Distillation, Objective, frozen_bn_stats
from bench.masks import Masks
from bench.models import build_model
from bench.runner import run_grid
from bench.store import load_runs

from conftest import quiet
from tiny import TINY


# --------------------------------------------------------------------------- schedules

def test_lr_factor_warmup_step_and_cosine_exact_values():
    step = TrainConfig(epochs=10, schedule="step", milestones=[3, 6], gamma=0.1, warmup_epochs=1)
    spe = 4   # steps per epoch; warm-up = 4 steps
    assert [lr_factor(s, 40, 4, step, spe) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_factor(11, 40, 4, step, spe) == 1.0           # epoch 2
    assert lr_factor(12, 40, 4, step, spe) == pytest.approx(0.1)    # epoch 3: first milestone
    assert lr_factor(24, 40, 4, step, spe) == pytest.approx(0.01)   # epoch 6: second milestone
    cos = TrainConfig(epochs=10, schedule="cosine", milestones=[], warmup_epochs=0)
    assert lr_factor(0, 40, 0, cos, spe) == 1.0
    assert lr_factor(20, 40, 0, cos, spe) == pytest.approx(0.5)
    assert lr_factor(10, 40, 0, cos, spe) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    cos_w = TrainConfig(epochs=10, schedule="cosine", milestones=[], warmup_epochs=1)
    assert lr_factor(4, 40, 4, cos_w, spe) == 1.0 and lr_factor(22, 40, 4, cos_w, spe) == pytest.approx(0.5)
    const = TrainConfig(epochs=10, schedule="constant", milestones=[], warmup_epochs=0)
    assert {lr_factor(s, 40, 0, const, spe) for s in range(40)} == {1.0}


# --------------------------------------------------------------------------- masking, each half alone

def _masked_training(tmp_path):
    cfg = from_dict(Config, TINY)
    data = load_dataset(cfg.dataset, tmp_path, "cpu")
    torch.manual_seed(0)
    model = build_model("resnet_small", data.num_classes)
    masks = Masks(model)
    masks.prune_global([p.detach().abs() for p in masks.params], 0.8)
    pruned = [m == 0 for m in masks.masks]
    recipe = TrainConfig(epochs=1, batch_size=64, lr=0.1, warmup_epochs=0, schedule="constant", milestones=[])
    opts = []
    real_sgd = torch.optim.SGD

    def spy(*a, **kw):
        opts.append(real_sgd(*a, **kw))
        return opts[-1]

    return cfg, data, model, masks, pruned, recipe, opts, spy


def test_weights_are_re_masked_after_every_step(tmp_path, monkeypatch):
    """With gradient masking switched off, only the re-masking after each step keeps pruned
    weights at zero (remove that call from the engine and this fails)."""
    cfg, data, model, masks, pruned, recipe, _, _ = _masked_training(tmp_path)
    monkeypatch.setattr(Masks, "mask_grads", lambda self: None)
    engine.train(model, data, recipe, runtime=cfg.runtime, timer=PhaseTimer(torch.device("cpu")), seed=0,
                 augment=cfg.dataset.augment, masks=masks, log=quiet)
    assert all(torch.count_nonzero(p.detach()[z]) == 0 for p, z in zip(masks.params, pruned))


def test_gradients_are_masked_before_every_step(tmp_path, monkeypatch):
    """With re-masking switched off after the initial application, only the gradient masking keeps
    pruned weights at zero and their momentum buffers clean (remove that call and this fails)."""
    cfg, data, model, masks, pruned, recipe, opts, spy = _masked_training(tmp_path)
    real_apply = Masks.apply
    calls = []

    def apply_once(self):
        calls.append(1)
        if len(calls) == 1:
            real_apply(self)

    monkeypatch.setattr(Masks, "apply", apply_once)
    monkeypatch.setattr(torch.optim, "SGD", spy)
    engine.train(model, data, recipe, runtime=cfg.runtime, timer=PhaseTimer(torch.device("cpu")), seed=0,
                 augment=cfg.dataset.augment, masks=masks, log=quiet)
    assert len(calls) > 1                                  # the engine does re-mask every step
    assert all(torch.count_nonzero(p.detach()[z]) == 0 for p, z in zip(masks.params, pruned))
    (opt,) = opts
    for p, z in zip(masks.params, pruned):
        assert torch.count_nonzero(opt.state[p]["momentum_buffer"][z]) == 0


# --------------------------------------------------------------------------- a stateful objective

class ToyMemory(Objective):
    """A stand-in for PS-KD/CS-KD-like objectives: an epoch hook, a per-sample memory indexed by
    ``batch.idx``, and a second forward pass per step that must not touch BatchNorm statistics."""

    def __init__(self, n, num_classes):
        self.epochs_seen, self.memory = [], torch.zeros(n, num_classes)
        self.seen = torch.zeros(n, dtype=torch.long)

    def start_epoch(self, epoch, epochs):
        self.epochs_seen.append((epoch, epochs))

    def __call__(self, model, batch):
        logits = model(batch.x)
        with frozen_bn_stats(model), torch.no_grad():
            model(batch.x.flip(3))                      # a second view
        self.memory[batch.idx] = logits.detach().softmax(1)
        self.seen[batch.idx] += 1
        return F.cross_entropy(logits, batch.y), logits

    def state_dict(self):
        return {"memory": self.memory.clone(), "seen": self.seen.clone()}


def test_stateful_objective_sees_epochs_every_sample_and_one_bn_update(tmp_path):
    cfg = from_dict(Config, TINY)
    data = load_dataset(cfg.dataset, tmp_path, "cpu")
    recipe = TrainConfig(epochs=3, batch_size=100, lr=0.05, warmup_epochs=0, schedule="constant", milestones=[],
                         drop_last=False)
    runs = {}
    for name, obj in (("toy", ToyMemory(len(data.train_y), data.num_classes)), ("ce", CrossEntropy())):
        torch.manual_seed(0)
        model = build_model("resnet_small", data.num_classes)
        engine.train(model, data, recipe, runtime=cfg.runtime, timer=PhaseTimer(torch.device("cpu")), seed=0,
                     augment=cfg.dataset.augment, objective=obj, log=quiet)
        runs[name] = (model, obj)
    toy = runs["toy"][1]
    assert toy.epochs_seen == [(0, 3), (1, 3), (2, 3)]
    assert torch.equal(toy.seen, torch.full_like(toy.seen, 3))      # drop_last=False: every sample, every epoch
    # The second forward pass left BatchNorm's running statistics exactly as one pass per step does.
    bn_toy = runs["toy"][0].bn1
    bn_ce = runs["ce"][0].bn1
    assert torch.allclose(bn_toy.running_mean, bn_ce.running_mean, atol=1e-5)
    assert int(bn_toy.num_batches_tracked) == int(bn_ce.num_batches_tracked) == 9


def test_drop_last_default_skips_the_tail(tmp_path):
    cfg = from_dict(Config, TINY)
    data = load_dataset(cfg.dataset, tmp_path, "cpu")
    obj = ToyMemory(len(data.train_y), data.num_classes)
    recipe = TrainConfig(epochs=1, batch_size=100, lr=0.05, warmup_epochs=0, schedule="constant", milestones=[])
    engine.train(build_model("resnet_small", data.num_classes), data, recipe, runtime=cfg.runtime,
                 timer=PhaseTimer(torch.device("cpu")), seed=0, augment=cfg.dataset.augment, objective=obj, log=quiet)
    assert int(obj.seen.sum()) == 200    # 256 samples, batches of 100, the tail of 56 dropped


# --------------------------------------------------------------------------- a two-round method

def _two_round_module(off_target="the toy stops at the first round at or past the target"):
    """Prune 50% of the remaining weights per round, retrain one epoch, stop at the first round at
    or beyond the target; each round is a cached stage, so targets share the chain."""

    def run(ctx):
        model = ctx.build()
        masks = ctx.masks(model)
        r, result = 0, None
        while masks.sparsity() < ctx.cfg.prune.sparsity - 1e-9:
            r += 1
            phase = f"round{r:02d}"

            def produce():
                masks.prune_global([p.detach().abs() for p in masks.params], 1 - 0.5 ** r)
                res = ctx.train(model, ctx.cfg.retrain, phase=phase, group="score+prune", masks=masks)
                return {"result": res.to_dict()}, {"masks": masks.state_dict()["masks"]}

            meta, payload = ctx.stage("toy-chain", produce, (phase,), sections=("dataset", "seed", "retrain"), version=1,
                                      extra={"round": r}, model=model)
            if payload is not None:
                for m, saved in zip(masks.masks, payload["masks"]):
                    m.copy_(saved.to(m.dtype))
            result = engine.TrainResult.from_dict(meta["result"])
            ctx.add_round(r, phase=phase, sparsity=sparsity_stats(model, ctx.cfg.prune.layers)["sparsity"], top1_final=result.top1_final,
                          top1_best=result.top1_best)
        return Outcome(model=model, result=result, masks=masks, off_target=off_target)

    return types.SimpleNamespace(NAME="toy-rounds", VERSION=1, PRUNES=True, SECTIONS=("retrain",), run=run)


def test_two_round_method_records_rounds_and_reuses_the_chain(tmp_path, monkeypatch):
    monkeypatch.setitem(registry.methods(), "toy-rounds", _two_round_module())
    grid = {"methods": ["toy-rounds"], "seeds": [0]}
    cfg = from_dict(Config, {**TINY, "prune": {"measure": "prunable"}, "grid": {**grid, "sparsities": [0.5]}})
    assert run_grid(cfg, tmp_path, tmp_path, log=quiet)["ok"] == 1
    cfg = from_dict(Config, {**TINY, "prune": {"measure": "prunable"}, "grid": {**grid, "sparsities": [0.7]}})
    assert run_grid(cfg, tmp_path, tmp_path, log=quiet)["ok"] == 1
    recs = {r["target_sparsity"]: r for r in load_runs(tmp_path)}
    first, second = recs[0.5], recs[0.7]
    assert [x["round"] for x in first["rounds"]] == [1]
    assert [(x["round"], x["reused"]) for x in second["rounds"]] == [(1, True), (2, False)]
    assert second["rounds"][0]["seconds"] == pytest.approx(first["rounds"][0]["seconds"])
    assert second["phases"]["round01"]["reused"] and not second["phases"]["round02"]["reused"]
    assert second["phases"]["round02"]["group"] == "score+prune"
    assert second["phases"]["round01"]["group"] == "score+prune"
    assert first["sparsity_on_target"] is True and first["off_target_reason"] is None
    assert abs(second["sparsity_prunable"] - 0.75) < 1e-3 and second["sparsity_on_target"] is False
    assert second["off_target_reason"] == "the toy stops at the first round at or past the target"
    assert abs(second["rounds"][1]["sparsity"]["prunable"] - 0.75) < 1e-3
    assert len(list((tmp_path / "cache" / "toy-chain").glob("*.pt"))) == 2   # no round trained twice


def test_a_method_that_misses_its_target_without_a_reason_fails(tmp_path, monkeypatch):
    monkeypatch.setitem(registry.methods(), "toy-rounds", _two_round_module(off_target=None))
    cfg = from_dict(Config, {**TINY, "prune": {"measure": "prunable"},
                             "grid": {"methods": ["toy-rounds"], "sparsities": [0.7], "seeds": [0]}})
    assert run_grid(cfg, tmp_path, tmp_path, log=quiet)["failed"] == 1
    (rec,) = load_runs(tmp_path)
    assert "misses the target 0.7" in rec["error"]


# --------------------------------------------------------------------------- what the proposed method trains on

def test_importance_depends_on_the_kd_loss(tmp_path):
    cfg = from_dict(Config, TINY)
    data = load_dataset(cfg.dataset, tmp_path, "cpu")
    torch.manual_seed(1)
    teacher = build_model("resnet_small", data.num_classes).eval()
    recipe = TrainConfig(epochs=1, batch_size=64, lr=0.01, warmup_epochs=0, schedule="constant", milestones=[])
    scores = {}
    for alpha in (0.0, 1.0):
        torch.manual_seed(0)
        model = build_model("resnet_small", data.num_classes)
        imp = EMAImportance(Masks(model).params)
        obj = Distillation(teacher, KDConfig(alpha=alpha), gamma=0.5)
        engine.train(model, data, recipe, runtime=cfg.runtime, timer=PhaseTimer(torch.device("cpu")), seed=0,
                     augment=cfg.dataset.augment, objective=obj, hooks=[imp], log=quiet)
        scores[alpha] = torch.cat([s.flatten() for s in imp.scores()])
    rel = (scores[0.0] - scores[1.0]).abs().sum() / scores[0.0].abs().sum()
    assert rel > 0.05


@pytest.mark.slow
def test_tgp_kd_retrains_with_the_joint_objective(tmp_path, monkeypatch):
    seen = []
    real = RunContext.train

    def spy(self, model, recipe, *, phase, **kw):
        if phase == "retrain":
            seen.append(kw.get("objective"))
        return real(self, model, recipe, phase=phase, **kw)

    monkeypatch.setattr(RunContext, "train", spy)
    histories = {}
    for name in ("tgp", "tgp-kd"):
        spec = expand_grid(from_dict(Config, {**TINY, "grid": {"methods": [name], "sparsities": [0.9], "seeds": [0]}}),
                           "cpu")[0]
        data = load_dataset(spec.config.dataset, tmp_path, "cpu")
        ctx = RunContext(spec.config, data, torch.device("cpu"), Artifacts(tmp_path / "cache"), quiet)
        out = registry.get(name).run(ctx)
        histories[name] = out.result.history[0]["train_loss"]
    assert seen[0] is None and isinstance(seen[1], Distillation)
    assert histories["tgp"] != pytest.approx(histories["tgp-kd"], rel=1e-3)
