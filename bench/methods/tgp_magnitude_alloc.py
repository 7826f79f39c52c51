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
    return random_layerwise.layer_budget_run(ctx, random_layerwise.magnitude, random_layerwise.teacher_guided)


plan = random_layerwise.plan
