"""Control, allocation against selection (1 of 2): magnitude's layer budgets, ``tgp``'s choice inside them.

The network is ``tgp``'s own fine-tuned student (cached). A global |w| ranking of it at this run's
sparsity fixes how many weights each layer loses; inside each layer, that many are removed by ``tgp``'s
teacher-guided importance. Retraining as ``tgp`` (cross-entropy). Against ``tgp`` only the layer
allocation differs; against ``magnitude-tgp-alloc`` (tgp's budgets, |w| inside them) both halves are
swapped. With ``tgp`` and magnitude pruning of the same student these split tgp's difference from
magnitude into where it prunes and which weights it keeps (docs/method.md, "Controls").
"""
from ..context import Outcome
from . import random_layerwise, tgp

NAME = "tgp-magnitude-alloc"
VERSION = 1
PRUNES = True
SECTIONS = tgp.SECTIONS


def run(ctx) -> Outcome:
    ctx.pair_with("tgp")
    model, scores, _ = tgp.teacher_guided_scores(ctx)
    masks = ctx.masks(model)
    with ctx.phase("prune"):
        magnitude = [p.detach().abs() for p in masks.params]
        counts = random_layerwise.global_mask(ctx, model, magnitude).pruned_per_layer()
        masks.prune_per_layer(scores, counts)
    result = ctx.train(model, ctx.cfg.retrain, phase="retrain", masks=masks)
    return Outcome(model=model, result=result, masks=masks)


plan = random_layerwise.plan
