"""Helper library: the config sections of the baselines (``sd``, ``cskd``, ``pskd``, ``dlb``, ``pai``,
``epsd``, ``colt``, ``egp``); no method. Torch-free, so that a Config loads without torch
(bench/registry.py imports it before any method code; bench/methods/sections.py says why)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

from bench.config import AugmentConfig, TrainConfig, check
from bench.registry import register_section
from bench.stages import NOT_IN_STAGES


@register_section("sd")
@dataclass
class SDConfig:
    """How the self-distillation rows (cskd*, pskd*, dlb*) are run (docs/baselines.md, "Protocols")."""
    # harness: the grid's protocol, as every other row: the budget of budget.basis (equal by default:
    # the official recipe stretched to the proposed pipeline's student epochs), the grid's prunable set
    # (prune.layers: the classifier head stays dense) and augmentation (dataset.augment).
    # official: as each method's own paper runs it: its own recipe (cskd.official, ...), ProsPr's
    # prunable set (conv + linear: the head is pruned too) and the SD codes' augmentation
    # (official_augment); a labelled variant, <method>-official.
    protocol: Literal["harness", "official"] = "harness"
    # RandomCrop(32, 4) + flip, no rotation: cs-kd datasets.py:219-230, PS-KD
    # loader/custom_dataloader.py:74-92, DLB my_dataloader.py:237-258 (CIFAR; assumed for Tiny ImageNet)
    official_augment: AugmentConfig = field(
        default_factory=lambda: AugmentConfig(crop_padding=4, flip=True, rotate_deg=0.0))


@register_section("cskd")
@dataclass
class CSKDConfig:
    """CS-KD (Yun et al., CVPR 2020; alinlab/cs-kd)."""
    temperature: float = 4.0             # T (cs-kd train.py:34)
    lam: float = 1.0                     # lambda, weight of the class-wise KL term (cs-kd train.py:35)
    # true: the partner forward updates BatchNorm running statistics too, as the official two
    # train-mode forward passes do (cs-kd train.py:130-140); false: it leaves them as they are.
    partner_updates_bn: bool = True
    # 200 epochs, batch 128, SGD 0.1 without Nesterov, wd 1e-4; /10 taking effect at epochs 101 and 151
    official: TrainConfig = field(default_factory=lambda: TrainConfig(
        epochs=200, batch_size=128, lr=0.1, momentum=0.9, nesterov=False, weight_decay=1e-4, warmup_epochs=0.0,
        schedule="step", milestones=[101, 151], gamma=0.1, drop_last=False))

    def validate(self, key):
        check(self.temperature > 0, f"{key}.temperature", self.temperature, "a number > 0")
        check(self.lam >= 0, f"{key}.lam", self.lam, "a number >= 0")


@register_section("pskd")
@dataclass
class PSKDConfig:
    """PS-KD (Kim et al., ICCV 2021; lgcnsai/PS-KD-Pytorch). Its recipes always run with
    drop_last false, so that every sample's memory row is refreshed every epoch."""
    alpha_T: float = 0.8                 # alpha at the last epoch; alpha_t = alpha_T (t+1)/E (PS-KD main.py:69,323-324)
    # 300 epochs, batch 128, SGD 0.1 with Nesterov, wd 5e-4; x0.1 at epochs 150 and 225
    official: TrainConfig = field(default_factory=lambda: TrainConfig(
        epochs=300, batch_size=128, lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4, warmup_epochs=0.0,
        schedule="step", milestones=[150, 225], gamma=0.1, drop_last=False))

    def validate(self, key):
        check(0 <= self.alpha_T <= 1, f"{key}.alpha_T", self.alpha_T, "a number in [0, 1]")


@register_section("dlb")
@dataclass
class DLBConfig:
    """DLB (Shen et al., CVPR 2022; Meta-knowledge-Lab/DLB). The code sets no T or alpha: these
    are the paper's values (docs/baselines.md)."""
    temperature: float = 3.0             # T (DLB paper; dlb.py takes it as an argument with no default)
    alpha: float = 1.0                   # weight of the KL term (DLB paper; no default in dlb.py)
    # true: the second view's forward updates BatchNorm running statistics too, as the official two
    # train-mode forward passes do (DLB dlb.py:75-82); false: it leaves them as they are.
    second_view_updates_bn: bool = True
    # DLB's baseline recipe (base.py:32-38): 240 epochs, batch 64, SGD 0.05 with Nesterov, wd 5e-4,
    # x0.1 at 150, 180, 210
    official: TrainConfig = field(default_factory=lambda: TrainConfig(
        epochs=240, batch_size=64, lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4, warmup_epochs=0.0,
        schedule="step", milestones=[150, 180, 210], gamma=0.1, drop_last=False))

    def validate(self, key):
        check(self.temperature > 0, f"{key}.temperature", self.temperature, "a number > 0")
        check(self.alpha >= 0, f"{key}.alpha", self.alpha, "a number >= 0")


