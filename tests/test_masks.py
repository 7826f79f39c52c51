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
    assert masks.numel == 11_159_232  # conv weights, shared/research/paper.md 2.2
    assert len(masks.params) == 20    # 17 3x3/stem convs + 3 shortcut 1x1 convs
    stats = sparsity_stats(model)
    assert stats["overall_weights"] == 11_169_152  # conv + linear + BN gamma


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
