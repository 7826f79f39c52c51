"""The iterative baselines: COLT (class-split rounds with rewinding and mask intersection) and EGP
(entropy-guided per-layer allocation), their cached chains of rounds, and their records."""
import copy
import math
import types

import pytest
import torch

from baselines import colt, egp
from bench.config import Config, ConfigError, from_dict
from bench.data import load_dataset
from bench.masks import Masks
from bench.models import build_model
from bench.runner import run_grid
from bench.store import load_runs

from conftest import quiet
from tiny import TINY

TINY_ROUND = {"epochs": 1, "batch_size": 64, "lr": 0.02, "warmup_epochs": 0, "schedule": "constant", "milestones": []}
ITERATIVE = {**TINY,
             "colt": {"train": TINY_ROUND},
             "egp": {"dense": {**TINY_ROUND, "epochs": 2, "lr": 0.05}, "finetune": TINY_ROUND,
                     "augment": {"crop_padding": 1}, "entropy_batch_size": 64}}


# --------------------------------------------------------------------------- COLT

def test_colt_class_split_is_contiguous_and_relabelled(tmp_path):
    data = load_dataset(from_dict(Config, TINY).dataset, tmp_path, "cpu")      # 4 classes
    parts = colt.partitions(data, 2)
    for j, part in enumerate(parts):
        assert part.num_classes == 2 and part.info["classes"] == [2 * j, 2 * j + 1]
        for x, y, xs, ys in ((part.train_x, part.train_y, data.train_x, data.train_y),
                             (part.test_x, part.test_y, data.test_x, data.test_y)):
            keep = (ys // 2) == j                           # classes 2j, 2j+1 -> labels 0, 1
            assert torch.equal(y, ys[keep] - 2 * j) and torch.equal(x, xs[keep])
    with pytest.raises(ValueError, match="4 classes cannot be split into colt.partitions=3"):
        colt.partitions(data, 3)


def _expected_mask(w: list[torch.Tensor], keep: list[torch.Tensor], k: int) -> torch.Tensor:
    """Flat mask after removing the k smallest |w| among the kept weights (an independent reference)."""
    flat_w = torch.cat([x.abs().flatten() for x in w])
    flat_keep = torch.cat([m.flatten() for m in keep]) > 0
    idx = torch.nonzero(flat_keep).flatten()
    drop = idx[torch.argsort(flat_w[idx], stable=True)[:k]]
    out = flat_keep.float()
    out[drop] = 0
    return out


def test_colt_round_prunes_rewinds_and_intersects():
    torch.manual_seed(0)
    init = build_model("resnet_small", 2)
    theta0 = {k: v.clone() for k, v in init.state_dict().items()}
    models = [copy.deepcopy(init) for _ in range(2)]
    masks = [Masks(m, "conv") for m in models]
    # A shared mask from an earlier round, and two differently "trained" models (weights and BN stats).
    prev = torch.rand(masks[0].numel, generator=torch.Generator().manual_seed(1)) > 0.3
    for j, (m, mk) in enumerate(zip(models, masks)):
        with torch.no_grad():
            for p in m.parameters():
                p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(10 + j)) * 0.1)
            for b in m.buffers():
                if b.dtype.is_floating_point:
                    b.add_(1.0 + j)
        mk._set_flat(prev.float())
    stats = [{k: v.clone() for k, v in m.state_dict().items() if "running" in k} for m in models]
    remaining = int(prev.sum())
    expected = [_expected_mask([p.detach() for p in mk.params], mk.masks, round(0.15 * remaining)) for mk in masks]

    removed = colt.prune_round(models, masks, theta0, 0.15)

    assert removed == [round(0.15 * remaining)] * 2           # counted from each model's remaining weights
    both = expected[0] * expected[1]
    assert 0 < int((expected[0] != expected[1]).sum())        # the two models chose differently ...
    for m, mk, st in zip(models, masks, stats):
        flat = torch.cat([x.flatten() for x in mk.masks])
        assert torch.equal(flat, both)                        # ... and both keep only the AND
        w = torch.cat([p.detach().flatten() for p in mk.params])
        assert torch.count_nonzero(w[both == 0]) == 0         # every pruned weight is zero
        t0 = torch.cat([theta0[n].flatten() for n in mk.names])
        assert torch.equal(w[both > 0], t0[both > 0])         # every unpruned conv weight is theta0's
        for name, p in m.named_parameters():                  # so is every other parameter
            if name not in mk.names:
                assert torch.equal(p.detach(), theta0[name]), name
        for k, v in st.items():                               # BatchNorm running statistics are not rewound
            assert torch.equal(m.state_dict()[k], v) and not torch.equal(v, theta0[k])


