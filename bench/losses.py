"""Objectives and the distillation maths shared by the proposed method and the baselines.

Maths: docs/method.md. An objective is ``objective(model, batch) -> (loss, logits)`` (docs/design.md,
"Objectives"); ``batch`` has fields ``x``, ``y``, ``idx``.

All KD maths runs in float32: under bf16 autocast the logits are cast with ``.float()`` first, and
the ops used here (mean, std, log_softmax, exp, sum) are not ones autocast lowers to bf16.
"""
from __future__ import annotations

import contextlib
import copy
import itertools
from typing import Callable, Iterable, Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .distill import KDConfig
from .models import fold_batchnorm

Gamma = Union[float, Tensor]


# --------------------------------------------------------------------------- maths

def normalize_logits(z: Tensor, eps: float = 1e-7) -> Tensor:
    """Per-sample z-score over the class dim: (z - mean) / (std + eps)."""
    mu = z.mean(dim=-1, keepdim=True)
    # Population std (correction=0), as the paper writes sigma. Sun et al.'s code uses the unbiased
    # std; after softmax the difference is a constant rescale that the temperature absorbs.
    sigma = z.std(dim=-1, keepdim=True, correction=0)
    return (z - mu) / (sigma + eps)


def tempered_log_probs(z: Tensor, temperature: float, normalize: bool, eps: float = 1e-7) -> Tensor:
    """log softmax(normalize(z) / T), or log softmax(z / T) without normalisation."""
    z = z.float()
    if normalize:
        z = normalize_logits(z, eps)
    return F.log_softmax(z / temperature, dim=-1)


def kl(p_log: Tensor, q_log: Tensor) -> Tensor:
    """Per-sample KL(P || Q) = sum_c p_c (log p_c - log q_c), from log-probabilities.

    Works on log-probs throughout (p = exp(log p)), so no log(0) is ever taken; log_softmax of
    finite logits is finite, so every term is finite.
    """
    return (p_log.exp() * (p_log - q_log)).sum(dim=-1)


def _gamma_per_sample(gamma: Gamma, batch: int, like: Tensor) -> Gamma:
    if not torch.is_tensor(gamma):
        return float(gamma)
    if gamma.shape != (batch,):
        raise ValueError(f"per-sample gamma must have shape [{batch}], got {list(gamma.shape)}")
    return gamma.detach().to(device=like.device, dtype=torch.float32)   # gamma is never trained


def ca_kld(student_logits: Tensor, teacher_logits: Tensor, gamma: Gamma, *, temperature: float,
           normalize: bool = True, t2_scale: bool = True, eps: float = 1e-7) -> Tensor:
    """CA-KLD: gamma * KL(P_S || P_T) + (1 - gamma) * KL(P_T || P_S), batch mean (x T^2).

    ``gamma`` is a float or a per-sample tensor of shape [B]. gamma=0 is the Hinton direction
    KL(P_T || P_S) (mode-covering), gamma=1 the reverse KL(P_S || P_T) (mode-seeking).
    The teacher side is the target and is detached.
    """
    s_log = tempered_log_probs(student_logits, temperature, normalize, eps)
    t_log = tempered_log_probs(teacher_logits.detach(), temperature, normalize, eps)
    g = _gamma_per_sample(gamma, s_log.shape[0], s_log)
    per_sample = g * kl(s_log, t_log) + (1 - g) * kl(t_log, s_log)
    return per_sample.mean() * (temperature ** 2 if t2_scale else 1.0)


def hinton_kd(student_logits: Tensor, teacher_logits: Tensor, *, temperature: float,
              normalize: bool = False, t2_scale: bool = True, eps: float = 1e-7) -> Tensor:
    """Hinton KD: KL(P_T || P_S), batch mean (x T^2). The teacher side is detached."""
    s_log = tempered_log_probs(student_logits, temperature, normalize, eps)
    t_log = tempered_log_probs(teacher_logits.detach(), temperature, normalize, eps)
    return kl(t_log, s_log).mean() * (temperature ** 2 if t2_scale else 1.0)


def teacher_confidence(teacher_logits: Tensor) -> Tensor:
    """Per-sample max of the plain softmax (no T, no normalisation: BitDistiller), detached."""
    return F.softmax(teacher_logits.detach().float(), dim=-1).amax(dim=-1)


def gamma_confidence(kd, teacher_logits: Tensor) -> Tensor:
    """The per-sample top probability CA-KLD's gamma is made of (``kd.gamma_logits``): the plain softmax
    of the raw logits (``raw``, the default), or of the logits as the loss uses them (``as-used``:
    z-scored if ``kd.normalize_logits``, divided by T), detached."""
    if kd.gamma_logits == "raw":
        return teacher_confidence(teacher_logits)
    logp = tempered_log_probs(teacher_logits.detach().float(), kd.temperature, kd.normalize_logits, kd.eps)
    return logp.exp().amax(dim=-1)


