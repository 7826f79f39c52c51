"""What the training loop does besides training (open_lth's standard callbacks): evaluation, the
NaN/inf check, progress, epoch checkpoints; and the one protocol by which a method reaches inside the
loop too. A callback is an object with any of the events of ``Callback``, each given the call's
``engine.Loop`` first; the loop runs ``standard``'s list, the method's own callbacks among them, in
that order. ``EverySteps`` runs a function every n-th step.
"""
from __future__ import annotations

import sys
from typing import Callable

from .checkpoint import snapshot
from .evaluation import evaluate
from .interrupt import stop_requested
from .runtime import compile_seconds

# What the engine is doing now, for heartbeats and `bench status` (phase, epoch, epochs).
PROGRESS: dict = {}

# The events of a training call, in the order they happen: per epoch epoch_start; per step before_forward,
# after_forward, after_backward (inside the step's device work), after_step (once the step is done);
# epoch_end (after evaluation: loop.history[-1] is the epoch's row); close (once, at the end).
EVENTS = ("epoch_start", "before_forward", "after_forward", "after_backward", "after_step", "epoch_end", "close")
# The events inside a step's device work: a method callback with any of them, or with after_step, keeps
# the call eager (never replayed as a CUDA graph: bench/graphs.py).
STEP_EVENTS = ("before_forward", "after_forward", "after_backward", "after_step")


class Callback:
    """The protocol (a callback need not subclass it: any object with some of these methods will do).
    ``step`` counts the steps taken before this one in the call (epoch * steps_per_epoch + index), so a
    schedule is a function of it with no host sync; ``epoch`` counts from 0."""

    def epoch_start(self, loop, epoch: int) -> None: ...
    def before_forward(self, loop, step: int, batch) -> None: ...
    def after_forward(self, loop, step: int, loss, logits) -> None: ...
    def after_backward(self, loop, step: int) -> None: ...      # gradients are there, the optimizer has not stepped
    def after_step(self, loop, step: int) -> None: ...          # after the optimizer step and the masks
    def epoch_end(self, loop, epoch: int) -> None: ...          # loop.history[-1]: the epoch's row
    def close(self, loop) -> None: ...


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


def check_finite(loop) -> None:
    """Raise ``NonFiniteLossError`` if a step's loss was NaN/inf (the one host read of the flag)."""
    b = int(loop.bad_at)
    if b >= 0:
        epoch = (b - 1) // loop.steps_per_epoch + 1
        raise NonFiniteLossError(f"{loop.phase}: the training loss became NaN or infinite at step {b} (epoch "
                                 f"{epoch}, lr {loop.lr(b - 1):g}); lower the learning rate or check the objective")


class EverySteps:
    """``fn(loop)`` after every ``n``-th step of a call."""

    def __init__(self, n: int, fn: Callable):
        self.n, self.fn = max(1, n), fn

    def after_step(self, loop, step: int) -> None:
        if (step + 1) % self.n == 0:
            self.fn(loop)


class ObjectiveEpochs:
    """An objective with state is told each epoch's start: ``objective.start_epoch(epoch, epochs)``."""

    def __init__(self, objective):
        self.objective = objective

    def epoch_start(self, loop, epoch: int) -> None:
        self.objective.start_epoch(epoch, loop.recipe.epochs)


class Evaluate:
    """Test accuracy after every epoch, timed as ``eval``; the epoch's history row and the best epoch.
    Where the data has a monitoring subset (``dataset.monitor_limit``), every epoch is evaluated on it
    (the best epoch is chosen there) and the last epoch on the whole test split as well: a call's final
    accuracy is always on every test image."""

    def epoch_end(self, loop, epoch: int) -> None:
        before = compile_seconds() if loop.compiling else 0.0
        whole = None
        with loop.timer.phase("eval"), loop.section("evaluation"):
            top1, top5 = evaluate(loop.net, loop.data, loop.runtime, monitor=True)
            if loop.data.monitor is not None and epoch + 1 == loop.recipe.epochs:
                whole = evaluate(loop.net, loop.data, loop.runtime)
        if loop.compiling:
            loop.timer.move("eval", "compile", compile_seconds() - before)
        loop.end_epoch(epoch, top1, top5, whole)


class Progress:
    """A rich progress bar on a terminal, one plain line per epoch otherwise (CI logs)."""

    def __init__(self, loop, log: Callable[[str], None]):
        self.description, self.epochs, self.log = loop.phase, loop.recipe.epochs, log
        self.bar = None
        if sys.stdout.isatty() and loop.epoch < self.epochs:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TimeRemainingColumn(), TextColumn("{task.fields[info]}"), transient=True)
            self.task = self.bar.add_task(self.description, total=self.epochs, completed=loop.epoch, info="")
            self.bar.start()

    def epoch_start(self, loop, epoch: int) -> None:
        PROGRESS.update(phase=loop.phase, epoch=epoch + 1, epochs=self.epochs)

    def epoch_end(self, loop, epoch: int) -> None:
        row, best = loop.history[-1], loop.best
        info = (f"loss {row['train_loss']:.3f} train {row['train_top1']:.1f}% test {row['test_top1']:.2f}% "
                f"(best {best.top1:.2f}%)")
        if self.bar is not None:
            self.bar.update(self.task, completed=epoch + 1, info=info)
        self.log(f"  {self.description} epoch {epoch + 1}/{self.epochs} {info}")

    def close(self, loop) -> None:
        if self.bar is not None:
            self.bar.stop()


class SaveCheckpoint:
    """The epoch checkpoint (``checkpoint.EpochCheckpoint``) at an epoch's end: the last one, when
    ``runtime.checkpoint_every_s`` has passed, or when a stop is requested."""

    def __init__(self, checkpoint):
        self.checkpoint = checkpoint

    def epoch_end(self, loop, epoch: int) -> None:
        if epoch + 1 == loop.recipe.epochs or self.checkpoint.due() or stop_requested():
            self.checkpoint.save(snapshot(loop, epoch + 1, 0, loop.gen.get_state()))


def standard(loop, checkpoint, log: Callable[[str], None]) -> list:
    """The callbacks of a training call, in order: the objective's epochs, the NaN/inf check, evaluation,
    the method's own callbacks (``loop.method_hooks``), progress, the epoch checkpoint."""
    out = [ObjectiveEpochs(loop.objective)] if hasattr(loop.objective, "start_epoch") else []
    out += [EverySteps(loop.runtime.nonfinite_check_steps, check_finite), Evaluate(), *loop.method_hooks,
            Progress(loop, log)]
    return out + ([SaveCheckpoint(checkpoint)] if checkpoint is not None else [])
