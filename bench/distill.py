"""The distillation settings every teacher-guided method shares: the ``teacher`` and ``kd`` sections.

They are registered sections like a method's own (bench/registry.py), owned by no single method:
tgp and its variants, dense-kd and the cost preview read them, and a new KD variant adds its options
here or in a section of its own, not in bench/config.py. Torch-free, so that a Config loads without
torch (the losses that use ``kd`` are in bench/losses.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

from .config import ADDED_LATER, TrainConfig, check
from .registry import register_section


@register_section("teacher")
@dataclass
class TeacherConfig:
    """The teacher of the distilling methods: its architecture, seed, recipe and training data."""
    arch: Literal["resnet18", "resnet34", "resnet50", "resnet_small"] = "resnet50"
    seed: int = 0
    train: TrainConfig = field(default_factory=TrainConfig)
    # run: the teacher trains on the run's training images; full: on the dataset's whole training
    # split, whatever dataset.train_limit keeps for the students (a teacher that knows more than them)
    data: Literal["run", "full"] = "run"


@register_section("kd")
@dataclass
class KDConfig:
    """Distillation loss of the proposed method (docs/method.md)."""
    loss: Literal["ca-kld", "kd"] = "ca-kld"       # kd: plain Hinton KL(P_T || P_S), the ablation
    temperature: float = 3.0                        # paper: 3 on CIFAR-10/100, 5 on TinyImageNet
    alpha: float = 0.5                              # weight of the KD term; 1 - alpha on CE
    normalize: Optional[bool] = None                # z-score logits before T; null: on for ca-kld, off for kd
    gamma: Literal["teacher-mean", "per-sample", "fixed"] = "teacher-mean"
    # the teacher's top probability for gamma: on its raw logits (plain softmax, BitDistiller), or on the
    # logits as the loss uses them (z-scored if normalize, divided by T); docs/method.md
    gamma_logits: Literal["raw", "as-used"] = field(default="raw", metadata=ADDED_LATER)
    gamma_value: float = field(default=0.5, metadata=ADDED_LATER)   # gamma with gamma: fixed
    gamma_batches: int = 100                        # train batches used for the teacher-mean gamma
    t2_scale: bool = True                           # multiply the KD term by T^2
    eps: float = 1e-7

    def validate(self, key):
        check(self.temperature > 0, f"{key}.temperature", self.temperature, "a number > 0")
        check(0 <= self.alpha <= 1, f"{key}.alpha", self.alpha, "a number in [0, 1]")
        check(0 <= self.gamma_value <= 1, f"{key}.gamma_value", self.gamma_value, "a number in [0, 1]")
        check(self.gamma_batches >= 1, f"{key}.gamma_batches", self.gamma_batches, "an integer >= 1")
        check(self.eps > 0, f"{key}.eps", self.eps, "a number > 0")

    @property
    def normalize_logits(self) -> bool:
        """Whether logits are z-scored: as set, else on for CA-KLD (the paper) and off for plain KD."""
        return self.loss == "ca-kld" if self.normalize is None else self.normalize
