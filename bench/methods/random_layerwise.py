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


def run(ctx) -> Outcome:
    ctx.pair_with("tgp")
    model, scores, _ = tgp.teacher_guided_scores(ctx)
    masks = ctx.masks(model)
    with ctx.phase("prune"):
        counts = global_mask(ctx, model, scores).pruned_per_layer()
        gen = torch.Generator(device=ctx.device).manual_seed(ctx.seed_for("random-layerwise-scores"))
        masks.prune_per_layer([torch.rand(p.shape, generator=gen, device=ctx.device) for p in masks.params], counts)
    result = ctx.train(model, ctx.cfg.retrain, phase="retrain", masks=masks)
    return Outcome(model=model, result=result, masks=masks)


def plan(cfg) -> list[P.Work]:
    P.prunable_fraction(cfg, cfg.prune.layers)
    return [*tgp.plan_scores(cfg), P.training(cfg, cfg.retrain, "retrain")]
