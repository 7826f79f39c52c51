"""Teacher-guided importance of the proposed method: bias-corrected EMA of |w * grad| (docs/method.md, Pipeline: importance, EMA).

    s_t = |w_t * g_t|   (or |g_t|, or (w_t * g_t)^2)
    m_t = beta * m_{t-1} + (1 - beta) * s_t,   m_0 = 0
    score = m_t / (1 - beta^t)                  (Adam-style bias correction)

The absolute value is taken before averaging: signed gradients would cancel over steps.
``accumulate``: ``ema`` as above; ``ema-whole`` is the same with the caller's beta = 1 - 1/N (a horizon
of the whole fine-tune); ``sum`` adds every s_t alike (no decay, no correction).
"""
from __future__ import annotations

import torch
from torch import Tensor

SALIENCIES = ("weight-grad", "grad", "weight-grad-squared")
ACCUMULATIONS = ("ema", "ema-whole", "sum")


class EMAImportance:
    """Tracks the importance of ``params``; call ``update()`` after each backward pass."""

    def __init__(self, params: list[Tensor], beta: float = 0.99, saliency: str = "weight-grad",
                 ema: bool = True, accumulate: str = "ema"):
        if saliency not in SALIENCIES:
            raise ValueError(f"saliency must be one of {SALIENCIES}, got {saliency!r}")
        if accumulate not in ACCUMULATIONS:
            raise ValueError(f"accumulate must be one of {ACCUMULATIONS}, got {accumulate!r}")
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"beta must be in [0, 1), got {beta}")
        self.params = list(params)
        self.beta, self.saliency, self.ema, self.accumulate = float(beta), saliency, ema, accumulate
        # float32 accumulators whatever the parameter dtype: small s values must not underflow.
        self.m = [torch.zeros_like(p, dtype=torch.float32, memory_format=torch.contiguous_format)
                  for p in self.params]
        # Steps per tensor (host ints, no syncs): a tensor whose grad was None on a step is skipped,
        # so its bias correction must count only the steps it actually received.
        self.steps = [0] * len(self.params)
        self.t = 0                                   # update() calls

    def after_backward(self, loop, step: int) -> None:
        """The loop's callback event (callbacks.Callback): the gradients of this step are there."""
        self.update()

    @torch.no_grad()
    def update(self) -> None:
        live = [i for i, p in enumerate(self.params) if p.grad is not None]
        self.t += 1
        if not live:
            return
        grads = [self.params[i].grad.float() for i in live]
        if self.saliency == "weight-grad":
            s = torch._foreach_mul(grads, [self.params[i].float() for i in live])
            torch._foreach_abs_(s)                   # s is a fresh list here
        elif self.saliency == "weight-grad-squared":
            s = torch._foreach_mul(grads, [self.params[i].float() for i in live])
            torch._foreach_mul_(s, s)                # (w g)^2: the Fisher / second-order Taylor form
        else:
            s = torch._foreach_abs(grads)            # fresh tensors: never touch p.grad in place
        m = [self.m[i] for i in live]
        if not self.ema:
            torch._foreach_copy_(m, s)               # keep only the latest step's saliency
        elif self.accumulate == "sum":
            torch._foreach_add_(m, s)                # every step alike
        else:
            torch._foreach_mul_(m, self.beta)
            torch._foreach_add_(m, s, alpha=1.0 - self.beta)
        for i in live:
            self.steps[i] += 1

    @torch.no_grad()
    def scores(self) -> list[Tensor]:
        """Bias-corrected EMA per tensor (new tensors), or the latest saliency when ema=False.

        A tensor that never had a gradient scores all zeros."""
        if self.t == 0:
            raise RuntimeError("EMAImportance.scores() called before any update(): run at least one "
                               "backward pass and update() first")
        if not self.ema or self.accumulate == "sum":
            return [m.clone() for m in self.m]
        # beta ** t in python float: underflows to 0.0 for large t, which is the right limit.
        return [m / (1.0 - self.beta ** n) if n > 0 else torch.zeros_like(m)
                for m, n in zip(self.m, self.steps)]

    def state_dict(self) -> dict:
        return {"t": self.t, "steps": list(self.steps), "m": [m.clone() for m in self.m],
                "beta": self.beta, "saliency": self.saliency, "ema": self.ema, "accumulate": self.accumulate}

    def load_state_dict(self, state: dict) -> None:
        for k in ("beta", "saliency", "ema", "accumulate"):   # resuming must not mix two definitions
            if k in state and state[k] != getattr(self, k):
                raise ValueError(f"checkpoint importance has {k}={state[k]!r}, "
                                 f"this tracker {getattr(self, k)!r}")
        if len(state["m"]) != len(self.m):
            raise ValueError(f"checkpoint holds {len(state['m'])} importance buffers, "
                             f"this tracker has {len(self.m)}")
        for i, (mine, theirs) in enumerate(zip(self.m, state["m"])):
            if mine.shape != theirs.shape:
                raise ValueError(f"importance buffer {i}: checkpoint shape {list(theirs.shape)}, "
                                 f"expected {list(mine.shape)}")
            mine.copy_(theirs)
        self.t, self.steps = int(state["t"]), [int(n) for n in state["steps"]]
