"""The proposed method (Alim et al., arXiv 2511.16653): teacher-guided one-shot pruning.

1. Dense student (CE-pretrained, cached) and a frozen teacher (cached).
2. gamma = the teacher's mean top-class probability over ``kd.gamma_batches`` train batches.
3. Teacher-guided fine-tuning of the student with alpha * CA-KLD + (1 - alpha) * CE; after every
   backward pass |w * grad| of each prunable weight feeds a bias-corrected EMA (the importance).
4. One-shot global pruning by that importance to the target sparsity.
5. Retraining with a fresh optimizer, masks fixed: cross-entropy only here, the joint objective
   in ``tgp-kd`` (tgp_kd.py). Steps 1-3 do not depend on the sparsity, so they are cached and
   shared by every sparsity and by both variants (their cost is still charged to each run).
"""

import torch

from .. import plan as P
from ..config import AugmentConfig
from ..context import Outcome
from ..importance import EMAImportance
from ..losses import Distillation, gamma_confidence, teacher_mean_confidence
from ..plan import Work
from ..stages import stage_ident


NAME = "tgp"
VERSION = 1
PRUNES = True
SECTIONS = ("pretrain", "retrain", "teacher", "kd", "tgp")


def teacher_mean(kd) -> bool:
    """Whether gamma is the teacher's mean confidence (measured on train batches before training)."""
    return kd.loss == "ca-kld" and kd.gamma == "teacher-mean"


def teacher_gamma(ctx, teacher, batch_size: int | None = None) -> float | None:
    """CA-KLD's gamma: the teacher's mean top-class probability (``kd.gamma_logits``) on un-augmented train
    batches (of the fine-tune's batch size unless ``batch_size`` is given); ``kd.gamma_value`` with
    ``kd.gamma: fixed``."""
    kd = ctx.cfg.kd
    if kd.loss == "ca-kld" and kd.gamma == "fixed":
        return kd.gamma_value
    if not teacher_mean(kd):
        return None
    with ctx.phase("score"):
        gen = torch.Generator(device=ctx.device).manual_seed(ctx.seed_for("gamma-batches"))
        plain = AugmentConfig(crop_padding=0, flip=False, rotate_deg=0.0)
        batches = ctx.data.train_batches(batch_size or ctx.cfg.tgp.finetune.batch_size, plain, gen)
        return teacher_mean_confidence(teacher, batches, kd.gamma_batches, lambda z: gamma_confidence(kd, z))


def guided_finetune(ctx, objective, kind: str = "tgp-finetune", version: int = VERSION):
    """Steps 1-3 with any objective: the dense student fine-tuned with the ``tgp.finetune`` recipe
    while the EMA importance accumulates; cached (shared by every sparsity). Returns (model, scores)."""
    cfg = ctx.cfg
    model, _ = ctx.dense_model()

    def produce():
        importance = EMAImportance(ctx.masks(model).params, beta=accumulation_beta(ctx), saliency=cfg.tgp.saliency,
                                   ema=cfg.tgp.ema, accumulate=cfg.tgp.accumulate)
        ctx.train(model, cfg.tgp.finetune, phase="finetune", objective=objective, hooks=[importance],
                  state={"importance": importance})
        return {"gamma": getattr(objective, "gamma", None)}, {"scores": importance.scores()}

    sections = finetune_sections(isinstance(objective, Distillation))
    _, payload = ctx.stage(kind, produce, ("finetune",), sections=sections, version=version, model=model)
    return model, payload["scores"]


def accumulation_beta(ctx) -> float:
    """The EMA's decay: ``tgp.beta``, or with ``tgp.accumulate: ema-whole`` 1 - 1/N for the fine-tune's N
    optimizer steps (a horizon of the whole fine-tune); unused by ``sum``."""
    tgp = ctx.cfg.tgp
    if tgp.accumulate != "ema-whole":
        return tgp.beta
    steps = tgp.finetune.epochs * ctx.data.steps_per_epoch(tgp.finetune.batch_size, tgp.finetune.drop_last)
    return 1.0 - 1.0 / max(2, steps)


def finetune_sections(distill: bool) -> tuple[str, ...]:
    """What the cached fine-tune and its importance depend on (not the sparsity: every target shares it)."""
    return ("dataset", "model", "pretrain", "seed", "tgp", "prune.layers") + (("teacher", "kd") if distill else ())


def teacher_guided_scores(ctx):
    """Steps 1-3: the fine-tuned student, its importance scores, and the distillation objective."""
    teacher = ctx.teacher()
    gamma = teacher_gamma(ctx, teacher)
    ctx.extra["kd_gamma"] = gamma
    objective = Distillation(teacher, ctx.cfg.kd, gamma)
    model, scores = guided_finetune(ctx, objective)
    return model, scores, objective


def run(ctx, retrain_with_kd: bool = False) -> Outcome:
    model, scores, objective = teacher_guided_scores(ctx)
    return ctx.prune_and_retrain(model, scores, objective if retrain_with_kd else None)


# --------------------------------------------------------------------------- the plan (bench/plan.py)

def plan_scores(cfg, kind: str = "tgp-finetune", version: int = VERSION, distill: bool = True) -> list[Work]:
    """Steps 1-3 without data: the dense model, the teacher and its gamma batches (with ``distill``),
    the guided fine-tune (the teacher forwarded on every image)."""
    work = [P.dense(cfg)]
    if distill:
        work += [P.teacher(cfg), *gamma_work(cfg, cfg.tgp.finetune.batch_size)]
    ft = cfg.tgp.finetune
    work.append(P.training(cfg, ft, "finetune", teacher=cfg.teacher.arch if distill else None,
                           shared=P.key(kind, stage_ident(cfg, finetune_sections(distill), version))))
    return work


def gamma_work(cfg, batch_size: int) -> list[Work]:
    """``teacher_gamma``: the teacher forwarded on ``kd.gamma_batches`` batches of one epoch (if used)."""
    if not teacher_mean(cfg.kd):
        return []
    n = P.split(cfg.dataset).train
    return [P.forward(cfg, "score", min(cfg.kd.gamma_batches, max(1, n // batch_size)) * batch_size, batch_size,
                      arch=cfg.teacher.arch)]


def plan(cfg, retrain_with_kd: bool = False) -> list[Work]:
    P.prunable_fraction(cfg, cfg.prune.layers)          # an unreachable target: recorded, nothing trained
    teacher = cfg.teacher.arch if retrain_with_kd else None
    return [*plan_scores(cfg), P.training(cfg, cfg.retrain, "retrain", teacher=teacher)]
