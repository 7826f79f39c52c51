"""Control: ``tgp``'s fine-tune without the teacher, then global magnitude pruning.

The dense model is fine-tuned with the ``tgp.finetune`` recipe (same epochs, learning rate,
schedule and data order as ``tgp``'s teacher-guided fine-tune) on cross-entropy alone, pruned by
global weight magnitude, and retrained like ``tgp``. Paired with ``tgp`` at the same seed and
sparsity, the training budget is equal and only the teacher differs; against ``magnitude`` it
shows what the extra fine-tune alone adds.
"""
from .. import plan as P
from ..context import Outcome
from ..losses import CrossEntropy
from . import tgp

NAME = "magnitude-ft"
VERSION = 1
PRUNES = True
SECTIONS = ("pretrain", "retrain", "tgp")
CE_FINETUNE_VERSION = 1   # in the cache key of the shared cross-entropy fine-tune


def ce_finetune(ctx):
    """(model, scores): the dense model fine-tuned with ``tgp.finetune`` on cross-entropy while tgp's
    EMA importance accumulates (it only reads gradients). Cached per seed; ``grad-ce`` uses the same."""
    objective = CrossEntropy(ctx.cfg.tgp.finetune.label_smoothing)
    return tgp.guided_finetune(ctx, objective, kind="ce-finetune", version=CE_FINETUNE_VERSION)


def run(ctx) -> Outcome:
    ctx.pair_with("tgp")
    model, _ = ce_finetune(ctx)
    scores = [p.detach().abs() for p in ctx.masks(model).params]
    return ctx.prune_and_retrain(model, scores)


def plan_ce_finetune(cfg) -> list[P.Work]:
    return tgp.plan_scores(cfg, kind="ce-finetune", version=CE_FINETUNE_VERSION, distill=False)


def plan(cfg) -> list[P.Work]:
    P.prunable_fraction(cfg, cfg.prune.layers)
    return [*plan_ce_finetune(cfg), P.training(cfg, cfg.retrain, "retrain")]
