"""The three self-distillation objectives (baselines/selfdistill.py) against hand-computed values,
their state across steps and epochs, and the exact round trip of that state."""
import dataclasses
import io
import math
import types

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from baselines import selfdistill as sd
from bench import budget as B
from bench import engine
from bench.config import Config, TrainConfig, from_dict
from bench.context import Artifacts, RunContext
from bench.data import load_dataset
from bench.engine import PhaseTimer
from bench.models import build_model

from conftest import quiet
from tiny import TINY


# --------------------------------------------------------------------------- hand-computed maths

def softmax(v, t=1.0):
    e = [math.exp(a / t) for a in v]
    return [a / sum(e) for a in e]


def kl(p, q):
    return sum(a * (math.log(a) - math.log(b)) for a, b in zip(p, q))


def ce(z, y, target=None):
    p = softmax(z)
    target = target or [1.0 if c == y else 0.0 for c in range(len(z))]
    return -sum(t * math.log(pc) for t, pc in zip(target, p))


Z = [[1.0, 0.0, -1.0], [0.5, 2.0, 0.0]]
ZP = [[0.0, 2.0, 0.0], [1.0, 1.0, -2.0]]
Y = [0, 1]


def test_cskd_loss_is_ce_plus_t2_kl_partner_to_anchor():
    T, lam = 4.0, 1.0
    want = sum(ce(z, y) + lam * T ** 2 * kl(softmax(zp, T), softmax(z, T)) for z, zp, y in zip(Z, ZP, Y)) / 2
    reverse = sum(ce(z, y) + lam * T ** 2 * kl(softmax(z, T), softmax(zp, T)) for z, zp, y in zip(Z, ZP, Y)) / 2
    assert abs(want - reverse) > 1e-3                      # the direction is observable on these numbers
    got = sd.cskd_loss(torch.tensor(Z), torch.tensor(ZP), torch.tensor(Y), T, lam)
    assert got.item() == pytest.approx(want, rel=1e-6)
    # lambda and the T^2 factor: the KL part scales with lam * T^2.
    plain = sd.cskd_loss(torch.tensor(Z), torch.tensor(ZP), torch.tensor(Y), T, 0.0).item()
    kl_mean = sum(kl(softmax(zp, T), softmax(z, T)) for z, zp in zip(Z, ZP)) / 2
    assert plain == pytest.approx(sum(ce(z, y) for z, y in zip(Z, Y)) / 2, rel=1e-6)
    assert sd.cskd_loss(torch.tensor(Z), torch.tensor(ZP), torch.tensor(Y), T, 0.5).item() - plain == \
        pytest.approx(0.5 * 16 * kl_mean, rel=1e-5)


def test_dlb_loss_averages_ce_over_both_batches_and_kl_over_the_previous_one():
    T, alpha = 3.0, 1.0
    z_now = [[0.2, -0.3, 1.0]]                 # previous batch (B' = 1), new view, current weights
    z_then = [[1.5, 0.0, -0.5]]                # its logits one step ago (the target)
    ce_all = (ce(z_now[0], 2) + ce(Z[0], Y[0]) + ce(Z[1], Y[1])) / 3
    want = ce_all + alpha * T ** 2 * kl(softmax(z_then[0], T), softmax(z_now[0], T))
    reverse = ce_all + alpha * T ** 2 * kl(softmax(z_now[0], T), softmax(z_then[0], T))
    assert abs(want - reverse) > 1e-3
    got = sd.dlb_loss(torch.tensor(z_now), torch.tensor(Z), torch.tensor([2]), torch.tensor(Y),
                      torch.tensor(z_then), T, alpha)
    assert got.item() == pytest.approx(want, rel=1e-6)


class FixedLogits(nn.Module):
    """A 'model' whose output is a given logits tensor, whatever the input."""

    def __init__(self, logits):
        super().__init__()
        self.logits = nn.Parameter(torch.tensor(logits))

    def forward(self, x):
        return self.logits * 1.0


