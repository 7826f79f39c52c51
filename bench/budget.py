"""Student budgets: what a row trains, measured against the grid's reference, and the basis on which a
grid makes the budgets of rows that train from initialisation equal.

A row's student budget is its full-data epochs: the training images every phase of the student
processed (dense pre-training and reused cached phases included; a teacher is counted apart), over
the run's training-set size. The grid's **reference** is the proposed pipeline's budget on the
same config: dense pre-training + the teacher-guided fine-tune + retraining (``pretrain``,
``tgp.finetune``, ``retrain``). ``budget.basis`` says what rows that train one schedule from a random
initialisation (the self-distillation rows, ``gmp`` with ``start: init``) get:

* ``equal``: the reference, in full-data epochs. The row keeps its own recipe's shape (learning
  rate, batch, momentum, weight decay, schedule) and is stretched (or shrunk) to that length: its
  milestones and warm-up scale with the epochs, never cut off.
* ``official``: each method's own recipe, as its paper runs it.
* ``retrain-matched``: the ``retrain`` recipe, i.e. the proposed method's *retraining* phase alone
  (what older records called ``matched``: it matches one phase, not the budget).

Every record carries its basis, the reference and its ratio to it (``runner.budget``); the report and
the claims read them (a win by the side with more budget is ``confounded``, bench/report/claims.py).
Torch-free: the plan and the estimate use it without data.
"""
from __future__ import annotations

import dataclasses
import math

# The proposed pipeline's training phases (config paths of TrainConfigs): the reference budget.
REFERENCE_PHASES = ("pretrain", "tgp.finetune", "retrain")
# Two budgets within this relative slack count as equal (integer epochs and dropped last batches make an
# exact match impossible in general).
SLACK = 0.02


def images_per_epoch(n: int, batch_size: int, drop_last: bool) -> int:
    """Training images one epoch of ``n`` images processes (the engine's batches: ``data.images_per_epoch``)."""
    if drop_last:
        steps = max(1, n // batch_size) if n else 0
    else:
        steps = math.ceil(n / batch_size)
    return min(n, steps * batch_size)


def full_data_epochs(recipe, n: int) -> float:
    """``recipe``'s training images over ``n``, the training-set size."""
    return recipe.epochs * images_per_epoch(n, recipe.batch_size, recipe.drop_last) / n if n else 0.0


def recipe_at(cfg, path: str):
    obj = cfg
    for name in path.split("."):
        obj = getattr(obj, name)
    return obj


def reference_epochs(cfg, n: int) -> float:
    """The grid's reference student budget in full-data epochs: the proposed pipeline's phases."""
    return sum(full_data_epochs(recipe_at(cfg, p), n) for p in REFERENCE_PHASES)


def stretch(recipe, epochs: int):
    """``recipe`` at ``epochs`` epochs with its schedule scaled, not truncated: each milestone and the
    warm-up move in proportion (milestones kept >= 1, strictly increasing)."""
    if epochs == recipe.epochs:
        return recipe
    scale = epochs / recipe.epochs
    milestones: list[int] = []
    for m in recipe.milestones:
        m2 = max(1, round(m * scale), (milestones[-1] + 1) if milestones else 1)
        milestones.append(m2)
    return dataclasses.replace(recipe, epochs=epochs, milestones=milestones,
                               warmup_epochs=min(float(epochs), recipe.warmup_epochs * scale))


def equal_recipe(cfg, own, n: int):
    """``own`` stretched to the reference budget: the whole number of epochs whose full-data epochs come
    closest to the reference (at least one)."""
    per_epoch = images_per_epoch(n, own.batch_size, own.drop_last) / n if n else 1.0
    return stretch(own, max(1, round(reference_epochs(cfg, n) / per_epoch)))


def from_scratch(cfg, own, n: int):
    """The recipe of a row that trains one schedule from initialisation, under ``budget.basis``: ``own`` is
    the method's own (official) recipe, ``n`` the training-set size."""
    basis = cfg.budget.basis
    if basis == "official":
        return own
    if basis == "retrain-matched":
        return cfg.retrain
    return equal_recipe(cfg, own, n)


def summary(cfg, student_epochs: float, n: int) -> dict:
    """The record's budget fields beside the per-phase ones: the basis, the reference and the ratio."""
    ref = reference_epochs(cfg, n)
    return {"basis": cfg.budget.basis, "reference_student_epochs": round(ref, 6),
            "ratio": round(student_epochs / ref, 6) if ref else None}
