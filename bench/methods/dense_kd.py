"""Control: the dense student trained with the joint objective, no pruning.

The student starts from the dense model's initialisation (the run seed) and is trained with the
``pretrain`` recipe and the dense model's data order, on alpha * CA-KLD + (1 - alpha) * CE with the
frozen teacher (the ``kd`` section, gamma as ``tgp`` computes it). Paired with ``dense`` at the same
seed, only the objective differs: the ceiling that distillation alone gives the unpruned student.
"""
from .. import plan as P
from ..context import Outcome
from ..losses import Distillation
from . import tgp

NAME = "dense-kd"
VERSION = 1
PRUNES = False
SECTIONS = ("pretrain", "teacher", "kd")


def run(ctx) -> Outcome:
    ctx.pair_with("dense")
    teacher = ctx.teacher()
    gamma = tgp.teacher_gamma(ctx, teacher, ctx.cfg.pretrain.batch_size)
    ctx.extra["kd_gamma"] = gamma
    objective = Distillation(teacher, ctx.cfg.kd, gamma, label_smoothing=ctx.cfg.pretrain.label_smoothing)
    model = ctx.build()
    result = ctx.train(model, ctx.cfg.pretrain, phase="pretrain", objective=objective)
    return Outcome(model=model, result=result)


def plan(cfg) -> list[P.Work]:
    return [P.teacher(cfg), *tgp.gamma_work(cfg, cfg.pretrain.batch_size),
            P.training(cfg, cfg.pretrain, "pretrain", teacher=cfg.teacher.arch)]
