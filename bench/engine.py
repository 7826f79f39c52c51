"""The one training loop every method uses (open_lth's ``training/train.py``: a short loop; what
it does besides training is in ``bench/callbacks.py``, resuming in ``bench/checkpoint.py``, device
policy in ``bench/runtime.py``; a method reaches inside with callbacks of the same protocol,
``callbacks.Callback``).

SGD with momentum and weight decay (fused on CUDA), linear warm-up then a step or cosine schedule
(per iteration), channels_last, bf16 autocast on CUDA (torch.compile with runtime.compile: on), evaluation after every
epoch, masks re-applied after every optimizer step. Metrics are accumulated on the device and read
once per epoch; the NaN/inf flag is read every ``runtime.nonfinite_check_steps`` steps: no other
host sync happens in a step. Phase times come from CUDA events on a GPU and ``perf_counter`` on
the CPU; time spent compiling is moved out of them into a ``compile`` phase.
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
import torch.nn as nn

from . import callbacks as C, graphs
from .callbacks import NonFiniteLossError  # noqa: F401  (raised by the loop; callers catch it from here)
from .checkpoint import Best, resume, snapshot
from .config import RuntimeConfig, TrainConfig
from .interrupt import Interrupted, fault_point, stop_requested, stop_signal
from .losses import CrossEntropy
from .runtime import autocast, compile_module, compile_seconds, precision, use_channels_last, use_compile


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


def make_optimizer(params, recipe: TrainConfig, device: torch.device) -> torch.optim.SGD:
    """The recipe's SGD: one fused kernel for all parameters on CUDA, the for-each path elsewhere."""
    fast = {"fused": True} if device.type == "cuda" else {}
    return torch.optim.SGD(params, lr=recipe.lr, momentum=recipe.momentum,
                           nesterov=recipe.nesterov and recipe.momentum > 0, weight_decay=recipe.weight_decay,
                           **fast)


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

    def add(self, name: str, seconds: float) -> None:
        """Count ``seconds`` spent earlier (e.g. before a resumed run was interrupted)."""
        self._seconds[name] = self._seconds.get(name, 0.0) + seconds

    def move(self, src: str, dst: str, seconds: float) -> None:
        """Count ``seconds`` measured inside phase ``src`` under ``dst`` instead (compile time)."""
        if seconds > 0:
            self.add(src, -seconds)
            self.add(dst, seconds)

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


_NOTHING = contextlib.nullcontext()


def _unprofiled(name: str):
    return _NOTHING


def _timed_batches(batches, section):
    """``batches``, with the time spent producing each one (gather, augmentation) counted as data."""
    it = iter(batches)
    while True:
        with section("data"):
            batch = next(it, None)
        if batch is None:
            return
        yield batch