def test_colt_count_rounds_half_to_even():
    model = build_model("resnet_small", 2)
    mk = Masks(model, "conv")
    keep = torch.zeros(mk.numel)
    keep[:30] = 1                                             # 30 remaining: 15% is 4.5, Python rounds to 4
    mk._set_flat(keep)
    other = Masks(copy.deepcopy(model), "conv")
    other._set_flat(keep)
    theta0 = {k: v.clone() for k, v in model.state_dict().items()}
    assert colt.prune_round([model, copy.deepcopy(model)], [mk, other], theta0, 0.15) == [4, 4]


def test_colt_final_round_count_lands_the_and_of_the_masks_on_the_target():
    """The truncated last round: the least per-model count whose AND of masks reaches the target,
    checked against pruning with that count and with one fewer."""
    from bench.masks import Target

    torch.manual_seed(0)
    init = build_model("resnet_small", 2)
    theta0 = {k: v.clone() for k, v in init.state_dict().items()}
    final = build_model("resnet_small", 4)
    target = Target(Masks(final, "conv"), final, 0.3, "overall")

    def trained():
        models = [copy.deepcopy(init) for _ in range(2)]
        for j, m in enumerate(models):
            with torch.no_grad():
                for p in m.parameters():
                    p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(10 + j)) * 0.1)
        return models, [Masks(m, "conv") for m in models]

    models, masks = trained()
    assert colt.final_round_count(masks, 0.15, target) is None          # a full round stays short of 30%
    k = colt.final_round_count(masks, 0.5, target)
    assert k is not None and 0 < k < round(0.5 * masks[0].numel)
    for count, reached in ((k, True), (k - 1, False)):
        models, masks = trained()
        colt.prune_round(models, masks, theta0, 0.5, count)
        assert (target.missing(masks[0]) <= 0) is reached
    models, masks = trained()
    colt.prune_round(models, masks, theta0, 0.5, k)
    assert -2 <= target.missing(masks[0]) <= 0                          # at most partitions - 1 weights past it


def test_colt_rate_is_any_fraction():
    with pytest.raises(ConfigError, match="colt.rate"):
        from_dict(Config, {"colt": {"rate": 1.0}})
    assert from_dict(Config, {"colt": {"rate": 0.2, "partitions": 3}}).colt.rate == 0.2


# --------------------------------------------------------------------------- EGP

def test_entropy_of_hand_made_activations():
    on = torch.ones(4, 1, 2, 2)
    half = torch.tensor([1.0, -1.0]).repeat(4, 1, 2, 1)             # (4, 1, 2, 2): on half the time
    quarter = torch.zeros(4, 1, 2, 2)
    quarter[0] = 1.0                                                        # on a quarter of the time
    off = -torch.ones(4, 1, 2, 2)
    assert float(egp.channel_entropy(half)) == pytest.approx(1.0)
    # Always-on and always-off channels are left out of the mean, not counted as zeros.
    assert float(egp.channel_entropy(torch.cat([half, on, off], 1))) == pytest.approx(1.0)
    h4 = -(0.25 * math.log2(0.25) + 0.75 * math.log2(0.75))
    assert float(egp.channel_entropy(torch.cat([half, quarter, on], 1))) == pytest.approx((1 + h4) / 2)
    assert float(egp.channel_entropy(torch.cat([on, off], 1))) == 0.0