def test_pskd_target_is_one_hot_at_epoch_0_and_uses_alpha_T_at_the_last_epoch():
    data = types.SimpleNamespace(train_y=torch.zeros(5, dtype=torch.long), num_classes=3, device=torch.device("cpu"))
    obj = sd.PSKD(data, sd.PSKDConfig(alpha_T=0.8))
    batch = types.SimpleNamespace(x=torch.zeros(2, 1), y=torch.tensor(Y), idx=torch.tensor([3, 1]))
    E = 5
    obj.start_epoch(0, E)
    loss, _ = obj(FixedLogits(Z), batch)
    assert loss.item() == pytest.approx(sum(ce(z, y) for z, y in zip(Z, Y)) / 2, rel=1e-6)   # plain CE
    assert torch.allclose(obj.memory[[3, 1]], torch.tensor([softmax(z) for z in Z]))
    assert obj.memory[[0, 2, 4]].abs().sum() == 0                                      # other rows untouched
    obj.start_epoch(2, E)
    assert obj.alpha == pytest.approx(0.8 * 3 / 5)                                      # alpha_T (t+1)/E
    obj.start_epoch(E - 1, E)
    assert obj.alpha == pytest.approx(0.8)
    z2 = [[0.0, 0.3, 0.1], [-1.0, 0.0, 1.0]]
    loss, _ = obj(FixedLogits(z2), batch)
    want = 0.0
    for z, zp, y in zip(z2, Z, Y):
        target = [0.2 * (c == y) + 0.8 * p for c, p in enumerate(softmax(zp))]
        want += ce(z, y, target) / 2
    assert loss.item() == pytest.approx(want, rel=1e-6)
    assert torch.allclose(obj.memory[[3, 1]], torch.tensor([softmax(z) for z in z2]))


# --------------------------------------------------------------------------- objectives on real batches

@pytest.fixture(scope="module")
def tiny():
    cfg = from_dict(Config, TINY)
    data = load_dataset(cfg.dataset, "/nonexistent", "cpu")
    return cfg, data