@torch.no_grad()
def teacher_mean_confidence(teacher: nn.Module, batches: Iterable, max_batches: int,
                            confidence: Callable[[Tensor], Tensor] = teacher_confidence) -> float:
    """gamma for CA-KLD: mean over samples of ``confidence`` (default teacher_confidence) on the first
    max_batches batches."""
    was_training = teacher.training
    teacher.eval()
    try:
        total, count = None, 0
        for batch in itertools.islice(batches, max_batches):
            conf = confidence(teacher(batch.x)).sum()
            total = conf if total is None else total + conf    # stays on the device: no sync
            count += batch.x.shape[0]
    finally:
        teacher.train(was_training)
    if count == 0:
        raise ValueError("teacher_mean_confidence: no batches to measure the teacher's confidence on")
    return total.item() / count                                # the one host sync


# --------------------------------------------------------------------------- objectives

@contextlib.contextmanager
def frozen_bn_stats(model: nn.Module):
    """Forward passes inside this block still normalise with batch statistics (train mode) but leave
    BatchNorm's running statistics as they were: a second forward pass in one training step (a
    partner batch, a second view) must not update them twice unless the method says so."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    saved = [(m.momentum, m.num_batches_tracked.clone()) for m in bns]
    for m in bns:
        m.momentum = 0.0           # running = (1 - 0) * running + 0 * batch: unchanged
    try:
        yield
    finally:
        for m, (momentum, tracked) in zip(bns, saved):
            m.momentum = momentum
            m.num_batches_tracked.copy_(tracked)


class Objective:
    """Base of the training objectives: ``objective(model, batch) -> (loss, logits)``.

    An objective with state across steps or epochs (PS-KD's memory, DLB's previous batch) keeps it
    in the object: ``start_epoch(epoch, epochs)`` is called by the engine before every epoch (epoch
    counted from 0), and ``state_dict()`` / ``load_state_dict()`` carry the state into checkpoints.
    An objective that runs a network besides the student (the teacher) prepares it in ``prepare``."""

    # True where a training step with this objective is pure device work on ``batch.x`` and
    # ``batch.y`` (no host-side state, no extra random draws): it may be replayed as a CUDA graph
    # (runtime.cuda_graphs, bench/graphs.py). Declared per class, never inherited.
    GRAPH_SAFE = False

    def prepare(self, precision: str, compile: Callable[[nn.Module], nn.Module], runtime=None) -> None:
        """Called by the engine before each training call: ``precision`` is the run's ('bf16' or
        'fp32'); ``compile(module)`` is the module compiled when ``runtime.compile`` is on, else itself;
        ``runtime`` the run's runtime section (speed switches)."""

    def start_epoch(self, epoch: int, epochs: int) -> None:
        pass

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class CrossEntropy(Objective):
    GRAPH_SAFE = True

    def __init__(self, label_smoothing: float = 0.0):
        self.label_smoothing = label_smoothing

    def __call__(self, model: nn.Module, batch) -> tuple[Tensor, Tensor]:
        logits = model(batch.x)
        loss = F.cross_entropy(logits.float(), batch.y, label_smoothing=self.label_smoothing)
        return loss, logits