class Loop:
    """One training call's state: what the step, the callbacks and the epoch checkpoint read and set."""

    def __init__(self, model, data, recipe: TrainConfig, runtime: RuntimeConfig, timer: PhaseTimer, seed: int,
                 objective, masks, state: Optional[dict], phase: str, hooks, profile):
        self.device = device = data.train_x.device
        self.model, self.data, self.recipe, self.runtime, self.timer, self.phase = model, data, recipe, runtime, timer, phase
        self.objective = objective or CrossEntropy(recipe.label_smoothing)
        self.masks, self.state = masks, dict(state or {})
        self.compiling = use_compile(runtime)
        self.net = compile_module(model) if self.compiling else model   # runs the forwards; ``model`` is saved
        if hasattr(self.objective, "prepare"):
            self.objective.prepare(precision(runtime, device.type), compile_module if self.compiling else (lambda m: m),
                                   runtime=runtime)
        self.section = profile.section if profile is not None else _unprofiled
        self.opt = make_optimizer(model.parameters(), recipe, device)
        self.steps_per_epoch = data.steps_per_epoch(recipe.batch_size, recipe.drop_last)
        self.total = self.steps_per_epoch * recipe.epochs
        self.warmup = round(recipe.warmup_epochs * self.steps_per_epoch)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, self.factor)
        self.gen = torch.Generator(device=device).manual_seed(seed)
        self.history, self.best = [], Best()
        self.epoch, self.skip, self.count = 0, 0, 0      # where this call is: epoch, step inside it; samples
        self.stats = torch.zeros(2, device=device)     # loss sum, correct (read once per epoch)
        self.bad_at = torch.full((), -1, dtype=torch.long, device=device)   # first step with a non-finite loss
        self.steps = torch.zeros((), dtype=torch.long, device=device)        # steps taken (on the device: no sync)
        self.before = {k: timer.seconds(k) for k in (phase, "eval", "compile")}
        self.method_hooks = list(hooks)                 # the method's callbacks (C.Callback), in its order
        self.events: dict[str, list] = {}              # event -> bound methods of every callback (attach)
        self.graphed = None                             # a GraphedStep when this call replays CUDA graphs
        if masks is not None:
            masks.apply()

    def factor(self, step: int) -> float:
        return lr_factor(step, self.total, self.warmup, self.recipe, self.steps_per_epoch)

    def lr(self, step: int) -> float:
        return self.recipe.lr * self.factor(step)

    def seconds(self) -> dict:
        """Seconds this call has spent so far, per phase (its own, eval, compile)."""
        return {k: self.timer.seconds(k) - v for k, v in self.before.items()}

    def step(self, batch, step: int = -1) -> None:
        """One training step's device work: eager, or recorded into a CUDA graph (``graphed``; never
        with step hooks), so everything it updates is updated in place. ``step``: steps taken before."""
        section, event, masks = self.section, self.events, self.masks
        for h in event["before_forward"]:
            h(self, step, batch)
        with section("forward"), autocast(self.runtime, self.device, cache=self.graphed is None):
            loss, logits = self.objective(self.net, batch)
        for h in event["after_forward"]:
            h(self, step, loss, logits)
        with section("backward"):
            self.opt.zero_grad(set_to_none=self.graphed is None)     # a graph keeps the gradients' addresses
            loss.backward()
            for h in event["after_backward"]:
                h(self, step)
        with section("masks"):
            if masks is not None:
                masks.mask_grads()
        with section("optimizer"):
            self.opt.step()
        with section("masks"):
            if masks is not None:
                masks.apply()
        with section("metrics"):
            n = batch.y.numel()
            loss = loss.detach().float()
            self.steps.add_(1)
            self.bad_at.copy_(torch.where((self.bad_at < 0) & ~torch.isfinite(loss), self.steps, self.bad_at))
            self.stats.add_(torch.stack([loss * n, (logits.detach().argmax(1) == batch.y).sum().float()]))

    def end_epoch(self, epoch: int, top1: float, top5: float, whole: Optional[tuple[float, float]] = None) -> None:
        """The epoch's history row (the one host read of its training metrics) and the best epoch.
        ``top1``/``top5``: on the monitored test images; ``whole``: on the whole test split, when that
        differs (the last epoch of a call with a monitoring subset)."""
        loss_sum, correct = self.stats.tolist()
        self.history.append({"epoch": epoch + 1, "train_loss": loss_sum / self.count,
                             "train_top1": 100 * correct / self.count, "test_top1": top1, "test_top5": top5,
                             "lr": self.lr(epoch * self.steps_per_epoch)})
        if whole is not None:
            self.history[-1].update(test_top1_all=whole[0], test_top5_all=whole[1])
        if top1 > self.best.top1:
            self.best = Best(top1, epoch + 1, top5)

    def attach(self, callbacks: list) -> None:
        """The call's callbacks, in order: each event runs the methods of every callback that has it."""
        self.callbacks = list(callbacks)
        self.events = {name: [getattr(c, name) for c in callbacks if hasattr(c, name)] for name in C.EVENTS}
        # a method callback on a step event keeps the call eager (bench/graphs.py)
        self.step_hooks = any(hasattr(h, n) for h in self.method_hooks for n in C.STEP_EVENTS)

    def run(self, event: str, *args) -> None:
        for h in self.events.get(event, ()):
            h(self, *args)

    def result(self) -> TrainResult:
        last, best = self.history[-1], self.best
        return TrainResult(top1_final=last.get("test_top1_all", last["test_top1"]), top1_best=best.top1,
                           top5_final=last.get("test_top5_all", last["test_top5"]),
                           top5_best=best.top5, best_epoch=best.epoch, history=self.history,
                           train_seconds=self.seconds()[self.phase])


