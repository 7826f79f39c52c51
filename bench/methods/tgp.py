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

from ..config import AugmentConfig, to_dict
from ..context import Outcome
from ..importance import EMAImportance
from ..losses import Distillation, teacher_mean_confidence

NAME = "tgp"
PRUNES = True
SECTIONS = ("pretrain", "retrain", "teacher", "kd", "tgp")


def teacher_guided_scores(ctx):
    """Steps 1-3: the fine-tuned student, its importance scores, and the distillation objective."""
    cfg = ctx.cfg
    teacher = ctx.teacher()
    gamma = None
    if cfg.kd.loss == "ca-kld" and cfg.kd.gamma == "teacher-mean":
        with ctx.phase("score"):
            gen = torch.Generator(device=ctx.device).manual_seed(ctx.seed_for("gamma-batches"))
            plain = AugmentConfig(crop_padding=0, flip=False, rotate_deg=0.0)
            batches = ctx.data.train_batches(cfg.tgp.finetune.batch_size, plain, gen)
            gamma = teacher_mean_confidence(teacher, batches, cfg.kd.gamma_batches)
    ctx.extra["kd_gamma"] = gamma
    objective = Distillation(teacher, cfg.kd, gamma)
    model, _ = ctx.dense_model()

    def produce():
        importance = EMAImportance(ctx.masks(model).params, beta=cfg.tgp.beta, saliency=cfg.tgp.saliency,
                                   ema=cfg.tgp.ema)
        ctx.train(model, cfg.tgp.finetune, phase="finetune", objective=objective, after_backward=importance.update)
        return {"gamma": gamma}, importance.scores()

    c = to_dict(cfg)
    ident = {k: c[k] for k in ("dataset", "model", "pretrain", "seed", "teacher", "kd", "tgp")}
    ident["prune_layers"] = cfg.prune.layers
    _, scores = ctx.stage("tgp-finetune", ident, model, produce, ("finetune",))
    return model, scores, objective


def run(ctx, retrain_with_kd: bool = False) -> Outcome:
    model, scores, objective = teacher_guided_scores(ctx)
    return ctx.prune_and_retrain(model, scores, objective if retrain_with_kd else None)
