"""The one training loop every method uses.

SGD with momentum and weight decay, linear warm-up then a step or cosine schedule (per iteration),
bf16 autocast and channels_last on CUDA, evaluation after every epoch, masks re-applied after every
optimizer step. Metrics are accumulated on the device and read once per epoch: there is no host
sync per step. Phase times come from CUDA events on a GPU and ``perf_counter`` on the CPU.
"""
from __future__ import annotations

import contextlib
import math
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
import torch.nn as nn

from .config import ConfigError, RuntimeConfig, TrainConfig, precision
from .losses import CrossEntropy


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


@dataclass
class TrainResult:
    top1_final: float
    top1_best: float
    top5_final: float
    top5_best: float
    best_epoch: int
    history: list[dict] = field(default_factory=list)
    train_seconds: float = 0.0

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainResult":
        return cls(**d)


def resolve_device(runtime: RuntimeConfig) -> torch.device:
    if runtime.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(runtime.device)
    except RuntimeError:
        raise ConfigError(f"config key 'runtime.device' has value {runtime.device!r}; allowed: auto, cpu, "
                          "cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"config key 'runtime.device' is {runtime.device!r} but CUDA is not available on "
                              "this machine; use --set runtime.device=cpu (or auto)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"config key 'runtime.device' is {runtime.device!r} but this machine has "
                              f"{torch.cuda.device_count()} CUDA device(s); use cuda:0..cuda:{torch.cuda.device_count() - 1}")
    return dev


def use_amp(runtime: RuntimeConfig, device: torch.device) -> bool:
    return precision(runtime, device.type) == "bf16"


def use_channels_last(runtime: RuntimeConfig, device: torch.device) -> bool:
    return runtime.channels_last == "on" or (runtime.channels_last == "auto" and device.type == "cuda")


def autocast(runtime: RuntimeConfig, device: torch.device):
    if use_amp(runtime, device):
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


class PhaseTimer:
    """Wall-clock seconds per phase. On CUDA, events are recorded on the stream and read only when
    totals are asked for, so timing adds no synchronisation inside a phase."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self._seconds: dict[str, float] = {}
        self._pending: list[tuple[str, object, object]] = []

    @contextlib.contextmanager
    def phase(self, name: str):
        if self.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            try:
                yield
            finally:
                end.record()
                self._pending.append((name, start, end))
        else:
            t0 = time.perf_counter()
            try:
                yield
            finally:
                self._seconds[name] = self._seconds.get(name, 0.0) + time.perf_counter() - t0

    def seconds(self, name: str | None = None):
        if self._pending:
            torch.cuda.synchronize()
            for n, s, e in self._pending:
                self._seconds[n] = self._seconds.get(n, 0.0) + s.elapsed_time(e) / 1000.0
            self._pending.clear()
        return dict(self._seconds) if name is None else self._seconds.get(name, 0.0)


def lr_factor(step: int, total: int, warmup: int, recipe: TrainConfig, steps_per_epoch: int) -> float:
    """LR multiplier at iteration ``step``: linear warm-up, then the recipe's schedule."""
    if step < warmup:
        return (step + 1) / warmup
    if recipe.schedule == "constant":
        return 1.0
    if recipe.schedule == "cosine":
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * progress))
    epoch = step // steps_per_epoch
    return recipe.gamma ** sum(epoch >= m for m in recipe.milestones)


@torch.no_grad()
def evaluate(model: nn.Module, data, runtime: RuntimeConfig) -> tuple[float, float]:
    """Top-1 and top-5 test accuracy in percent (one host sync)."""
    device = data.test_x.device
    was_training = model.training
    model.eval()
    correct = torch.zeros(2, device=device, dtype=torch.long)
    k = min(5, data.num_classes)
    cl = use_channels_last(runtime, device)
    for batch in data.test_batches(runtime.eval_batch_size):
        x = batch.x.contiguous(memory_format=torch.channels_last) if cl else batch.x
        with autocast(runtime, device):
            logits = model(x)
        top = logits.topk(k, dim=1).indices
        hit = top == batch.y[:, None]
        correct += torch.stack([hit[:, 0].sum(), hit.any(dim=1).sum()])
    model.train(was_training)
    c1, c5 = correct.tolist()
    n = len(data.test_y)
    return 100.0 * c1 / n, 100.0 * c5 / n


