"""Control (a lottery-ticket check): ``tgp``'s mask on the network rewound to its initialisation.

The mask is the one ``tgp`` prunes with at this seed and sparsity. Every weight (conv, linear,
BatchNorm) is reset to the dense model's initial values (``ctx.build()`` with the run seed draws
exactly them), the mask is applied, and the sparse network gets the dense model's training and
then ``tgp``'s retraining, masks fixed throughout: the ``pretrain`` recipe (with the dense model's
data order), then the ``retrain`` recipe with a fresh optimizer. The two recipes run one after the
other, unchanged, so the budget is exactly their sum; the teacher-guided fine-tune is not
repeated (no teacher here). Against ``tgp``: if it matches, the mask alone carries the result.
"""
from .. import plan as P
from ..context import Outcome
from . import tgp
from .random_layerwise import global_mask

NAME = "tgp-rewind"
VERSION = 1
PRUNES = True
SECTIONS = tgp.SECTIONS


def run(ctx) -> Outcome:
    ctx.pair_with("tgp")
    student, scores, _ = tgp.teacher_guided_scores(ctx)
    with ctx.phase("prune"):
        ticket = global_mask(ctx, student, scores)
    model = ctx.build()
    masks = ctx.masks(model)
    masks.copy_from(ticket)
    ctx.train(model, ctx.cfg.pretrain, phase="sparse-pretrain", group="retrain", masks=masks,
              seed=ctx.seed_for("pretrain"))
    result = ctx.train(model, ctx.cfg.retrain, phase="retrain", masks=masks)
    return Outcome(model=model, result=result, masks=masks)


def plan(cfg) -> list[P.Work]:
    P.prunable_fraction(cfg, cfg.prune.layers)
    return [*tgp.plan_scores(cfg), P.training(cfg, cfg.pretrain, "sparse-pretrain"),
            P.training(cfg, cfg.retrain, "retrain")]
