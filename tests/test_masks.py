"""Mask mechanism, exact-count global selection and sparsity accounting."""
import pytest
import torch

from bench.config import AugmentConfig, DatasetConfig, RuntimeConfig, TrainConfig, from_dict
from bench.data import load_dataset
from bench.engine import PhaseTimer, train
from bench.masks import Masks, sparsity_stats
from bench.models import build_model


def test_resnet18_weight_counts_match_the_paper_notes():
    model = build_model("resnet18", 10)
    masks = Masks(model)
    assert masks.numel == 11_159_232  # conv weights (docs/method.md, Sparsity arithmetic)
    assert len(masks.params) == 20    # 17 3x3/stem convs + 3 shortcut 1x1 convs
    stats = sparsity_stats(model)
    assert stats["overall_weights"] == 11_169_152  # conv + linear + BN gamma


@pytest.mark.slow
@pytest.mark.parametrize("classes, overall", [(10, 98.41), (100, 98.01), (200, 97.56)])
def test_conv_sparsity_0985_reports_the_papers_overall_figure(classes, overall):
    model = build_model("resnet18", classes)
    masks = Masks(model)
    gen = torch.Generator().manual_seed(0)
    masks.prune_global([torch.rand(p.shape, generator=gen) for p in masks.params], 0.985)
    stats = sparsity_stats(model)
    assert round(100 * stats["sparsity_overall"], 2) == overall
    assert abs(stats["sparsity_prunable"] - 0.985) < 1e-6


def small_model():
    torch.manual_seed(0)
    return build_model("resnet_small", 10)


@pytest.mark.parametrize("sparsity", [0.0, 0.3, 0.9, 0.985, 0.999])
def test_global_selection_removes_exactly_k(sparsity):
    model = small_model()
    masks = Masks(model)
    n = masks.numel
    removed = masks.prune_global([p.detach().abs() for p in masks.params], sparsity)
    assert removed == round(sparsity * n)
    assert sum(int((m == 0).sum()) for m in masks.masks) == round(sparsity * n)
    assert sum(int((p == 0).sum()) for p in masks.params) >= round(sparsity * n)


def test_selection_with_ties_is_exact_and_deterministic():
    model = small_model()
    masks = Masks(model)
    scores = [torch.ones_like(p) for p in masks.params]   # every score tied
    masks.prune_global(scores, 0.5)
    first = [m.clone() for m in masks.masks]
    assert sum(int((m == 0).sum()) for m in first) == round(0.5 * masks.numel)
    other = Masks(small_model())
    other.prune_global(scores, 0.5)
    assert all(torch.equal(a, b) for a, b in zip(first, other.masks))


def test_selection_is_global_not_per_layer():
    model = small_model()
    masks = Masks(model)
    # Give the first tensor the lowest scores: a global ranking takes it all before the others.
    scores = [torch.full_like(p, float(i + 1)) for i, p in enumerate(masks.params)]
    k = masks.params[0].numel()
    masks.prune_global(scores, k / masks.numel)
    assert int(masks.masks[0].sum()) == 0
    assert all(bool(m.all()) for m in masks.masks[1:])


def test_pruned_weights_stay_pruned_and_cannot_be_unpruned():
    model = small_model()
    masks = Masks(model)
    masks.prune_global([p.detach().abs() for p in masks.params], 0.5)
    before = [m.clone() for m in masks.masks]
    # Scores that would favour the pruned weights: they must still stay pruned.
    masks.prune_global([1 / (p.detach().abs() + 1e-3) for p in masks.params], 0.7)
    assert all(bool(((b == 0) <= (a == 0)).all()) for a, b in zip(masks.masks, before))
    with pytest.raises(ValueError, match="never revived"):
        masks.prune_global([p.detach().abs() for p in masks.params], 0.6)


