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
    return random_layerwise.layer_budget_run(ctx, random_layerwise.teacher_guided, random_layerwise.magnitude)


plan = random_layerwise.plan