def _batches(loop: Loop, augment):
    """The epoch's training batches (channels_last when the run uses it; timed as data when profiled)."""
    batches = loop.data.train_batches(loop.recipe.batch_size, augment, loop.gen, loop.recipe.drop_last)
    if use_channels_last(loop.runtime):
        batches = (b._replace(x=b.x.contiguous(memory_format=torch.channels_last)) for b in batches)
    return batches if loop.section is _unprofiled else _timed_batches(batches, loop.section)


def train(model: nn.Module, data, recipe: TrainConfig, *, runtime: RuntimeConfig, timer: PhaseTimer,
          seed: int, augment, objective=None, masks=None,
          hooks=(), state: Optional[dict] = None, checkpoint=None, phase: str = "train",
          log: Callable[[str], None] = print, profile=None) -> TrainResult:
    """Train ``model`` in place with a fresh optimizer; evaluate after every epoch.

    ``objective(model, batch) -> (loss, logits)`` defaults to cross-entropy; an objective with state
    is told each epoch's start (``objective.start_epoch(epoch, epochs)``, epoch counted from 0).
    ``masks`` (if given) mask the gradients before and the weights after every optimizer step.
    ``hooks``: the method's callbacks, objects with any of the events of ``callbacks.Callback``, the
    protocol the loop's own callbacks follow (importance scoring reads gradients in ``after_backward``, a
    gradual pruning schedule updates its masks in ``after_step``); objects in ``state`` (e.g. the
    importance tracker) are saved in checkpoints. ``checkpoint`` (a ``bench.checkpoint.EpochCheckpoint``) makes the
    call resumable: progress is saved at epoch ends (and at the exact step when a stop is
    requested), and a call that finds a checkpoint continues from it. Training time is recorded
    under ``phase`` and evaluation under ``"eval"`` in ``timer``. A NaN/inf loss is detected within
    ``runtime.nonfinite_check_steps`` steps and raised as ``NonFiniteLossError``.

    With ``runtime.compile`` on, the objective gets ``model`` compiled and seconds spent compiling go
    to the ``compile`` phase. With ``runtime.cuda_graphs`` on, full batches are replayed as one CUDA
    graph where ``graphs.why_not`` allows it (bench/graphs.py). ``profile`` (a
    ``speed.StepProfile``) times the parts of every step, synchronising around each.
    """
    loop = Loop(model, data, recipe, runtime, timer, seed, objective, masks, state, phase, hooks, profile)
    if checkpoint is not None:
        resume(loop, checkpoint, log)
    loop.attach(C.standard(loop, checkpoint, log))
    if runtime.cuda_graphs == "on":
        graphs.use(loop, profile, log)
    try:
        for epoch in range(loop.epoch, recipe.epochs):
            epoch_gen = loop.gen.get_state()
            if loop.skip == 0:                   # a resumed epoch restored the state its start set
                loop.stats.zero_()
                loop.count = 0
            loop.run("epoch_start", epoch)
            model.train()
            stopped_at = None
            compiled_before = compile_seconds() if loop.compiling else 0.0
            with timer.phase(phase):
                for step, batch in enumerate(_batches(loop, augment)):
                    if step < loop.skip:
                        continue             # replays this epoch's random draws up to the saved step
                    if loop.graphed is not None and loop.graphed.fits(batch):
                        loop.graphed(batch)
                    else:
                        loop.step(batch, epoch * loop.steps_per_epoch + step)
                    with loop.section("optimizer"):
                        loop.sched.step()         # host side: sets the next step's learning rate
                        if loop.graphed is not None:
                            graphs.keep_tensor_lr(loop.opt, loop.lr_tensors)
                    with loop.section("metrics"):
                        loop.count += batch.y.numel()
                    loop.run("after_step", epoch * loop.steps_per_epoch + step)
                    fault_point("step")
                    if stop_requested():
                        stopped_at = step + 1
                        break
            if loop.compiling:
                timer.move(phase, "compile", compile_seconds() - compiled_before)
            C.check_finite(loop)
            if stopped_at is not None:
                if checkpoint is not None:
                    checkpoint.save(snapshot(loop, epoch, stopped_at, epoch_gen))
                raise Interrupted(stop_signal(), f"in {phase} at epoch {epoch + 1}, step {stopped_at}")
            loop.skip = 0
            loop.run("epoch_end", epoch)
            if stop_requested() and epoch + 1 < recipe.epochs:
                raise Interrupted(stop_signal(), f"in {phase} after epoch {epoch + 1}")
    finally:
        loop.run("close")
    return loop.result()
