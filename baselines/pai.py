"""Helper library (no ``NAME``; the methods are the rows of selfdistill_rows.py): pruning at
initialisation for the self-distillation rows, then SD training with the masks fixed.

* **Simple** (EPSD's "Simple Combination"): ProsPr's meta-gradient with cross-entropy. On a copy of
  the freshly initialised network, every prunable weight is multiplied by a mask m = 1; the copy
  takes ``pai.inner_steps`` SGD steps (lr ``pai.inner_lr``, no momentum, no weight decay) on one
  reused batch, differentiably (full second order); the score of a weight is |d(meta-loss)/dm|,
  the meta-loss being the loss after the last step. ``pai.criterion: snip`` is zero inner steps:
  |w * dCE/dw| at initialisation.
* **EPSD (reimpl.)**: the same with the SD method's loss in the inner steps and the meta-loss,
  its "past" predictions taken from earlier inner steps (``scoring_loss`` in selfdistill.py).
  EPSD has no public code; docs/baselines.md says which choices are inferred.

Then the *initial* weights, masked (global top-k over the grid's set, the convs; conv + linear under
``sd.protocol: official``, as ProsPr), are trained with
the SD objective and recipe. Scoring runs in float32 without autocast, on a deep copy, so the
initial network (BatchNorm statistics included) is untouched.
"""
from __future__ import annotations

import copy
from typing import Callable, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from bench import plan as P
from bench.context import Outcome
from bench.masks import Masks, prunable_parameters

from . import selfdistill


StepLoss = Callable[[Callable[[Tensor], Tensor]], Tensor]


def unrolled_loss(model: nn.Module, masks: dict[str, Tensor], step_loss: StepLoss, steps: int,
                  lr: float) -> Tensor:
    """The meta-loss l(phi_steps) as a differentiable function of ``masks``: phi_0 = the model's
    parameters with each named weight multiplied by its mask, phi_{k+1} = phi_k - lr * dl/dphi_k
    (graph kept: full second order). ``step_loss(forward)`` is called once per step and once for
    the meta-loss; it may keep state between calls (the SD losses do)."""
    params = {n: p * masks[n] if n in masks else p for n, p in model.named_parameters()}

    def forward_with(p):
        return lambda x: functional_call(model, p, (x,))

    for _ in range(steps):
        loss = step_loss(forward_with(params))
        grads = torch.autograd.grad(loss, list(params.values()), create_graph=True)
        params = {n: p - lr * g for (n, p), g in zip(params.items(), grads)}
    return step_loss(forward_with(params))


def meta_gradient(model: nn.Module, layers: str, step_loss: StepLoss, steps: int, lr: float) -> list[Tensor]:
    """d(meta-loss)/dm at m = 1 for every weight of the prunable set ``layers``, in ``Masks`` order.
    Runs on ``model`` itself: BatchNorm statistics move (use ``meta_scores``)."""
    masks = {n: torch.ones_like(p, requires_grad=True) for n, p in prunable_parameters(model, layers)}
    loss = unrolled_loss(model, masks, step_loss, steps, lr)
    return list(torch.autograd.grad(loss, list(masks.values())))


def meta_scores(model: nn.Module, layers: str, step_loss: StepLoss, steps: int, lr: float) -> list[Tensor]:
    """|d(meta-loss)/dm|, computed in float32 on a deep copy in train mode: ``model`` (its
    BatchNorm running statistics included) is left exactly as it was."""
    work = copy.deepcopy(model).float().train()
    return [g.detach().abs() for g in meta_gradient(work, layers, step_loss, steps, lr)]


def cross_entropy_loss(batch) -> StepLoss:
    return lambda forward: F.cross_entropy(forward(batch.x), batch.y)


def pskd_alpha(ctx) -> float:
    """PS-KD's alpha inside EPSD's scoring steps (``epsd.pskd_alpha``)."""
    alpha_T = ctx.cfg.pskd.alpha_T
    if ctx.cfg.epsd.pskd_alpha == "alpha_T":
        return alpha_T
    return alpha_T / selfdistill.recipe(ctx, "pskd").epochs     # alpha_T (t+1)/E at t = 0


def run(ctx, method: str, scoring: Literal["simple", "epsd"]) -> Outcome:
    """Score the initial network of SD method ``method`` (Simple: CE; EPSD: its SD loss), prune
    to ``prune.sparsity`` over the protocol's set (``selfdistill.layers_of``), train the masked initial weights with the SD method."""
    cfg, pc = ctx.cfg, ctx.cfg.pai
    layers = selfdistill.layers_of(cfg)
    model = ctx.build()
    objective = selfdistill.make_objective(ctx, method)
    masks = Masks(model, layers)
    ctx.target(masks, model)            # an unreachable target fails here, before any work
    with ctx.phase("score"):
        gen = torch.Generator(device=ctx.device).manual_seed(ctx.seed_for("pai-batch"))
        batch = next(ctx.data.train_batches(pc.batch_size, selfdistill.augment_of(cfg), gen))
        if scoring == "epsd":
            extra = {"alpha": pskd_alpha(ctx)} if method == "pskd" else {}
            step_loss = objective.scoring_loss(batch, gen, **extra)
        else:
            step_loss = cross_entropy_loss(batch)
        steps = 0 if pc.criterion == "snip" else pc.inner_steps
        scores = meta_scores(model, layers, step_loss, steps, pc.inner_lr)
    with ctx.phase("prune"):
        ctx.prune_global(masks, model, scores)
    ctx.extra.update(pai_scoring="EPSD (reimpl.)" if scoring == "epsd" else "Simple", pai_criterion=pc.criterion)
    result = selfdistill.train(ctx, method, model, objective, masks)
    return Outcome(model=model, result=result, masks=masks)


def plan(cfg, method: str) -> list[P.Work]:
    """The scoring (``pai.inner_steps`` second-order steps on one batch: counted as two training steps
    each) and the SD row's training; the set must be able to reach the target."""
    pc = cfg.pai
    P.prunable_fraction(cfg, selfdistill.layers_of(cfg))
    steps = 1 if pc.criterion == "snip" else pc.inner_steps + 1
    score = P.Work("score", cfg.model.arch, P.split(cfg.dataset).image_size, 0, steps * pc.batch_size, pc.batch_size,
                   passes=2.0)
    return [score, *selfdistill.plan(cfg, method)]
