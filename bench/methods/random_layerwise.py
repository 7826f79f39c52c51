"""Control: ``tgp``'s per-layer allocation, with the weights inside each layer chosen at random.

``tgp``'s mask for this seed and sparsity is computed from its cached importance (global
ranking), and only its count of pruned weights per layer is kept; inside each layer that many
weights are removed at random (seeded). The network pruned and retrained (cross-entropy, like
``tgp``) is ``tgp``'s own fine-tuned student, so against ``tgp`` only the choice of weights inside
each layer differs: is the layer allocation or the ranking within layers doing the work?
"""
import copy

import torch

from .. import plan as P
from ..context import Outcome
from ..masks import Masks
from . import tgp

NAME = "random-layerwise"
VERSION = 1
PRUNES = True
SECTIONS = tgp.SECTIONS


def global_mask(ctx, model, scores) -> Masks:
    """The mask a global ranking by ``scores`` (``tgp``'s importance, or |w|) prunes ``model`` with at this
    run's sparsity (made on a copy: ``model`` is untouched)."""
    work = copy.deepcopy(model)
    masks = ctx.masks(work)
    ctx.prune_global(masks, work, scores)
    return masks


def layer_budget_run(ctx, allocate, select) -> Outcome:
    """``tgp``'s fine-tuned student (cached) pruned in two halves: the per-layer counts of a global ranking
    by ``allocate(masks, tgp_scores)``, and inside each layer by ``select(masks, tgp_scores)``; then retrained
    as ``tgp``. Shared by this control and the two allocation hybrids (tgp_magnitude_alloc.py and
    magnitude_tgp_alloc.py), which differ only in the two rankings."""
    ctx.pair_with("tgp")
    model, scores, _ = tgp.teacher_guided_scores(ctx)
    masks = ctx.masks(model)
    with ctx.phase("prune"):
        counts = global_mask(ctx, model, allocate(masks, scores)).pruned_per_layer()
        masks.prune_per_layer(select(masks, scores), counts)
    result = ctx.train(model, ctx.cfg.retrain, phase="retrain", masks=masks)
    return Outcome(model=model, result=result, masks=masks)


def magnitude(masks, _scores) -> list[torch.Tensor]:
    return [p.detach().abs() for p in masks.params]


def teacher_guided(_masks, scores) -> list[torch.Tensor]:
    return scores


def chance(ctx):
    """Seeded random scores (the generator drawn after the counts, as this control always has)."""
    def draw(masks, _scores):
        gen = torch.Generator(device=ctx.device).manual_seed(ctx.seed_for("random-layerwise-scores"))
        return [torch.rand(p.shape, generator=gen, device=ctx.device) for p in masks.params]
    return draw


def run(ctx) -> Outcome:
    return layer_budget_run(ctx, teacher_guided, chance(ctx))


def plan(cfg) -> list[P.Work]:
    P.prunable_fraction(cfg, cfg.prune.layers)
    return [*tgp.plan_scores(cfg), P.training(cfg, cfg.retrain, "retrain")]
