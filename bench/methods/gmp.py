"""Gradual magnitude pruning (Zhu & Gupta 2017, "To prune, or not to prune", arXiv 1710.01878).

While the network trains, the masks of its prunable set (``prune.layers``, conv like ``magnitude``)
are updated every ``dt`` = ``gmp.every_steps`` steps from step ``t0`` (``gmp.begin`` of the call's
steps) to ``t0 + n dt`` (``gmp.end``): the weights of lowest |w| are removed until the sparsity is

    s_t = s_f + (s_i - s_f) (1 - (t - t0) / (n dt))^3        (s_i = ``gmp.initial_sparsity``)

pruned weights never come back, and the engine keeps them at zero after every step. The count of
an update is ``s_t / s_f`` of the final one; the final update prunes exactly the count that lands the
network on the run's target on the grid's measure (``ctx.prune_global``), so the record is on target.
``gmp.start: dense`` prunes during the ``retrain`` recipe of the cached dense model (the budget of
``magnitude``: one-shot vs gradual is the only difference); ``init`` during the ``pretrain`` recipe
from initialisation (no other training), at the grid's budget basis (``budget.basis``: equal
stretches it to the proposed pipeline's student epochs, bench/budget.py). ``gmp.scope``: one global |w| ranking, or every layer to
the same fraction (Zhu & Gupta's own choice). The whole method is hooks: no engine code of its own.
"""

import torch

from .. import budget as B
from .. import plan as P
from ..context import Outcome
from .sections import GMPConfig

NAME = "gmp"
VERSION = 1
PRUNES = True
SECTIONS = ("pretrain", "retrain", "gmp", "budget", "tgp.finetune")     # budget: start init (bench/budget.py)


def updates(gmp: GMPConfig, total: int) -> list[int]:
    """The steps taken (1..total) after which the masks update: t0 + k dt, k = 0..n (at least one)."""
    t0 = max(1, round(gmp.begin * total))
    span = max(0, round(gmp.end * total) - t0)
    dt = min(gmp.every_steps, span) or 1
    return [t0 + k * dt for k in range(span // dt + 1)]


def fraction(t: int, steps: list[int], s_i: float, s_f: float) -> float:
    """s_t / s_f: the share of the final pruned count removed after step ``t``."""
    t0, span = steps[0], steps[-1] - steps[0]
    s_t = s_f + (s_i - s_f) * (1 - (t - t0) / span) ** 3 if span else s_f
    return min(1.0, s_t / s_f) if s_f > 0 else 1.0


class Schedule:
    """The hook: after each scheduled step, the masks go to that step's count of lowest-|w| weights."""

    def __init__(self, ctx, model, masks, steps: list[int]):
        self.ctx, self.model, self.masks, self.steps = ctx, model, masks, set(steps)
        self.order = steps
        gmp = ctx.cfg.gmp
        self.s_i, self.s_f = gmp.initial_sparsity, ctx.cfg.prune.sparsity
        self.layerwise = gmp.scope == "layerwise"
        if self.layerwise and not all(ctx.target(masks, model).member):
            raise ValueError(f"gmp.scope: layerwise lands on the target only when prune.measure "
                             f"({ctx.cfg.prune.measure}) counts every weight of prune.layers "
                             f"({ctx.cfg.prune.layers}); use gmp.scope: global")

    @torch.no_grad()
    def after_step(self, loop, step: int) -> None:
        t = step + 1
        if t not in self.steps:
            return
        kept = [torch.where(m > 0, p.detach().abs(), -1.0) for p, m in zip(self.masks.params, self.masks.masks)]
        final = self.ctx.target(self.masks, self.model).global_count(self.masks, kept)
        k = final if t == self.order[-1] else round(final * fraction(t, self.order, self.s_i, self.s_f))
        k = max(k, self.masks.numel - self.masks.remaining())     # never revive
        if not self.layerwise:
            self.masks.prune_count(kept, k)
            return
        # Every layer to the same share of k: floors until the last update, then the largest
        # remainders, so that counts only grow and the last update removes exactly k.
        sizes = [m.numel() for m in self.masks.masks]
        share = [k * n / self.masks.numel for n in sizes]
        counts = [int(x) for x in share]
        if t == self.order[-1]:
            for i in sorted(range(len(sizes)), key=lambda i: counts[i] - share[i])[:k - sum(counts)]:
                counts[i] += 1
        have = [int(m.numel() - m.sum()) for m in self.masks.masks]
        self.masks.prune_per_layer(kept, {n: max(0, c - h) for n, c, h in zip(self.masks.names, counts, have)})


def run(ctx) -> Outcome:
    gmp = ctx.cfg.gmp
    if gmp.start == "dense":
        (model, _), recipe, phase = ctx.dense_model(), ctx.cfg.retrain, "retrain"
    else:
        model, recipe, phase = ctx.build(), B.from_scratch(ctx.cfg, ctx.cfg.pretrain, len(ctx.data.train_y)), "pretrain"
    masks = ctx.masks(model)
    ctx.target(masks, model)                   # an unreachable target fails here, before any training
    total = recipe.epochs * ctx.data.steps_per_epoch(recipe.batch_size, recipe.drop_last)
    steps = updates(gmp, total)
    ctx.extra["gmp_updates"] = steps
    result = ctx.train(model, recipe, phase=phase, masks=masks, hooks=[Schedule(ctx, model, masks, steps)])
    return Outcome(model=model, result=result, masks=masks)


def plan(cfg) -> list[P.Work]:
    P.prunable_fraction(cfg, cfg.prune.layers)
    if cfg.gmp.start == "dense":
        return [P.dense(cfg), P.training(cfg, cfg.retrain, "retrain")]
    return [P.training(cfg, B.from_scratch(cfg, cfg.pretrain, P.split(cfg.dataset).train), "pretrain")]
