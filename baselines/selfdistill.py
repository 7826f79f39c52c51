"""Helper library (no ``NAME``; the methods are the rows of selfdistill_rows.py): three
self-distillation (SD) objectives, CS-KD, PS-KD and DLB, and how an SD row is trained.

Each objective is a ``bench.losses.Objective``: ``objective(model, batch) -> (loss, logits)``,
with all its state (memories, the previous batch, its random generator) in ``state_dict()``.
Each also gives ``scoring_loss(batch, gen, ...)``: its loss over the inner steps of pruning at
initialisation (EPSD, ``pai.py``), where "past" predictions come from earlier inner steps on one
reused batch. docs/baselines.md says, choice by choice, what is taken from each official
repository (alinlab/cs-kd, lgcnsai/PS-KD-Pytorch, Meta-knowledge-Lab/DLB) and what is inferred.

How a row is run is ``sd.protocol``: ``harness`` (the default) runs it as every other row of the
grid: the budget of ``budget.basis`` (``equal``: the method's own recipe stretched to the proposed
pipeline's student epochs, bench/budget.py), the grid's prunable set and augmentation; ``official``
runs it as its own paper does (own recipe, conv + linear, the SD codes' augmentation), labelled
``<method>-official``.
"""
from __future__ import annotations

import contextlib
from dataclasses import replace
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench import budget as B
from bench import plan as P
from bench.config import TrainConfig
from .sections import CSKDConfig, PSKDConfig, DLBConfig
from bench.context import Outcome
from bench.losses import Objective, frozen_bn_stats, hinton_kd

Forward = Callable[[Tensor], Tensor]


# --------------------------------------------------------------------------- config

# --------------------------------------------------------------------------- the losses

def cskd_loss(z: Tensor, z_partner: Tensor, y: Tensor, temperature: float, lam: float) -> Tensor:
    """CE(z, y) + lam * T^2 * mean_i KL(softmax(z'_i/T) || softmax(z_i/T)); the partner side is a
    constant target (detached)."""
    return F.cross_entropy(z.float(), y) + lam * hinton_kd(z, z_partner, temperature=temperature)


def pskd_targets(y: Tensor, past: Tensor, alpha: float) -> Tensor:
    """(1 - alpha) * onehot(y) + alpha * past predictions."""
    return (1 - alpha) * F.one_hot(y, past.shape[1]).to(past.dtype) + alpha * past


def pskd_loss(z: Tensor, targets: Tensor) -> Tensor:
    """mean_i sum_c -target_ic log softmax(z_i)_c."""
    return F.cross_entropy(z.float(), targets)


def dlb_loss(z_prev_now: Tensor, z: Tensor, y_prev: Tensor, y: Tensor, z_prev_then: Tensor,
             temperature: float, alpha: float) -> Tensor:
    """CE over the previous batch's new view and this batch (averaged over all B' + B samples)
    + alpha * T^2 * mean over B' of KL(softmax(z_prev_then/T) || softmax(z_prev_now/T)), where
    ``z_prev_then`` are the previous step's logits (a constant target)."""
    ce = F.cross_entropy(torch.cat([z_prev_now.float(), z.float()]), torch.cat([y_prev, y]))
    return ce + alpha * hinton_kd(z_prev_now, z_prev_then, temperature=temperature)


def _bn_counted(model: nn.Module, updates_bn: bool):
    """The context of a second forward pass in one step: BatchNorm statistics updated again (the
    official code's behaviour) or left alone."""
    return contextlib.nullcontext() if updates_bn else frozen_bn_stats(model)


def _like(x: Tensor, ref: Tensor) -> Tensor:
    """``x`` in ``ref``'s memory format (the engine may hand out channels_last batches)."""
    cl = ref.dim() == 4 and ref.is_contiguous(memory_format=torch.channels_last) and not ref.is_contiguous()
    return x.contiguous(memory_format=torch.channels_last) if cl else x