def test_relu_hooks_score_the_intended_convs():
    model = build_model("resnet_small", 4)
    pairs = egp.relu_to_conv(model)
    assert pairs["relu"] == ["conv1.weight"]
    assert pairs["layer2.0.relu1"] == ["layer2.0.conv1.weight"] and pairs["layer2.0.relu2"] == ["layer2.0.conv2.weight"]
    assert sorted(c for v in pairs.values() for c in v) == sorted(Masks(model, "conv-noshortcut").names)
    # The variant with shortcuts: each 1x1 shortcut is scored by the ReLU after its block's add.
    with_sc = egp.relu_to_conv(model, shortcuts=True)
    assert with_sc["layer2.0.relu2"] == ["layer2.0.conv2.weight", "layer2.0.shortcut.0.weight"]
    assert sorted(c for v in with_sc.values() for c in v) == sorted(Masks(model, "conv").names)
    # Entropies through the hooks equal channel_entropy of the ReLU's output, averaged over batches.
    torch.manual_seed(0)
    xs = [torch.randn(8, 3, 8, 8) for _ in range(2)]
    batches = [types.SimpleNamespace(x=x) for x in xs]
    got = egp.layer_entropies(model, batches)
    assert model.training                                     # left in the mode it was in
    model.eval()                                              # measured in eval mode (running BN statistics)
    want = sum(float(egp.channel_entropy(torch.relu(model.bn1(model.conv1(x))))) for x in xs) / 2
    assert float(got["relu"]) == pytest.approx(want, rel=1e-6)


def test_allocation_caps_removes_and_redistributes():
    # Scores 1, 2, 4 (T = 7): h = T / S = 7, 3.5, 1.75, so the softmax gives layer a
    # 1050 / (1 + e^-3.5 + e^-5.25) = 1014.06 of the budget 0.5 x 2100 = 1050, more than its 100
    # weights: a is removed entirely (100), and B = 950, T = 6 are re-shared among b and c:
    # h = 3, 1.5 -> b gets 950 / (1 + e^-1.5) = 776.69, c 950 e^-1.5 / (1 + e^-1.5) = 173.31.
    scores = {n: torch.tensor(s, dtype=torch.float32) for n, s in (("a", 1.0), ("b", 2.0), ("c", 4.0))}
    counts = egp.allocate(scores, {"a": 100, "b": 1000, "c": 1000}, 0.5 * 2100)
    assert counts == {"a": 100, "b": 776, "c": 173}
    # Without a cap the first pass stands (a large enough layer a takes nearly everything).
    assert egp.allocate(scores, {"a": 5000, "b": 1000, "c": 1000}, 0.5 * 7000) == {"a": 3380, "b": 102, "c": 17}


def test_iteration_counts_skip_dead_layers_and_prune_whole_layers():
    torch.manual_seed(0)
    model = build_model("resnet_small", 4)
    masks = Masks(model, "conv-noshortcut")
    ent = {n: torch.tensor(0.5) for n in masks.names}
    ent[masks.names[1]] = torch.tensor(0.0)                  # zero entropy: not pruned this iteration
    with torch.no_grad():
        masks.params[0].mul_(1e-3)                           # tiny weights: lowest score, removed entirely
    counts, last = egp.iteration_counts(masks, ent, 0.5)
    assert not last and masks.names[1] not in counts and counts[masks.names[0]] == masks.params[0].numel()
    eligible = sum(p.numel() for n, p in zip(masks.names, masks.params) if n != masks.names[1])
    assert eligible // 2 - len(counts) <= sum(counts.values()) <= eligible // 2


def test_egp_last_iteration_budget_lands_on_the_target():
    from bench.masks import Target

    torch.manual_seed(0)
    model = build_model("resnet_small", 4)
    masks = Masks(model, "conv-noshortcut")
    ent = {n: torch.tensor(0.5 + 0.01 * i) for i, n in enumerate(masks.names)}
    far = Target(masks, model, 0.9, "overall")
    counts, last = egp.iteration_counts(masks, ent, 0.5, far)              # half the set: short of 90%
    assert not last
    near = Target(masks, model, 0.3, "overall")
    counts, last = egp.iteration_counts(masks, ent, 0.5, near)
    assert last
    masks.prune_per_layer([p.detach().abs() for p in masks.params], counts)
    assert 0 >= near.missing(masks) > -1 - len(masks.names)              # floors: within a weight per layer
    assert abs(near.realised(model, "conv-noshortcut") - 0.3) <= 0.0005