def _batches(cfg, data, bs=32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return data.train_batches(bs, cfg.dataset.augment, gen)


def test_cskd_partner_is_always_of_the_anchor_class_and_self_is_allowed(tiny):
    cfg, data = tiny
    obj = sd.CSKD(data, cfg.dataset.augment, sd.CSKDConfig(), seed=0)
    anchors = torch.arange(len(data.train_y)).repeat(20)
    pairs = obj.partners(data.train_y[anchors], obj.gen)
    assert torch.equal(data.train_y[pairs], data.train_y[anchors])
    assert (pairs == anchors).any() and (pairs != anchors).float().mean() > 0.9
    for c in range(data.num_classes):            # draws cover (almost) the whole class
        members = (data.train_y == c).sum()
        assert len(pairs[data.train_y[anchors] == c].unique()) > 0.9 * members


def test_cskd_objective_distils_from_a_reaugmented_partner_and_counts_bn_as_configured(tiny):
    cfg, data = tiny
    batch = next(_batches(cfg, data))
    for updates, per_step in ((True, 2), (False, 1)):
        torch.manual_seed(0)
        model = build_model("resnet_small", data.num_classes)
        obj = sd.CSKD(data, cfg.dataset.augment, sd.CSKDConfig(partner_updates_bn=updates), seed=3)
        replay = torch.Generator().manual_seed(3)
        loss, z = obj(model, batch)
        assert int(model.bn1.num_batches_tracked) == per_step
        x_partner = obj.partner_view(batch.y, replay)
        with torch.no_grad():
            want = sd.cskd_loss(model(batch.x), model(x_partner), batch.y, 4.0, 1.0)
        assert loss.item() == pytest.approx(want.item(), rel=1e-5)
        assert z.requires_grad


def test_dlb_first_step_is_plain_ce_then_it_distils_the_previous_batch(tiny):
    cfg, data = tiny
    torch.manual_seed(0)
    model = build_model("resnet_small", data.num_classes)
    obj = sd.DLB(data, cfg.dataset.augment, sd.DLBConfig(), seed=5)
    batches = _batches(cfg, data)
    b1, b2 = next(batches), next(batches)
    loss1, z1 = obj(model, b1)
    assert int(model.bn1.num_batches_tracked) == 1
    with torch.no_grad():
        assert loss1.item() == pytest.approx(F.cross_entropy(model(b1.x), b1.y).item(), rel=1e-6)
    state, tracked = obj.gen.get_state(), int(model.bn1.num_batches_tracked)
    loss2, z2 = obj(model, b2)
    assert int(model.bn1.num_batches_tracked) == tracked + 2   # two forward passes, both update BN
    replay = torch.Generator()
    replay.set_state(state)
    with torch.no_grad():
        x_prev = data.train_view(b1.idx, cfg.dataset.augment, replay)
        want = sd.dlb_loss(model(x_prev), model(b2.x), b1.y, b2.y, z1.detach(), 3.0, 1.0)
    assert loss2.item() == pytest.approx(want.item(), rel=1e-5)
    assert torch.equal(obj.prev[0], b2.idx) and torch.equal(obj.prev[2], z2.detach())


def test_dlb_carries_the_previous_batch_across_epochs(tiny):
    cfg, data = tiny

    class Spy(sd.DLB):
        def __call__(self, model, batch):
            self.first.append(self.prev is None)
            return super().__call__(model, batch)

    obj = Spy(data, cfg.dataset.augment, sd.DLBConfig(second_view_updates_bn=False), seed=0)
    obj.first = []
    recipe = TrainConfig(epochs=2, batch_size=100, lr=0.05, warmup_epochs=0, schedule="constant", milestones=[],
                         drop_last=False)
    engine.train(build_model("resnet_small", data.num_classes), data, recipe, runtime=cfg.runtime,
                 timer=PhaseTimer(torch.device("cpu")), seed=0, augment=cfg.dataset.augment, objective=obj, log=quiet)
    assert obj.first == [True] + [False] * 5                   # 3 steps per epoch, plain CE once in the run


def test_pskd_memory_row_of_every_sample_changes_every_epoch(tiny):
    cfg, data = tiny
    ctx = RunContext(cfg, data, torch.device("cpu"), Artifacts("/nonexistent"), quiet)
    recipe = sd.recipe(ctx, "pskd")
    assert cfg.retrain.drop_last and not recipe.drop_last       # matched budget, yet no tail dropped
    recipe = dataclasses.replace(recipe, epochs=3, batch_size=100)
    obj = sd.PSKD(data, cfg.pskd)
    snaps = []
    real = obj.start_epoch

    def spy(epoch, epochs):
        snaps.append(obj.memory.clone())
        real(epoch, epochs)

    obj.start_epoch = spy
    engine.train(build_model("resnet_small", data.num_classes), data, recipe, runtime=cfg.runtime,
                 timer=PhaseTimer(torch.device("cpu")), seed=0, augment=cfg.dataset.augment, objective=obj, log=quiet)
    snaps.append(obj.memory.clone())
    for before, after in zip(snaps, snaps[1:]):
        assert (before != after).any(dim=1).all()
    assert torch.allclose(snaps[-1].sum(1), torch.ones(len(data.train_y)))    # rows are softmax outputs


def test_budget_bases_pick_the_official_the_stretched_or_the_retrain_recipe(tiny):
    _, data = tiny
    n = len(data.train_y)                    # 256 images; the tiny pipeline: 3 + 1 + 1 epochs of batch 64
    for basis in ("official", "retrain-matched", "equal"):
        cfg = from_dict(Config, {**TINY, "budget": {"basis": basis}})
        ctx = RunContext(cfg, data, torch.device("cpu"), Artifacts("/nonexistent"), quiet)
        got = {m: sd.recipe(ctx, m) for m in ("cskd", "pskd", "dlb")}
        if basis == "official":
            assert (got["cskd"].epochs, got["cskd"].milestones, got["cskd"].weight_decay, got["cskd"].nesterov) == \
                (200, [101, 151], 1e-4, False)
            assert (got["pskd"].epochs, got["pskd"].milestones, got["pskd"].nesterov) == (300, [150, 225], True)
            assert (got["dlb"].epochs, got["dlb"].batch_size, got["dlb"].lr, got["dlb"].milestones) == \
                (240, 64, 0.05, [150, 180, 210])
        elif basis == "retrain-matched":
            assert got["cskd"] == cfg.retrain and got["dlb"] == cfg.retrain
            assert got["pskd"].epochs == cfg.retrain.epochs
        else:
            # the official recipes stretched to the pipeline's 5 full-data epochs: the milestones scale,
            # the learning rate, batch and optimizer stay the method's own
            assert B.reference_epochs(cfg, n) == 5
            assert (got["cskd"].epochs, got["cskd"].milestones, got["cskd"].lr) == (5, [3, 4], 0.1)
            assert (got["pskd"].epochs, got["pskd"].milestones, got["pskd"].nesterov) == (5, [2, 4], True)
            assert (got["dlb"].epochs, got["dlb"].batch_size, got["dlb"].milestones) == (5, 64, [3, 4, 5])
            for r in got.values():
                assert abs(B.full_data_epochs(r, n) / B.reference_epochs(cfg, n) - 1) <= B.SLACK


def test_stretch_scales_milestones_and_warmup_and_keeps_them_increasing():
    r = TrainConfig(epochs=200, milestones=[101, 151], warmup_epochs=10.0)
    s = B.stretch(r, 26)
    assert (s.epochs, s.milestones, s.warmup_epochs) == (26, [13, 20], 1.3)
    tight = B.stretch(TrainConfig(epochs=240, milestones=[150, 180, 210], warmup_epochs=0), 2)
    assert tight.milestones == [1, 2, 3] and tight.epochs == 2     # never merged, never below 1
    assert B.stretch(r, 200) is r


def test_equal_budget_counts_dropped_batches():
    # 1,000 images at batch 128 with the last partial batch dropped: 896 a full-data epoch's 1,000
    cfg = from_dict(Config, {**TINY, "budget": {"basis": "equal"},
                             "pretrain": {**TINY["pretrain"], "epochs": 10, "batch_size": 128},
                             "retrain": {**TINY["retrain"], "epochs": 10, "batch_size": 128},
                             "tgp": {"finetune": {**TINY["tgp"]["finetune"], "epochs": 6, "batch_size": 128}}})
    ref = B.reference_epochs(cfg, 1000)
    assert ref == pytest.approx(26 * 896 / 1000)
    own = TrainConfig(epochs=200, batch_size=128, milestones=[100], drop_last=False)
    r = B.equal_recipe(cfg, own, 1000)
    assert r.epochs == 23 and abs(B.full_data_epochs(r, 1000) / ref - 1) <= B.SLACK


# --------------------------------------------------------------------------- state round trip

def _objectives(cfg, data):
    return {"cskd": lambda: sd.CSKD(data, cfg.dataset.augment, cfg.cskd, seed=7),
            "pskd": lambda: sd.PSKD(data, cfg.pskd),
            "dlb": lambda: sd.DLB(data, cfg.dataset.augment, cfg.dlb, seed=7)}


@pytest.mark.parametrize("name", ["cskd", "pskd", "dlb"])
def test_objective_state_round_trip_is_exact(tiny, name):
    """A run resumed from an objective's state_dict (saved as a checkpoint would be) continues
    exactly as the uninterrupted run does: same losses, same state after."""
    cfg, data = tiny
    make = _objectives(cfg, data)[name]
    torch.manual_seed(0)
    model = build_model("resnet_small", data.num_classes)
    a = make()
    batches = list(_batches(cfg, data, bs=64))
    a.start_epoch(0, 3)
    for b in batches:
        a(model, b)
    a.start_epoch(1, 3)
    a(model, batches[0])
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    b_obj = make()
    b_obj.load_state_dict(torch.load(buf, weights_only=True))
    snapshot = {k: v for k, v in model.state_dict().items()}
    model_b = build_model("resnet_small", data.num_classes)
    model_b.load_state_dict({k: v.clone() for k, v in snapshot.items()})
    for b in batches[1:]:
        la, _ = a(model, b)
        lb, _ = b_obj(model_b, b)
        assert torch.equal(la, lb)

    def flat(state):
        out = []
        for v in state.values():
            if isinstance(v, tuple):
                out += list(v)
            else:
                out.append(v)
        return out

    for x, y in zip(flat(a.state_dict()), flat(b_obj.state_dict())):
        assert torch.equal(x, y) if torch.is_tensor(x) else x == y
