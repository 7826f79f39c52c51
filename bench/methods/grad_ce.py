"""Control: ``tgp``'s importance criterion without distillation.

The EMA of |w * grad| (``tgp.saliency``, ``tgp.beta``) accumulated during the cross-entropy
fine-tune of ``magnitude-ft`` (the same cached run), then one-shot global pruning and retraining
like ``tgp``. Paired with ``tgp`` at the same seed and sparsity, only the teacher's gradients in
the ranking (and in the fine-tune) differ.
"""
from ..context import Outcome
from .magnitude_ft import ce_finetune, plan  # noqa: F401 - the same work as magnitude-ft

NAME = "grad-ce"
VERSION = 1
PRUNES = True
SECTIONS = ("pretrain", "retrain", "tgp")


def run(ctx) -> Outcome:
    ctx.pair_with("tgp")
    model, scores = ce_finetune(ctx)
    return ctx.prune_and_retrain(model, scores)