@register_section("pai")
@dataclass
class PaIConfig:
    """Pruning at initialisation of the SD rows (ProsPr: mil-ad/prospr, CLI defaults)."""
    # prospr: meta-gradient through the inner steps; snip: zero inner steps, |w * dL/dw| at init
    criterion: Literal["prospr", "snip"] = "prospr"
    inner_steps: int = 3                 # SGD steps unrolled before the meta-loss (prospr cli.py:58-63)
    inner_lr: float = 0.1                # inner SGD learning rate, momentum 0 (prospr cli.py:65-77)
    batch_size: int = 128                # the one batch reused by every inner step (prospr cli.py:88-100)
    # the prunable set, ranked globally; null: the protocol's (sd.protocol harness: prune.layers, the
    # set every other row prunes; official: conv + linear, as ProsPr prunes every Conv2d and Linear weight)
    layers: Optional[Literal["conv", "conv+linear", "conv-noshortcut"]] = None

    def validate(self, key):
        check(self.inner_steps >= 1, f"{key}.inner_steps", self.inner_steps,
               "an integer >= 1 (zero steps is criterion: snip)")
        check(self.inner_lr > 0, f"{key}.inner_lr", self.inner_lr, "a number > 0")
        check(self.batch_size >= 1, f"{key}.batch_size", self.batch_size, "an integer >= 1")


@register_section("epsd")
@dataclass
class EPSDConfig:
    """EPSD (reimpl.): the SD loss inside the scoring steps (no official code exists)."""
    # alpha of PS-KD's target during scoring: alpha_T, or the training schedule's first value
    # alpha_T / E (so small that EPSD-PS-KD is nearly Simple)
    pskd_alpha: Literal["alpha_T", "schedule"] = "alpha_T"


@register_section("colt")
@dataclass
class ColtConfig:
    """COLT's own settings (docs/baselines.md, "COLT"); its final training uses ``retrain``."""
    partitions: int = 2                  # class-split partitions: contiguous class ranges, relabelled
    rate: float = 0.15                   # fraction of each model's remaining conv weights pruned per round
    # Each round's training of each partition model: the COLT lab recipe (50 epochs, milestones
    # [21, 31, 46]: the official MultiStepLR([20, 30, 45]) steps one epoch late; no batch dropped).
    train: TrainConfig = field(default_factory=lambda: TrainConfig(drop_last=False))
    # the run fails if the target is not reached by this round (a stopping rule: not in the rounds' key)
    max_rounds: int = field(default=60, metadata=NOT_IN_STAGES)
    # true: the last round prunes only what is left to reach the target (a stated deviation, so that
    # COLT meets the other methods at the same sparsity); false: the official full round, which
    # overshoots the target (the record is then marked off target); the full rounds before it are the same
    exact_final_round: bool = field(default=True, metadata=NOT_IN_STAGES)

    def validate(self, key):
        check(self.partitions >= 2, f"{key}.partitions", self.partitions, "an integer >= 2")
        check(0 < self.rate < 1, f"{key}.rate", self.rate, "a number in (0, 1)")
        check(self.max_rounds >= 1, f"{key}.max_rounds", self.max_rounds, "an integer >= 1")


def _egp_recipe() -> TrainConfig:
    # EGP main.py:136-146: SGD 0.1, momentum 0.9, wd 1e-4, batch 128, MultiStepLR([80, 120], 0.1)
    # stepped per epoch, 160 epochs, no warm-up; DataLoader's default drop_last=False.
    return TrainConfig(epochs=160, batch_size=128, lr=0.1, momentum=0.9, weight_decay=1e-4, warmup_epochs=0.0,
                       schedule="step", milestones=[80, 120], gamma=0.1, drop_last=False)


@register_section("egp")
@dataclass
class EGPConfig:
    """EGP's own settings (docs/baselines.md, "EGP")."""
    dense: TrainConfig = field(default_factory=_egp_recipe)      # the dense model EGP starts from
    finetune: TrainConfig = field(default_factory=_egp_recipe)   # each iteration's fine-tune (fresh optimizer)
    # Training and entropy-pass augmentation: EGP's CIFAR one (crop 4, flip); Tiny ImageNet: flip only.
    augment: AugmentConfig = field(default_factory=lambda: AugmentConfig(crop_padding=4, flip=True, rotate_deg=0.0))
    rate: float = 0.5                    # fraction of the eligible layers' remaining weights removed per iteration
    entropy_batch_size: int = 128        # batch of the entropy pass (EGP: its train loader's)
    # EGP runs 9; a target beyond the last iteration's sparsity fails (a stopping rule: not in the keys)
    max_iterations: int = field(default=9, metadata=NOT_IN_STAGES)
    # EGP's set: the convs followed by a ReLU (EGP main.py:318-327); conv: the 1x1 shortcuts too
    # (a variant, each scored by the entropy of the ReLU after its block's residual add)
    layers: Literal["conv-noshortcut", "conv"] = "conv-noshortcut"
    # true: the last iteration's budget is only what is left to reach the target (a stated deviation);
    # false: the official full iteration, which overshoots (the record is then marked off target)
    exact_final_round: bool = field(default=True, metadata=NOT_IN_STAGES)

    def validate(self, key):
        check(0 < self.rate < 1, f"{key}.rate", self.rate, "a number in (0, 1)")
        check(self.entropy_batch_size >= 1, f"{key}.entropy_batch_size", self.entropy_batch_size, "an integer >= 1")
        check(self.max_iterations >= 1, f"{key}.max_iterations", self.max_iterations, "an integer >= 1")