class Distillation(Objective):
    """alpha * KD(student, teacher) + (1 - alpha) * CE(raw student logits, y) (docs/method.md, Pipeline: joint loss).

    KD is CA-KLD (``kd.loss == "ca-kld"``) with gamma = the precomputed teacher-mean confidence
    (``kd.gamma == "teacher-mean"``, pass it as ``gamma``) or the per-sample teacher confidence
    (``"per-sample"``), or Hinton's KL(P_T || P_S) (``kd.loss == "kd"``). Logits are z-scored per
    sample when ``kd.normalize_logits`` (default: for CA-KLD only; plain KD stays on raw logits).

    Speed switches (``prepare``'s runtime): ``teacher_fold_bn`` runs the teacher from a copy with its
    BatchNorm folded into its convolutions; ``teacher_stream`` runs its forward on a second CUDA
    stream while the student's forward runs on the current one (same values; CUDA only).
    """

    GRAPH_SAFE = True

    def __init__(self, teacher: nn.Module, kd: KDConfig, gamma: Optional[float] = None,
                 label_smoothing: float = 0.0):
        if kd.loss == "ca-kld" and kd.gamma in ("teacher-mean", "fixed"):
            if gamma is None:
                raise ValueError("Distillation with kd.gamma='teacher-mean' needs gamma; compute it "
                                 "with teacher_mean_confidence(teacher, train batches, kd.gamma_batches)")
            if not 0.0 <= gamma <= 1.0:
                raise ValueError(f"gamma must be in [0, 1], got {gamma}")
        self.teacher = teacher
        self.kd = kd
        self.gamma = gamma
        self.label_smoothing = label_smoothing
        # The teacher is frozen: no grads are ever computed for or stored in its parameters.
        teacher.eval()
        teacher.requires_grad_(False)
        self._teacher_forward: Callable[[Tensor], Tensor] = teacher
        self._runner: nn.Module = teacher                  # the module the forward runs (a copy or the teacher)
        self._copies: dict[tuple[bool, bool], nn.Module] = {}
        self._stream = None                                # a CUDA stream with runtime.teacher_stream on

    def prepare(self, precision: str, compile: Callable[[nn.Module], nn.Module], runtime=None) -> None:
        """Under bf16 autocast the teacher runs from a copy whose conv and linear weights are stored
        in bf16: autocast would round them to bf16 on every step anyway (the same rounding), so the
        logits are unchanged and the per-step weight casts are gone. BatchNorm stays in float32.
        With ``runtime.teacher_fold_bn`` on, that copy has its BatchNorm folded first."""
        bf16 = precision == "bf16"
        fold = runtime is not None and runtime.teacher_fold_bn == "on"
        if (bf16, fold) not in self._copies:
            teacher = self.teacher
            if fold:
                channels_last = any(p.dim() == 4 and p.is_contiguous(memory_format=torch.channels_last)
                                    and not p.is_contiguous() for p in teacher.parameters())
                teacher = fold_batchnorm(teacher)
                if channels_last:
                    teacher = teacher.to(memory_format=torch.channels_last)
            if bf16:
                teacher = copy.deepcopy(teacher) if teacher is self.teacher else teacher
                for m in teacher.modules():
                    if isinstance(m, (nn.Conv2d, nn.Linear)):
                        m.to(torch.bfloat16)
            self._copies[(bf16, fold)] = teacher.eval().requires_grad_(False)
        self._runner = self._copies[(bf16, fold)]
        self._teacher_forward = compile(self._runner)
        device = next(self.teacher.parameters()).device
        on = runtime is not None and runtime.teacher_stream == "on" and device.type == "cuda"
        self._stream = torch.cuda.Stream(device) if on else None

    def teacher_logits(self, x: Tensor) -> Tensor:
        """The frozen teacher's logits, computed in inference mode (no autograd bookkeeping at all)."""
        self.teacher.eval()       # cheap; guards against a stray .train() on a parent module
        self._runner.eval()
        with torch.inference_mode():
            z = self._teacher_forward(x)
        return z.clone()          # a normal tensor: inference tensors cannot be saved for backward

    def _both_forwards(self, model: nn.Module, x: Tensor) -> tuple[Tensor, Tensor]:
        """(student logits, teacher logits); with a teacher stream, the teacher's forward is queued on
        it first and the student's on the current stream, so that the GPU can run both at once."""
        if self._stream is None:
            return model(x), self.teacher_logits(x)
        main = torch.cuda.current_stream(x.device)
        self._stream.wait_stream(main)                     # x is ready before the teacher reads it
        with torch.cuda.stream(self._stream):
            teacher_logits = self.teacher_logits(x)
        logits = model(x)
        main.wait_stream(self._stream)
        if not torch.cuda.is_current_stream_capturing():   # a graph's memory is static: nothing to guard
            teacher_logits.record_stream(main)             # made on the side stream, used on this one
        return logits, teacher_logits

    def kd_term(self, student_logits: Tensor, teacher_logits: Tensor) -> Tensor:
        kd = self.kd
        s, t = student_logits.float(), teacher_logits.float()   # float32 even under bf16 autocast
        if kd.loss == "kd":
            return hinton_kd(s, t, temperature=kd.temperature, normalize=kd.normalize_logits,
                             t2_scale=kd.t2_scale, eps=kd.eps)
        gamma = gamma_confidence(kd, t) if kd.gamma == "per-sample" else self.gamma
        return ca_kld(s, t, gamma, temperature=kd.temperature, normalize=kd.normalize_logits,
                      t2_scale=kd.t2_scale, eps=kd.eps)

    def __call__(self, model: nn.Module, batch) -> tuple[Tensor, Tensor]:
        logits, teacher_logits = self._both_forwards(model, batch.x)
        ce = F.cross_entropy(logits.float(), batch.y, label_smoothing=self.label_smoothing)
        alpha = self.kd.alpha
        loss = alpha * self.kd_term(logits, teacher_logits) + (1 - alpha) * ce
        return loss, logits

    def state_dict(self) -> dict:
        return {"gamma": self.gamma}

    def load_state_dict(self, state: dict) -> None:
        self.gamma = state.get("gamma", self.gamma)