# --------------------------------------------------------------------------- end to end

KINDS = {"colt": "colt-round", "egp": "egp-round"}
TARGETS = {"colt": (0.1, 0.3), "egp": (0.6, 0.8)}       # overall; each target needs two or more rounds


@pytest.fixture(scope="module")
def chains(tmp_path_factory):
    """Each method run at a low then a high target in one results folder (exact last rounds), then at
    the high target with the official overshoot; the state COLT's final training starts from is kept."""
    from bench.context import RunContext

    out, seen = {}, {}
    real = RunContext.train

    def spy(self, model, recipe, *, phase, **kw):
        if phase == "retrain":
            seen["state"] = {k: v.clone() for k, v in model.state_dict().items()}
            seen["data"] = kw.get("data")
        return real(self, model, recipe, phase=phase, **kw)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(RunContext, "train", spy)
        for method, targets in TARGETS.items():
            root = tmp_path_factory.mktemp(method)
            made = []
            for sp, exact in ((targets[0], True), (targets[1], True), (targets[1], False)):
                cfg = from_dict(Config, {**ITERATIVE, method: {**ITERATIVE[method], "exact_final_round": exact},
                                         "grid": {"methods": [method], "sparsities": [sp], "seeds": [0]}})
                assert run_grid(cfg, root, root, log=quiet)["ok"] == 1
                made.append(len(list((root / "cache" / KINDS[method]).glob("*.pt"))))
                if method == "colt" and exact and sp == targets[1]:
                    out["colt-final"] = dict(seen)
            runs = sorted(load_runs(root), key=lambda r: (r["target_sparsity"], not r["sparsity_on_target"]))
            out[method] = (runs, made)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("method", ["colt", "egp"])
def test_chain_lands_each_target_and_shares_its_full_rounds(chains, method):
    (first, second, official), made = chains[method]
    n1, n2 = len(first["rounds"]), len(second["rounds"])
    start = 0 if method == "colt" else 1                     # COLT's round 0: the partition models' dense training
    assert n1 >= 2 and n2 > n1
    assert [x["round"] for x in second["rounds"]] == list(range(start, start + n2))
    # Full rounds are shared; each target's truncated last round is its own.
    assert [x["reused"] for x in second["rounds"]] == [True] * (n1 - 1) + [False] * (n2 - n1 + 1)
    assert [x["truncated"] for x in second["rounds"]] == [False] * (n2 - 1) + [True]
    assert made[:2] == [n1, n2 + 1]
    for rec in (first, second):
        assert rec["sparsity_measure"] == "overall" and rec["sparsity_on_target"] is True
        assert abs(rec["sparsity_realised"] - rec["target_sparsity"]) <= 0.0005
        assert rec["sparsity_realised"] == pytest.approx(rec["sparsity"]["overall"])
        assert rec["prunable_set"] == ("conv" if method == "colt" else "conv-noshortcut")
        realised = [x["sparsity"]["prunable"] for x in rec["rounds"]]
        assert realised == sorted(realised)
        for x in rec["rounds"]:
            assert x["seconds"] > 0 and rec["phases"][x["phase"]]["group"] == "score+prune"
            assert x["phase"] == f"round{x['round']:02d}" and set(x["sparsity"]) >= {"conv", "overall", "conv-noshortcut"}
        assert rec["extra"]["seconds_rounds"] == pytest.approx(sum(x["seconds"] for x in rec["rounds"]))
        assert rec["budget"]["student_epochs"] > 0 and rec["budget"]["teacher_epochs"] == 0
    # The official stopping rule: the first full round at or past the target, marked when off target.
    assert not any(x["truncated"] for x in official["rounds"])
    assert official["sparsity_realised"] >= official["target_sparsity"] - 0.0005
    assert official["sparsity_on_target"] is (abs(official["sparsity_realised"] - official["target_sparsity"]) <= 0.0005)
    if not official["sparsity_on_target"]:
        assert "exact_final_round: false" in official["off_target_reason"]
    assert [x["reused"] for x in official["rounds"][:n2 - 1]] == [True] * (n2 - 1)
    if method == "colt":
        assert all(len(x["pruned_per_model"]) == 2 for x in second["rounds"])
        assert second["phases"]["retrain"]["group"] == "retrain" and not second["phases"]["retrain"]["reused"]
        assert second["extra"]["seconds_rounds_plus_final"] == pytest.approx(
            second["extra"]["seconds_rounds"] + second["phases"]["retrain"]["seconds"])
        assert len(second["history"]) == ITERATIVE["retrain"]["epochs"]
        # Budget: each round trains two half-data partition models = one full-data epoch per round epoch.
        b = second["budget"]["phases"]
        assert b["round00"]["epochs"] == 2 * TINY_ROUND["epochs"]
        assert b["round00"]["full_data_epochs"] == pytest.approx(TINY_ROUND["epochs"], rel=0.05)
    else:
        assert second["phases"]["pretrain"]["reused"] and second["phases"]["pretrain"]["group"] == "pretrain"
        assert second["top1_final"] == second["rounds"][-1]["top1_final"]
        assert second["budget"]["phases"]["pretrain"]["epochs"] == 2 and second["budget"]["phases"]["pretrain"]["reused"]


