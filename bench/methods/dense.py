"""Dense reference: the unpruned model trained with the ``pretrain`` recipe."""
from .. import plan as P
from ..context import Outcome

NAME = "dense"
VERSION = 1
PRUNES = False
SECTIONS = ("pretrain",)


def run(ctx) -> Outcome:
    model, result = ctx.dense_model()
    return Outcome(model=model, result=result)


def plan(cfg) -> list[P.Work]:
    return [P.dense(cfg)]