class _Progress:
    """A rich progress bar on a terminal, one plain line per epoch otherwise (CI logs)."""

    def __init__(self, description: str, epochs: int, log: Callable[[str], None]):
        self.description, self.epochs, self.log = description, epochs, log
        self.bar = None
        if sys.stdout.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TimeRemainingColumn(), TextColumn("{task.fields[info]}"), transient=True)
            self.task = self.bar.add_task(description, total=epochs, info="")
            self.bar.start()

    def update(self, epoch: int, info: str):
        if self.bar is not None:
            self.bar.update(self.task, completed=epoch, info=info)
        self.log(f"  {self.description} epoch {epoch}/{self.epochs} {info}")

    def close(self):
        if self.bar is not None:
            self.bar.stop()


def train(model: nn.Module, data, recipe: TrainConfig, *, runtime: RuntimeConfig, timer: PhaseTimer,
          seed: int, augment, objective=None, masks=None, after_backward: Optional[Callable[[], None]] = None,
          phase: str = "train", log: Callable[[str], None] = print) -> TrainResult:
    """Train ``model`` in place with a fresh optimizer; evaluate after every epoch.

    ``objective(model, batch) -> (loss, logits)`` defaults to cross-entropy; an objective with state
    is told each epoch's start (``objective.start_epoch(epoch, epochs)``, epoch counted from 0).
    ``masks`` (if given) mask the gradients before and the weights after every optimizer step. ``after_backward()`` runs after each backward pass and before
    the step (importance scoring reads gradients there). Training time is recorded under ``phase``
    and evaluation under ``"eval"`` in ``timer``.
    """
    device = data.train_x.device
    objective = objective or CrossEntropy(recipe.label_smoothing)
    cl = use_channels_last(runtime, device)
    opt = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                          nesterov=recipe.nesterov and recipe.momentum > 0, weight_decay=recipe.weight_decay)
    steps_per_epoch = data.steps_per_epoch(recipe.batch_size, recipe.drop_last)
    total = steps_per_epoch * recipe.epochs
    warmup = round(recipe.warmup_epochs * steps_per_epoch)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_factor(s, total, warmup, recipe, steps_per_epoch))
    gen = torch.Generator(device=device).manual_seed(seed)
    if masks is not None:
        masks.apply()

    history, best = [], (-1.0, 0, 0.0)
    train_before = timer.seconds(phase)
    progress = _Progress(phase, recipe.epochs, log)
    try:
        for epoch in range(1, recipe.epochs + 1):
            if hasattr(objective, "start_epoch"):
                objective.start_epoch(epoch - 1, recipe.epochs)
            model.train()
            stats = torch.zeros(2, device=device)  # loss sum, correct (read once per epoch)
            count = 0
            lr = opt.param_groups[0]["lr"]
            with timer.phase(phase):
                for batch in data.train_batches(recipe.batch_size, augment, gen, recipe.drop_last):
                    if cl:
                        batch = batch._replace(x=batch.x.contiguous(memory_format=torch.channels_last))
                    with autocast(runtime, device):
                        loss, logits = objective(model, batch)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    if after_backward is not None:
                        after_backward()
                    if masks is not None:
                        masks.mask_grads()
                    opt.step()
                    sched.step()
                    if masks is not None:
                        masks.apply()
                    n = batch.y.numel()
                    count += n
                    stats += torch.stack([loss.detach().float() * n,
                                          (logits.detach().argmax(1) == batch.y).sum().float()])
            with timer.phase("eval"):
                top1, top5 = evaluate(model, data, runtime)
            loss_sum, correct = stats.tolist()
            if not math.isfinite(loss_sum):
                raise NonFiniteLossError(f"{phase}: training loss is {loss_sum / count} in epoch {epoch} "
                                         f"(lr {lr:g}); lower the learning rate or check the objective")
            history.append({"epoch": epoch, "train_loss": loss_sum / count, "train_top1": 100 * correct / count,
                            "test_top1": top1, "test_top5": top5, "lr": lr})
            if top1 > best[0]:
                best = (top1, epoch, top5)
            progress.update(epoch, f"loss {loss_sum / count:.3f} train {100 * correct / count:.1f}% "
                                   f"test {top1:.2f}% (best {best[0]:.2f}%)")
    finally:
        progress.close()
    return TrainResult(top1_final=history[-1]["test_top1"], top1_best=best[0],
                       top5_final=history[-1]["test_top5"], top5_best=best[2], best_epoch=best[1],
                       history=history, train_seconds=timer.seconds(phase) - train_before)