class _WithGenerator(Objective):
    """An objective that draws random numbers (partners, augmentations) from its own generator,
    on the data's device; the generator's state is part of the objective's state."""

    def __init__(self, data, augment, seed: int):
        self.data, self.augment = data, augment
        self.gen = torch.Generator(device=data.device).manual_seed(seed)

    def state_dict(self) -> dict:
        return {"gen": self.gen.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.gen.set_state(state["gen"])


# --------------------------------------------------------------------------- CS-KD

class CSKD(_WithGenerator):
    """Class-wise self-KD: each anchor is pulled towards the prediction of a random training sample
    of its own class (itself allowed), re-augmented, forwarded without gradient."""

    def __init__(self, data, augment, cfg: CSKDConfig, seed: int):
        super().__init__(data, augment, seed)
        self.cfg = cfg
        y = data.train_y
        self.by_class = torch.argsort(y, stable=True)                # train indices grouped by label
        self.count = torch.bincount(y, minlength=data.num_classes)
        self.offset = torch.cumsum(self.count, 0) - self.count

    def partners(self, y: Tensor, gen: torch.Generator) -> Tensor:
        """A uniformly drawn train index of class y_i for every i (self included)."""
        u = torch.rand(y.shape, generator=gen, device=y.device)
        pick = (u * self.count[y]).long().clamp_max(self.count[y] - 1)
        return self.by_class[self.offset[y] + pick]

    def partner_view(self, y: Tensor, gen: torch.Generator) -> Tensor:
        return self.data.train_view(self.partners(y, gen), self.augment, gen)

    def __call__(self, model: nn.Module, batch) -> tuple[Tensor, Tensor]:
        z = model(batch.x)
        x_partner = _like(self.partner_view(batch.y, self.gen), batch.x)
        with torch.no_grad(), _bn_counted(model, self.cfg.partner_updates_bn):
            z_partner = model(x_partner)
        return cskd_loss(z, z_partner, batch.y, self.cfg.temperature, self.cfg.lam), z

    def scoring_loss(self, batch, gen: torch.Generator) -> Callable[[Forward], Tensor]:
        """Partners drawn and augmented once, fixed over the inner steps."""
        x_partner = self.partner_view(batch.y, gen)

        def loss(forward: Forward) -> Tensor:
            z = forward(batch.x)
            with torch.no_grad():
                z_partner = forward(x_partner)
            return cskd_loss(z, z_partner, batch.y, self.cfg.temperature, self.cfg.lam)
        return loss


# --------------------------------------------------------------------------- PS-KD

class PSKD(Objective):
    """Progressive self-KD: the target mixes the one-hot label with the sample's prediction from
    the previous epoch, with a weight growing linearly to alpha_T; epoch 0 is plain CE."""

    def __init__(self, data, cfg: PSKDConfig):
        self.cfg = cfg
        self.memory = torch.zeros(len(data.train_y), data.num_classes, device=data.device)
        self.epoch, self.alpha = 0, 0.0

    def start_epoch(self, epoch: int, epochs: int) -> None:
        self.epoch, self.alpha = epoch, self.cfg.alpha_T * (epoch + 1) / epochs

    def __call__(self, model: nn.Module, batch) -> tuple[Tensor, Tensor]:
        z = model(batch.x)
        if self.epoch == 0:          # the official code sets the memory rows to one-hot first
            targets = F.one_hot(batch.y, self.memory.shape[1]).float()
        else:
            targets = pskd_targets(batch.y, self.memory[batch.idx], self.alpha)
        self.memory[batch.idx] = F.softmax(z.detach().float(), dim=1)
        return pskd_loss(z, targets), z

    def state_dict(self) -> dict:
        return {"memory": self.memory.clone(), "epoch": self.epoch, "alpha": self.alpha}

    def load_state_dict(self, state: dict) -> None:
        self.memory.copy_(state["memory"])
        self.epoch, self.alpha = state["epoch"], state["alpha"]

    def scoring_loss(self, batch, gen: torch.Generator, *, alpha: float) -> Callable[[Forward], Tensor]:
        """A table over the batch, one-hot at first; each inner step's softmax is the next one's past."""
        past = F.one_hot(batch.y, self.memory.shape[1]).float()

        def loss(forward: Forward) -> Tensor:
            nonlocal past
            z = forward(batch.x)
            out = pskd_loss(z, pskd_targets(batch.y, past, alpha))
            past = F.softmax(z.detach().float(), dim=1)
            return out
        return loss


# --------------------------------------------------------------------------- DLB

class DLB(_WithGenerator):
    """Self-distillation from the last mini-batch: the previous batch, re-augmented and forwarded
    with the current weights, is pulled towards the logits it got one step ago. The previous batch
    is carried across epochs; only the very first step of training is plain CE."""

    def __init__(self, data, augment, cfg: DLBConfig, seed: int):
        super().__init__(data, augment, seed)
        self.cfg = cfg
        self.prev: tuple[Tensor, Tensor, Tensor] | None = None     # (idx, y, detached logits)

    def __call__(self, model: nn.Module, batch) -> tuple[Tensor, Tensor]:
        z = model(batch.x)
        if self.prev is None:
            loss = F.cross_entropy(z.float(), batch.y)
        else:
            idx, y_prev, z_then = self.prev
            x_prev = _like(self.data.train_view(idx, self.augment, self.gen), batch.x)
            with _bn_counted(model, self.cfg.second_view_updates_bn):
                z_now = model(x_prev)
            loss = dlb_loss(z_now, z, y_prev, batch.y, z_then, self.cfg.temperature, self.cfg.alpha)
        self.prev = (batch.idx, batch.y, z.detach().float())
        return loss, z

    def state_dict(self) -> dict:
        prev = None if self.prev is None else tuple(t.clone() for t in self.prev)
        return {**super().state_dict(), "prev": prev}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        prev = state["prev"]
        self.prev = None if prev is None else tuple(t.clone().to(self.data.device) for t in prev)

    def scoring_loss(self, batch, gen: torch.Generator) -> Callable[[Forward], Tensor]:
        """Two views of the batch: step 0 is CE on view 1; step k pulls view 2 towards step k-1's
        (detached) logits of view 1."""
        x2 = self.data.train_view(batch.idx, self.augment, gen)
        prev: Tensor | None = None

        def loss(forward: Forward) -> Tensor:
            nonlocal prev
            z = forward(batch.x)
            if prev is None:
                out = F.cross_entropy(z.float(), batch.y)
            else:
                out = dlb_loss(forward(x2), z, batch.y, batch.y, prev, self.cfg.temperature, self.cfg.alpha)
            prev = z.detach().float()
            return out
        return loss


# --------------------------------------------------------------------------- training an SD row

def make_objective(ctx, method: str) -> Objective:
    """The training objective of SD method ``method`` (cskd, pskd, dlb) for this run."""
    augment = augment_of(ctx.cfg)
    seed = ctx.seed_for(f"{method}-objective")
    if method == "cskd":
        return CSKD(ctx.data, augment, ctx.cfg.cskd, seed)
    if method == "pskd":
        return PSKD(ctx.data, ctx.cfg.pskd)
    if method == "dlb":
        return DLB(ctx.data, augment, ctx.cfg.dlb, seed)
    raise ValueError(f"unknown self-distillation method {method!r}; allowed: cskd, pskd, dlb")


def official(cfg) -> bool:
    return cfg.sd.protocol == "official"


def augment_of(cfg):
    """The rows' training augmentation: the grid's, or the SD codes' own under the official protocol."""
    return cfg.sd.official_augment if official(cfg) else cfg.dataset.augment


def layers_of(cfg) -> str:
    """The prunable set of the pruned rows: ``pai.layers``, else the protocol's."""
    return cfg.pai.layers or ("conv+linear" if official(cfg) else cfg.prune.layers)


def recipe(ctx, method: str) -> TrainConfig:
    """The training recipe of this run (``sd.protocol`` and ``budget.basis``)."""
    return recipe_of(ctx.cfg, method, len(ctx.data.train_y))


def recipe_of(cfg, method: str, n: int) -> TrainConfig:
    """The recipe of SD method ``method`` on ``n`` training images: its own recipe under the official
    protocol, else the grid's budget basis applied to it (bench/budget.py)."""
    own = getattr(cfg, method).official
    if method == "pskd":
        own = replace(own, drop_last=False)      # every memory row is refreshed every epoch
    r = own if official(cfg) else B.from_scratch(cfg, own, n)
    return replace(r, drop_last=False) if method == "pskd" else r


def label_suffix(cfg) -> str:
    """A row run under another protocol or budget than the grid's default is a variant of the method: its
    grid label says so, so that it never shares a table column (or a claim) with the method itself."""
    if official(cfg):
        return "-official"
    return "-matched" if cfg.budget.basis == "retrain-matched" else ""


def sections(method: str, *, pruned: bool = False, epsd: bool = False) -> tuple[str, ...]:
    """The config sections an SD row's result depends on (its run identity): its own, the budget basis
    and the phases the reference budget is made of (bench/budget.py)."""
    return (("sd", method, "budget") + B.REFERENCE_PHASES + (("pai",) if pruned else ())
            + (("epsd",) if epsd else ()))


def train(ctx, method: str, model: nn.Module, objective: Objective, masks=None, group: str = "retrain"):
    """Train ``model`` with ``objective`` and the recipe of ``method`` (masks fixed, if given)."""
    r = recipe(ctx, method)
    ctx.extra.update(sd_method=method, sd_protocol=ctx.cfg.sd.protocol, budget_basis=ctx.cfg.budget.basis,
                     sd_recipe={"epochs": r.epochs, "batch_size": r.batch_size, "lr": r.lr,
                                "milestones": list(r.milestones), "schedule": r.schedule})
    return ctx.train(model, r, phase="train", group=group, objective=objective, masks=masks,
                     augment=augment_of(ctx.cfg))


def run_dense(ctx, method: str) -> Outcome:
    """A dense SD row: the freshly initialised network trained with the SD objective."""
    model = ctx.build()
    return Outcome(model=model, result=train(ctx, method, model, make_objective(ctx, method), group="pretrain"))


# Cost of an image in training steps of the student (bench/plan.py): CS-KD forwards a partner batch
# without gradient; DLB forwards and backpropagates the previous batch's second view as well.
PASSES = {"cskd": 1 + P.FORWARD, "pskd": 1.0, "dlb": 2.0}


def plan(cfg, method: str) -> list[P.Work]:
    """What an SD row trains: the SD recipe on its objective (after pruning at initialisation, pai.plan)."""
    return [P.training(cfg, recipe_of(cfg, method, P.split(cfg.dataset).train), "train", passes=PASSES[method])]