@pytest.mark.slow
def test_colt_ticket_is_theta0_with_the_round_mask(chains):
    """The final model starts from theta0's convs and BatchNorm under the last round's mask, with a
    fresh C-way head, and trains on the full data."""
    (_, rec, _), _ = chains["colt"]
    seen = chains["colt-final"]
    torch.manual_seed(0)                                     # theta0: drawn from the run seed
    theta0 = build_model("resnet_small", 2).state_dict()
    state = seen["state"]
    assert seen["data"] is None and state["linear.weight"].shape[0] == 4
    zeros = 0
    for k, v in theta0.items():
        if k.startswith("linear."):
            continue
        if v.ndim == 4:                                       # conv weights: theta0 where kept
            kept = state[k] != 0
            assert torch.equal(state[k][kept], v[kept])
            zeros += int((~kept).sum())
        else:
            assert torch.equal(state[k], v), k
    conv = sum(v.numel() for v in theta0.values() if v.ndim == 4)
    assert zeros / conv == pytest.approx(rec["rounds"][-1]["sparsity"]["conv"])


@pytest.mark.slow
def test_rounds_figure_and_csv(chains, tmp_path):
    """The per-round figure and its CSV: every round of each chain, EGP on its own scale as well,
    minutes cumulative; the same records give the same bytes."""
    import csv

    from bench.report.figures import figure_style
    from bench.report.rounds import write_rounds

    runs = [r for m in ("colt", "egp") for r in chains[m][0][:2]]
    outs = []
    for name in ("a", "b"):
        with figure_style():
            paths = write_rounds(runs, "synthetic", "resnet_small", tmp_path / name / "synthetic_rounds", formats=("png",))
        outs.append({p.name: p.read_bytes() for p in paths})
    assert outs[0] == outs[1] and sorted(outs[0]) == ["synthetic_rounds.csv", "synthetic_rounds.png"]
    rows = list(csv.DictReader((tmp_path / "a" / "synthetic_rounds.csv").open()))
    for method in ("colt", "egp"):
        chain = chains[method][0][1]["rounds"]                 # the longer chain
        mine = [r for r in rows if r["method"] == method]
        assert [int(r["round"]) for r in mine] == [x["round"] for x in chain]
        cum = 0.0
        for r, x in zip(mine, chain):
            cum += x["seconds"] / 60
            assert float(r["cumulative_min"]) == pytest.approx(cum, abs=1e-5)
            assert float(r["sparsity_conv"]) == pytest.approx(x["sparsity"]["conv"], abs=1e-6)
            assert float(r["sparsity_prunable"]) == pytest.approx(x["sparsity"]["prunable"], abs=1e-6)
    egp_rows = [r for r in rows if r["method"] == "egp"]
    assert {r["prunable_set"] for r in egp_rows} == {"conv-noshortcut"}
    assert all(float(r["sparsity_prunable"]) > float(r["sparsity_conv"]) for r in egp_rows)   # dense shortcuts
    with figure_style():
        assert write_rounds(chains["colt"][0][0:0], "synthetic", None, tmp_path / "none") == []
