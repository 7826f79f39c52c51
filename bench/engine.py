"""The one training loop every method uses.

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
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
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
    return runtime.channels_last != "off"          # auto: on, on the CPU too (measured faster there)


def autocast(runtime: RuntimeConfig, device: torch.device, cache: bool = True):
    """bf16 autocast where the run's precision is bf16. ``cache=False`` inside a captured CUDA graph
    (PyTorch's graph recipe: no cast cached across the capture's boundary; the same casts)."""
    if use_amp(runtime, device):
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16, cache_enabled=cache)
    return contextlib.nullcontext()


def use_compile(runtime: RuntimeConfig, device: torch.device) -> bool:
    # auto = off on every device: compiling did not pay off on the one GPU measured (docs/performance.md)
    return runtime.compile == "on"


def compile_module(module: nn.Module) -> nn.Module:
    """``torch.compile(module)``, one static graph per input shape, train/eval mode and grad mode.

    The wrapper shares ``module``'s parameters and buffers (masks and checkpoints keep using
    ``module``); a new wrapper of a model of the same architecture reuses the graphs compiled so
    far in the process, and inductor's on-disk cache (``TORCHINDUCTOR_CACHE_DIR``; the runner puts
    it under the results folder) serves later processes."""
    import torch._dynamo

    # Train, eval, no-grad, frozen-BN and tail-batch variants of student and teacher add up to more
    # graphs than the default limit of 8, past which dynamo silently falls back to eager.
    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
    return torch.compile(module, dynamic=False)


def persistent_compile_cache(folder: Path) -> None:
    """Keep inductor's compiled kernels in ``folder`` (unless ``TORCHINDUCTOR_CACHE_DIR`` is set
    already), so the later processes of a grid load them instead of compiling again. Call before
    the first compilation of the process."""
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(Path(folder).resolve()))


def compile_seconds() -> float:
    """Seconds this process has spent in torch.compile so far (dynamo's own clock: tracing, graph
    compilation, the lazily compiled backward). 0 if that internal counter is unavailable, in
    which case compile time stays inside the phases it happened in."""
    try:
        from torch._dynamo.utils import calculate_time_spent

        return float(calculate_time_spent().get("total_wall_time", 0.0))
    except Exception:  # noqa: BLE001 - an internal API; its absence must not stop training
        return 0.0


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


class StepProfile:
    """Seconds per part of the training step, for ``python -m bench speed --profile``. Every
    section synchronises the device before and after it, so profiled training is slower and its
    shares, not its total, are the result. Grids never profile."""

    SECTIONS = ("data", "forward", "backward", "optimizer", "masks", "metrics", "evaluation")
    LABELS = {"data": "data + augmentation", "forward": "forward + loss (teacher included)",
              "backward": "backward (+ importance)", "optimizer": "optimizer + LR schedule",
              "masks": "masks (grads and weights)", "metrics": "metrics + NaN flag", "evaluation": "evaluation"}

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.seconds = dict.fromkeys(self.SECTIONS, 0.0)

    @contextlib.contextmanager
    def section(self, name: str):
        if self.cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        try:
            yield
        finally:
            if self.cuda:
                torch.cuda.synchronize()
            self.seconds[name] += time.perf_counter() - t0

    def table(self) -> str:
        total = sum(self.seconds.values()) or 1.0
        lines = ["| part of the step | seconds | share |", "|---|---|---|"]
        lines += [f"| {self.LABELS[k]} | {v:.3f} | {100 * v / total:.1f}% |" for k, v in self.seconds.items()]
        return "\n".join(lines + [f"| total | {total:.3f} | 100% |"])


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


@torch.inference_mode()
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

    def __init__(self, description: str, epochs: int, log: Callable[[str], None], done: int = 0):
        self.description, self.epochs, self.log = description, epochs, log
        self.bar = None
        if sys.stdout.isatty() and done < epochs:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TimeRemainingColumn(), TextColumn("{task.fields[info]}"), transient=True)
            self.task = self.bar.add_task(description, total=epochs, completed=done, info="")
            self.bar.start()

    def update(self, epoch: int, info: str):
        if self.bar is not None:
            self.bar.update(self.task, completed=epoch, info=info)
        self.log(f"  {self.description} epoch {epoch}/{self.epochs} {info}")

    def close(self):
        if self.bar is not None:
            self.bar.stop()


# What the engine is doing now, for heartbeats and `bench status` (phase, epoch, epochs).
PROGRESS: dict = {}


class Hooks:
    """What a method can run inside the loop; pass any object with some of these methods as ``hooks``.
    ``step`` counts the steps taken before this one in the call (epoch * steps_per_epoch + index), so
    a schedule is a function of it with no host sync; ``epoch`` counts from 0. Step hooks run eagerly
    (a call with any of them is never replayed as a CUDA graph)."""
    NAMES = ("epoch_start", "before_forward", "after_forward", "after_backward", "after_step", "epoch_end")
    STEP = NAMES[1:5]

    def epoch_start(self, epoch: int, epochs: int) -> None: ...
    def before_forward(self, step: int, batch) -> None: ...
    def after_forward(self, step: int, loss, logits) -> None: ...
    def after_backward(self, step: int) -> None: ...
    def after_step(self, step: int) -> None: ...             # after the optimizer step and the masks
    def epoch_end(self, epoch: int, row: dict) -> None: ...  # row: the epoch's history entry


def _state_of(obj) -> dict:
    return obj.state_dict() if hasattr(obj, "state_dict") else {}


def train(model: nn.Module, data, recipe: TrainConfig, *, runtime: RuntimeConfig, timer: PhaseTimer,
          seed: int, augment, objective=None, masks=None, after_backward: Optional[Callable[[], None]] = None,
          hooks=(), state: Optional[dict] = None, checkpoint=None, phase: str = "train",
          log: Callable[[str], None] = print, profile: Optional[StepProfile] = None) -> TrainResult:
    """Train ``model`` in place with a fresh optimizer; evaluate after every epoch.

    ``objective(model, batch) -> (loss, logits)`` defaults to cross-entropy; an objective with state
    is told each epoch's start (``objective.start_epoch(epoch, epochs)``, epoch counted from 0).
    ``masks`` (if given) mask the gradients before and the weights after every optimizer step.
    ``after_backward()`` runs after each backward pass and before the step (importance scoring reads
    gradients there); objects in ``state`` (e.g. the importance tracker) are saved in checkpoints.
    ``hooks``: objects with any of the methods of ``Hooks`` (a method's view of the loop: a gradual
    pruning schedule updates its masks from ``after_step``).
    ``checkpoint`` (a ``bench.checkpoint.EpochCheckpoint``) makes the call resumable: progress is
    saved at epoch ends (and at the exact step when a stop is requested), and a call that finds a
    checkpoint continues from it. Training time is recorded under ``phase`` and evaluation under
    ``"eval"`` in ``timer``. A NaN/inf loss is detected within ``runtime.nonfinite_check_steps``
    steps and raised as ``NonFiniteLossError`` naming the step and learning rate.

    With ``runtime.compile`` on, the objective gets ``model`` compiled (``compile_module``) and
    seconds spent compiling go to the ``compile`` phase. With ``runtime.cuda_graphs`` on, full
    batches are replayed as one CUDA graph where ``graphs.why_not`` allows it (bench/graphs.py).
    ``profile`` (a ``StepProfile``) times the parts of every step, synchronising around each.
    """
    from . import graphs
    from .checkpoint import rng_state, set_rng_state
    from .interrupt import Interrupted, fault_point, stop_requested, stop_signal

    device = data.train_x.device
    objective = objective or CrossEntropy(recipe.label_smoothing)
    state = dict(state or {})
    cl = use_channels_last(runtime, device)
    compiling = use_compile(runtime, device)
    # ``net`` runs the forward passes; ``model`` (the same parameters) is what is saved and masked.
    net = compile_module(model) if compiling else model
    if hasattr(objective, "prepare"):
        objective.prepare(precision(runtime, device.type), compile_module if compiling else (lambda m: m),
                          runtime=runtime)
    section = profile.section if profile is not None else _unprofiled
    opt = make_optimizer(model.parameters(), recipe, device)
    steps_per_epoch = data.steps_per_epoch(recipe.batch_size, recipe.drop_last)
    total = steps_per_epoch * recipe.epochs
    warmup = round(recipe.warmup_epochs * steps_per_epoch)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_factor(s, total, warmup, recipe, steps_per_epoch))
    gen = torch.Generator(device=device).manual_seed(seed)
    if masks is not None:
        masks.apply()

    history, best = [], [-1.0, 0, 0.0]
    start_epoch, skip = 0, 0                        # where this call begins: epoch, step inside it
    stats, count = torch.zeros(2, device=device), 0  # loss sum, correct (read once per epoch); samples
    bad_at = torch.full((), -1, dtype=torch.long, device=device)     # first step with a non-finite loss
    steps = torch.zeros((), dtype=torch.long, device=device)         # steps taken (on the device: no sync)
    graphed = None                                  # a GraphedStep when this call replays CUDA graphs
    train_before, eval_before, compile_before = timer.seconds(phase), timer.seconds("eval"), timer.seconds("compile")
    saved = checkpoint.load() if checkpoint is not None else None
    if saved is not None:
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        sched.load_state_dict(saved["scheduler"])
        if masks is not None:
            masks.load_state_dict(saved["masks"])
        if hasattr(objective, "load_state_dict"):
            objective.load_state_dict(saved["objective"])
        for k, obj in state.items():
            obj.load_state_dict(saved["state"][k])
        gen.set_state(saved["generator"])
        set_rng_state(saved["rng"], device)
        history, best = saved["history"], list(saved["best"])
        start_epoch, skip, count = saved["epoch"], saved["step"], saved["count"]
        stats.copy_(saved["stats"])
        steps.fill_(saved["steps"])
        timer.add(phase, saved["seconds"][phase])
        timer.add("eval", saved["seconds"]["eval"])
        timer.add("compile", saved["seconds"].get("compile", 0.0))
        checkpoint.resumed = {"phase": phase, "epoch": start_epoch, "step": skip}
        log(f"  {phase}: resuming at epoch {start_epoch + 1}/{recipe.epochs}, step {skip} ({checkpoint.path})")
    elif checkpoint is not None:
        log(f"  {phase}: starting at epoch 1/{recipe.epochs} (epoch checkpoints: {checkpoint.path})")

    hook = {name: [getattr(h, name) for h in hooks if hasattr(h, name)] for name in Hooks.NAMES}
    if after_backward is not None:
        hook["after_backward"].insert(0, lambda step: after_backward())
    step_hooks = any(hook[n] for n in Hooks.STEP)

    if runtime.cuda_graphs == "on":
        reason = graphs.why_not(runtime, device, objective, step_hooks or None, profile)
        if reason is None:
            graphs.tensor_lr(opt, device)            # after any resume: the restored LR, as a tensor
            lr_tensors = [g["lr"] for g in opt.param_groups]
            graphed = graphs.GraphedStep(lambda b: step_body(b), recipe.batch_size, device,
                                         capture=device.type == "cuda")
        else:
            log(f"  {phase}: CUDA graphs off for this call: {reason}")

    def step_body(batch, step: int = -1) -> None:
        """One training step's device work: eager, or recorded into a CUDA graph (``graphed``; never
        with step hooks), so everything it updates is updated in place. ``step``: steps taken before."""
        for h in hook["before_forward"]:
            h(step, batch)
        with section("forward"), autocast(runtime, device, cache=graphed is None):
            loss, logits = objective(net, batch)
        for h in hook["after_forward"]:
            h(step, loss, logits)
        with section("backward"):
            opt.zero_grad(set_to_none=graphed is None)     # a graph keeps the gradients' addresses
            loss.backward()
            for h in hook["after_backward"]:
                h(step)
        with section("masks"):
            if masks is not None:
                masks.mask_grads()
        with section("optimizer"):
            opt.step()
        with section("masks"):
            if masks is not None:
                masks.apply()
        for h in hook["after_step"]:
            h(step)
        with section("metrics"):
            n = batch.y.numel()
            loss = loss.detach().float()
            steps.add_(1)
            bad_at.copy_(torch.where((bad_at < 0) & ~torch.isfinite(loss), steps, bad_at))
            stats.add_(torch.stack([loss * n, (logits.detach().argmax(1) == batch.y).sum().float()]))

    def snapshot(epoch: int, step: int, epoch_gen: torch.Tensor) -> dict:
        return {"phase": phase, "epoch": epoch, "step": step, "epochs": recipe.epochs,
                "model": model.state_dict(), "optimizer": graphs.plain_lr(opt.state_dict()),
                "scheduler": sched.state_dict(),
                "masks": masks.state_dict() if masks is not None else None,
                "objective": _state_of(objective), "state": {k: o.state_dict() for k, o in state.items()},
                "generator": epoch_gen, "rng": rng_state(device), "history": history, "best": best,
                "stats": stats.detach().cpu(), "count": count, "steps": int(steps),
                "seconds": {phase: timer.seconds(phase) - train_before, "eval": timer.seconds("eval") - eval_before,
                            "compile": timer.seconds("compile") - compile_before}}

    def check_finite():
        b = int(bad_at)
        if b >= 0:
            epoch, lr = (b - 1) // steps_per_epoch + 1, recipe.lr * lr_factor(b - 1, total, warmup, recipe,
                                                                              steps_per_epoch)
            raise NonFiniteLossError(f"{phase}: the training loss became NaN or infinite at step {b} (epoch "
                                     f"{epoch}, lr {lr:g}); lower the learning rate or check the objective")

    every = max(1, runtime.nonfinite_check_steps)
    progress = _Progress(phase, recipe.epochs, log, start_epoch)
    try:
        for epoch in range(start_epoch, recipe.epochs):
            epoch_gen = gen.get_state()
            if skip == 0:
                stats.zero_()
                count = 0
                if hasattr(objective, "start_epoch"):   # a resumed epoch restored the state it set
                    objective.start_epoch(epoch, recipe.epochs)
            for h in hook["epoch_start"]:
                h(epoch, recipe.epochs)
            PROGRESS.update(phase=phase, epoch=epoch + 1, epochs=recipe.epochs)
            model.train()
            lr = recipe.lr * lr_factor(epoch * steps_per_epoch, total, warmup, recipe, steps_per_epoch)
            stopped_at = None
            batches = data.train_batches(recipe.batch_size, augment, gen, recipe.drop_last)
            if cl:
                batches = (b._replace(x=b.x.contiguous(memory_format=torch.channels_last)) for b in batches)
            if profile is not None:
                batches = _timed_batches(batches, section)
            compiled_before = compile_seconds() if compiling else 0.0
            with timer.phase(phase):
                for step, batch in enumerate(batches):
                    if step < skip:
                        continue             # replays this epoch's random draws up to the saved step
                    if graphed is not None and graphed.fits(batch):
                        graphed(batch)
                    else:
                        step_body(batch, epoch * steps_per_epoch + step)
                    with section("optimizer"):
                        sched.step()         # host side: sets the next step's learning rate
                        if graphed is not None:
                            graphs.keep_tensor_lr(opt, lr_tensors)
                    with section("metrics"):
                        count += batch.y.numel()
                        if (step + 1) % every == 0:
                            check_finite()
                    fault_point("step")
                    if stop_requested():
                        stopped_at = step + 1
                        break
            if compiling:
                timer.move(phase, "compile", compile_seconds() - compiled_before)
            check_finite()
            if stopped_at is not None:
                if checkpoint is not None:
                    checkpoint.save(snapshot(epoch, stopped_at, epoch_gen))
                raise Interrupted(stop_signal(), f"in {phase} at epoch {epoch + 1}, step {stopped_at}")
            skip = 0
            compiled_before = compile_seconds() if compiling else 0.0
            with timer.phase("eval"), section("evaluation"):
                top1, top5 = evaluate(net, data, runtime)
            if compiling:
                timer.move("eval", "compile", compile_seconds() - compiled_before)
            loss_sum, correct = stats.tolist()
            history.append({"epoch": epoch + 1, "train_loss": loss_sum / count, "train_top1": 100 * correct / count,
                            "test_top1": top1, "test_top5": top5, "lr": lr})
            if top1 > best[0]:
                best = [top1, epoch + 1, top5]
            for h in hook["epoch_end"]:
                h(epoch, history[-1])
            progress.update(epoch + 1, f"loss {loss_sum / count:.3f} train {100 * correct / count:.1f}% "
                                       f"test {top1:.2f}% (best {best[0]:.2f}%)")
            last = epoch + 1 == recipe.epochs
            if checkpoint is not None and (last or checkpoint.due() or stop_requested()):
                checkpoint.save(snapshot(epoch + 1, 0, gen.get_state()))
            if stop_requested() and not last:
                raise Interrupted(stop_signal(), f"in {phase} after epoch {epoch + 1}")
    finally:
        progress.close()
    return TrainResult(top1_final=history[-1]["test_top1"], top1_best=best[0],
                       top5_final=history[-1]["test_top5"], top5_best=best[2], best_epoch=best[1],
                       history=history, train_seconds=timer.seconds(phase) - train_before)
