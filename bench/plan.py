"""What a grid cell will train, without data: each method's ``plan(cfg) -> list[Work]``.

A plan mirrors its method's ``run``: every training call (network, epochs, images, batch, a frozen
teacher forwarded beside it, extra passes of the student), the forward-only passes that cost
something (the teacher's gamma batches, EGP's entropy pass), and which cached artifact a call makes.
Two cells whose work has the same ``shared`` key use one artifact, made once (the key is the hash of
the identity the method caches the stage under, from the same function). Split sizes come from the
datasets' known sizes (``bench.datasets``), the pruning target from the network built on the CPU,
so no data file is read. ``bench/estimate.py`` turns plans into hours.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Optional

from .config import Config, DatasetConfig, TrainConfig
from .datasets import get
from .grid import hash_identity

# A forward pass without gradients costs about a third of a training step of the same network
# (forward + backward = about three forwards; docs/performance.md checks it against the H100 records).
FORWARD = 1 / 3


@dataclass(frozen=True)
class Work:
    """One training call (or forward-only pass) of a cell."""
    phase: str                        # the record's phase name (round03, retrain, ...)
    arch: str                         # the network trained or forwarded
    image_size: int
    epochs: int                       # model-epochs (COLT's two partition models: two per round epoch)
    images: int                       # training images processed (forward-only work: images forwarded)
    batch_size: int
    eval_images: int = 0              # test images evaluated (after every epoch)
    passes: float = 1.0               # cost of an image, in training steps of ``arch`` (forward only: FORWARD)
    teacher: Optional[str] = None     # a frozen network forwarded on every training image (distillation)
    shared: Optional[tuple[str, str]] = None     # (artifact kind, key): cells with the same key share it


@dataclass(frozen=True)
class Split:
    train: int
    test: int
    classes: int
    image_size: int
    monitor: Optional[int] = None     # test images evaluated after every epoch (None: all of them)

    def eval_images(self, epochs: int, fraction: float = 1.0) -> int:
        """Test images a training call of ``epochs`` evaluates: every epoch on the monitored images, and
        the last one on the whole split too when those differ (``callbacks.Evaluate``)."""
        if self.monitor is None:
            return round(self.test * fraction) * epochs
        return round((self.monitor * epochs + self.test) * fraction)


def split(dcfg: DatasetConfig, full: bool = False) -> Split:
    """The sizes ``dcfg`` loads (``full``: the whole training split, as a ``teacher.data: full`` teacher
    trains on). The datasets are class-balanced, so keeping k of C classes keeps k/C of each split."""
    if dcfg.name == "synthetic":
        sc = dcfg.synthetic
        train, test, classes, size = sc.train_size, sc.test_size, sc.num_classes, sc.image_size
    else:
        spec = get(dcfg.name)
        (train, test), classes, size = spec.sizes, spec.num_classes, spec.image_size
        size = dcfg.image_size or size        # resized at load (dataset.image_size): the cost is at that size
    if dcfg.classes is not None:
        train, test = round(train * len(dcfg.classes) / classes), round(test * len(dcfg.classes) / classes)
        classes = len(dcfg.classes)
    if dcfg.train_limit is not None and not full:
        train = min(train, dcfg.train_limit)
    if dcfg.test_limit is not None:
        test = min(test, dcfg.test_limit)
    monitor = dcfg.monitor_limit if dcfg.monitor_limit is not None and dcfg.monitor_limit < test else None
    return Split(train, test, classes, size, monitor)


def key(kind: str, ident: dict) -> tuple[str, str]:
    return kind, hash_identity(ident)


def training(cfg: Config, recipe: TrainConfig, phase: str, *, arch: Optional[str] = None,
             data: Optional[Split] = None, fraction: float = 1.0, models: int = 1, teacher: Optional[str] = None,
             passes: float = 1.0, shared: Optional[tuple[str, str]] = None) -> Work:
    """``models`` networks each trained with ``recipe`` on ``fraction`` of the run's split (the
    engine's batches: a dropped last batch is not trained on), evaluated after every epoch."""
    s = data or split(cfg.dataset)
    n, b = round(s.train * fraction), recipe.batch_size
    steps = (max(1, n // b) if n else 0) if recipe.drop_last else math.ceil(n / b)
    per_epoch = min(n, steps * b)
    return Work(phase, arch or cfg.model.arch, s.image_size, recipe.epochs * models, per_epoch * recipe.epochs * models,
                b, s.eval_images(recipe.epochs, fraction) * models, passes, teacher, shared)


def forward(cfg: Config, phase: str, images: int, batch_size: int, arch: Optional[str] = None) -> Work:
    """A forward-only pass over ``images`` images (no epochs, no evaluation)."""
    return Work(phase, arch or cfg.model.arch, split(cfg.dataset).image_size, 0, images, batch_size,
                passes=FORWARD)


# --------------------------------------------------------------------------- shared pieces

def dense(cfg: Config) -> Work:
    """The dense model every one-shot method starts from (``RunContext.dense_model``, cached per seed)."""
    from .context import dense_ident

    return training(cfg, cfg.pretrain, "pretrain", shared=key("dense", dense_ident(cfg)))


def teacher(cfg: Config) -> Work:
    """The frozen teacher (``RunContext.teacher``, cached per dataset and teacher section)."""
    from .context import teacher_ident

    tc = cfg.teacher
    return training(cfg, tc.train, "teacher", arch=tc.arch, data=split(cfg.dataset, full=tc.data == "full"),
                    shared=key("teachers", teacher_ident(cfg)))


def prunable_fraction(cfg: Config, layers: str) -> float:
    """The fraction of the prunable set ``layers`` a cell removes to land on its target (on the grid's
    measure); raises ``masks.UnreachableSparsity`` when the set, pruned whole, cannot reach it."""
    out = _fraction(cfg.model.arch, split(cfg.dataset).classes, layers, cfg.prune.measure, cfg.prune.sparsity)
    if isinstance(out, Exception):
        raise out
    return out


@functools.lru_cache(maxsize=256)
def _fraction(arch: str, classes: int, layers: str, measure: str, sparsity: float):
    from .masks import Masks, Target, UnreachableSparsity

    model = _network(arch, classes)
    masks = Masks(model, layers)
    target = Target(masks, model, sparsity, measure)
    try:
        target.check(layers)
    except UnreachableSparsity as e:
        return e
    return (target.zeros - target.fixed) / target.capacity if target.capacity else 0.0


@functools.lru_cache(maxsize=8)
def _network(arch: str, classes: int):
    """A freshly initialised network on the CPU (random weights: what a run prunes from); read only."""
    from .models import build_model

    return build_model(arch, classes)


def rounds_to(fraction: float, keep: float, limit: int) -> int:
    """Rounds of an iterative method that keeps ``keep`` of what remains per round until at most
    1 - ``fraction`` remains (at least one, at most ``limit``: past it the run fails)."""
    if fraction <= 0:
        return 1
    if fraction >= 1:
        return limit
    return max(1, min(limit, math.ceil(math.log(1 - fraction) / math.log(keep) - 1e-9)))
