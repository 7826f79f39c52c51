"""Helper library: the config sections of the methods in this package (``tgp``, ``gmp``); no method.

Built-in sections live in their package's ``sections.py`` rather than beside the method code, so
that a Config loads without torch (bench/registry.py imports these modules first); a plug-in file
may keep its section in the file itself (docs/adding-a-method.md)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..config import ADDED_LATER, TrainConfig, check
from ..registry import register_section


@register_section("tgp")
@dataclass
class TGPConfig:
    """Teacher-guided importance of the proposed method (docs/method.md)."""
    finetune: TrainConfig = field(default_factory=lambda: TrainConfig(
        epochs=10, lr=0.01, warmup_epochs=0.0, schedule="cosine", milestones=[]))
    saliency: Literal["weight-grad", "grad", "weight-grad-squared"] = "weight-grad"   # |w g|, |g|, (w g)^2
    ema: bool = True                     # False: the scores of the last batch alone
    beta: float = 0.99                   # EMA decay (bias-corrected)
    # how the per-step saliencies add up: an EMA of decay beta, an EMA whose horizon is the whole
    # fine-tune (beta = 1 - 1/steps), or the plain sum (every step alike); docs/method.md
    accumulate: Literal["ema", "ema-whole", "sum"] = field(default="ema", metadata=ADDED_LATER)

    def validate(self, key):
        check(0 <= self.beta < 1, f"{key}.beta", self.beta, "a number in [0, 1)")


@register_section("gmp")
@dataclass
class GMPConfig:
    """Gradual magnitude pruning (docs/baselines.md, "GMP"); defaults tagged there."""
    start: Literal["dense", "init"] = "dense"        # prune while retraining the dense model, or from init
    initial_sparsity: float = 0.0                    # s_i: the schedule's first value
    begin: float = 0.0                               # t0, as a fraction of the training call's steps
    end: float = 0.75                                # t0 + n dt, as a fraction (the rest trains the final mask)
    every_steps: int = 100                           # dt: steps between mask updates
    scope: Literal["global", "layerwise"] = "global"  # one |w| ranking, or every layer to the same fraction

    def validate(self, key):
        check(0 <= self.initial_sparsity < 1, f"{key}.initial_sparsity", self.initial_sparsity, "a number in [0, 1)")
        check(0 <= self.begin <= self.end <= 1, f"{key}.begin", (self.begin, self.end),
               "begin <= end, both in [0, 1]")
        check(self.every_steps >= 1, f"{key}.every_steps", self.every_steps, "an integer >= 1")
