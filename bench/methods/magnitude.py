"""One-shot global magnitude pruning of the trained dense model, then retraining (masks fixed)."""
from .. import plan as P
from ..context import Outcome

NAME = "magnitude"
VERSION = 1
PRUNES = True
SECTIONS = ("pretrain", "retrain")


def run(ctx) -> Outcome:
    model, _ = ctx.dense_model()
    scores = [p.detach().abs() for p in ctx.masks(model).params]
    return ctx.prune_and_retrain(model, scores)


def plan(cfg) -> list[P.Work]:
    P.prunable_fraction(cfg, cfg.prune.layers)
    return [P.dense(cfg), P.training(cfg, cfg.retrain, "retrain")]
