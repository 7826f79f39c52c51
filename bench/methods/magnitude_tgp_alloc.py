"""Control, allocation against selection (2 of 2): ``tgp``'s layer budgets, |w| inside them.

The network is ``tgp``'s own fine-tuned student (cached). ``tgp``'s global ranking by its
teacher-guided importance at this run's sparsity fixes how many weights each layer loses; inside each
layer, that many are removed by magnitude (lowest |w| first). Retraining as ``tgp``. Against ``tgp``
only the choice inside layers differs (as in ``random-layerwise``, with |w| instead of chance);
see ``tgp-magnitude-alloc`` for the other half.
"""
from ..context import Outcome
from . import random_layerwise, tgp

NAME = "magnitude-tgp-alloc"
VERSION = 1
PRUNES = True
SECTIONS = tgp.SECTIONS


def run(ctx) -> Outcome:
    ctx.pair_with("tgp")
    model, scores, _ = tgp.teacher_guided_scores(ctx)
    masks = ctx.masks(model)
    with ctx.phase("prune"):
        counts = random_layerwise.global_mask(ctx, model, scores).pruned_per_layer()
        masks.prune_per_layer([p.detach().abs() for p in masks.params], counts)
    result = ctx.train(model, ctx.cfg.retrain, phase="retrain", masks=masks)
    return Outcome(model=model, result=result, masks=masks)


plan = random_layerwise.plan
