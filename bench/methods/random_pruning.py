"""Control: prune the same number of weights as every other method, chosen at random (seeded)."""
import torch

from .. import plan as P
from ..context import Outcome

NAME = "random"
VERSION = 1
PRUNES = True
SECTIONS = ("pretrain", "retrain")


def run(ctx) -> Outcome:
    model, _ = ctx.dense_model()
    gen = torch.Generator(device=ctx.device).manual_seed(ctx.seed_for("random-scores"))
    scores = [torch.rand(p.shape, generator=gen, device=ctx.device) for p in ctx.masks(model).params]
    return ctx.prune_and_retrain(model, scores)


def plan(cfg) -> list[P.Work]:
    P.prunable_fraction(cfg, cfg.prune.layers)
    return [P.dense(cfg), P.training(cfg, cfg.retrain, "retrain")]