def test_bad_scores_are_rejected():
    masks = Masks(small_model())
    with pytest.raises(ValueError, match="sparsity must be in"):
        masks.prune_global([p.abs() for p in masks.params], 1.0)
    with pytest.raises(ValueError, match="expected"):
        masks.prune_global([masks.params[0]], 0.5)
    bad = [p.detach().abs() for p in masks.params]
    bad[0] = bad[0].clone()
    bad[0].view(-1)[0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        masks.prune_global(bad, 0.5)


@pytest.mark.slow
def test_masked_weights_stay_exactly_zero_through_sgd_with_momentum_and_weight_decay():
    data = load_dataset(from_dict(DatasetConfig, {"name": "synthetic", "synthetic": {"train_size": 256, "test_size": 64}}),
                        "unused", "cpu")
    model = small_model()
    masks = Masks(model)
    masks.prune_global([p.detach().abs() for p in masks.params], 0.9)
    pruned = [m == 0 for m in masks.masks]
    recipe = TrainConfig(epochs=8, batch_size=32, lr=0.2, momentum=0.9, nesterov=True, weight_decay=5e-3,
                         warmup_epochs=0, schedule="constant", milestones=[])
    train(model, data, recipe, runtime=RuntimeConfig(device="cpu"), timer=PhaseTimer(torch.device("cpu")),
          seed=0, augment=AugmentConfig(), masks=masks, log=lambda s: None)   # 64 optimizer steps
    for p, z in zip(masks.params, pruned):
        assert torch.count_nonzero(p[z]) == 0
        assert torch.count_nonzero(p[~z]) >= 0.9 * int((~z).sum())  # the rest did train
    assert abs(sparsity_stats(model)["sparsity_prunable"] - 0.9) < 1 / masks.numel + 1e-9


def test_mask_state_round_trip():
    model = small_model()
    masks = Masks(model)
    masks.prune_global([p.detach().abs() for p in masks.params], 0.8)
    state = masks.state_dict()
    other = Masks(small_model())
    other.load_state_dict(state)
    assert all(torch.equal(a, b) for a, b in zip(masks.masks, other.masks))


# --------------------------------------------------------------------------- operations the baselines need

def test_every_sparsity_definition_on_resnet18():
    """Counts from docs/baselines.md (sparsity definitions): 10,987,200 ReLU-paired convs,
    172,032 in 1x1 shortcuts, 5,120 linear weights for 10 classes."""
    model = build_model("resnet18", 10)
    assert Masks(model, "conv-noshortcut").numel == 10_987_200
    assert Masks(model, "conv+linear").numel == 11_159_232 + 5_120
    masks = Masks(model, "conv")
    shortcut = [n for n in masks.names if "shortcut" in n]
    zero = {n: torch.zeros_like(m) if n in shortcut else m for n, m in zip(masks.names, masks.masks)}
    masks.masks = [zero[n] for n in masks.names]
    masks.apply()
    s = sparsity_stats(model)["sparsity"]
    assert s["conv"] == pytest.approx(172_032 / 11_159_232)
    assert s["conv-noshortcut"] == 0.0
    assert s["conv+linear"] == pytest.approx(172_032 / (11_159_232 + 5_120))
    assert s["overall"] == pytest.approx(172_032 / 11_169_152)
    assert s["prunable"] == s["conv"]


def test_intersection_keeps_only_weights_both_keep():
    a, b = Masks(small_model()), Masks(small_model())
    gen = torch.Generator().manual_seed(1)
    a.prune_global([torch.rand(p.shape, generator=gen) for p in a.params], 0.5)
    b.prune_global([torch.rand(p.shape, generator=gen) for p in b.params], 0.5)
    expected = [x * y for x, y in zip(a.masks, b.masks)]
    a.intersect_(b)
    assert all(torch.equal(m, e) for m, e in zip(a.masks, expected))
    assert all(torch.count_nonzero(p.detach()[m == 0]) == 0 for p, m in zip(a.params, a.masks))
    assert 0.5 < a.sparsity() < 1


def test_per_layer_pruning_removes_given_counts_of_remaining_weights():
    masks = Masks(small_model())
    scores = [p.detach().abs() for p in masks.params]
    first, last = masks.names[0], masks.names[-1]
    assert masks.prune_per_layer(scores, {first: 100, last: 7}) == 107
    assert masks.pruned_per_layer()[first] == 100 and masks.pruned_per_layer()[last] == 7
    # Again: counts apply to what remains; the 100 already pruned stay pruned.
    masks.prune_per_layer(scores, {first: 10})
    assert masks.pruned_per_layer()[first] == 110
    kept = masks.params[0].detach()[masks.masks[0] > 0].abs().min()
    gone = scores[0][masks.masks[0] == 0].max()
    assert kept >= gone                                # the lowest scores went first
    with pytest.raises(ValueError, match="cannot remove"):
        masks.prune_per_layer(scores, {last: 10**9})
    with pytest.raises(ValueError, match="outside the prunable set"):
        masks.prune_per_layer(scores, {"linear.weight": 1})


def test_mask_moves_between_models_by_tensor_name():
    """COLT trains a ticket with a new head: the conv mask moves to a model with another head size."""
    src = Masks(build_model("resnet_small", 5))
    src.prune_global([p.detach().abs() for p in src.params], 0.7)
    dst_model = build_model("resnet_small", 10)
    dst = Masks(dst_model)
    dst.copy_from(src)
    assert all(torch.equal(a, b) for a, b in zip(src.masks, dst.masks))
    assert all(torch.count_nonzero(p.detach()[m == 0]) == 0 for p, m in zip(dst.params, dst.masks))
    with pytest.raises(ValueError, match="no tensor"):
        Masks(build_model("resnet18", 10)).copy_from(src)


def test_relus_are_modules_that_hooks_can_read():
    model = build_model("resnet_small", 10).eval()
    relus = [n for n, m in model.named_modules() if isinstance(m, torch.nn.ReLU)]
    assert relus[:3] == ["relu", "layer1.0.relu1", "layer1.0.relu2"] and len(relus) == 1 + 2 * 4
    seen = {}
    hooks = [m.register_forward_hook(lambda mod, i, o, n=n: seen.__setitem__(n, o.shape))
             for n, m in model.named_modules() if isinstance(m, torch.nn.ReLU)]
    model(torch.randn(2, 3, 16, 16))
    for h in hooks:
        h.remove()
    assert set(seen) == set(relus)
