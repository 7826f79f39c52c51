"""What the training loop does besides training (open_lth's standard callbacks): evaluation, the
NaN/inf check, progress, epoch checkpoints. A callback is an object with any of ``epoch_start(loop,
epoch)``, ``step(loop, epoch, step)`` (after every step; ``step`` is its index in the epoch),
``epoch_end(loop, epoch)`` and ``close()``; ``EverySteps`` runs a function every n-th step. They
run in the order ``standard`` lists them; ``loop`` is the ``engine.Loop`` of the call.
"""
from __future__ import annotations

import sys
from typing import Callable

# What the engine is doing now, for heartbeats and `bench status` (phase, epoch, epochs).
PROGRESS: dict = {}


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


def check_finite(loop, epoch: int = 0, step: int = 0) -> None:
    """Raise ``NonFiniteLossError`` if a step's loss was NaN/inf (the one host read of the flag)."""
    b = int(loop.bad_at)
    if b >= 0:
        epoch = (b - 1) // loop.steps_per_epoch + 1
        raise NonFiniteLossError(f"{loop.phase}: the training loss became NaN or infinite at step {b} (epoch "
                                 f"{epoch}, lr {loop.lr(b - 1):g}); lower the learning rate or check the objective")


class EverySteps:
    """``fn(loop, epoch, step)`` after every ``n``-th step of an epoch."""

    def __init__(self, n: int, fn: Callable):
        self.n, self.fn = max(1, n), fn

    def step(self, loop, epoch: int, step: int) -> None:
        if (step + 1) % self.n == 0:
            self.fn(loop, epoch, step)


class Evaluate:
    """Test accuracy after every epoch, timed as ``eval``; the epoch's history row and the best epoch.
    Where the data has a monitoring subset (``dataset.monitor_limit``), every epoch is evaluated on it
    (the best epoch is chosen there) and the last epoch on the whole test split as well: a call's final
    accuracy is always on every test image."""

    def epoch_end(self, loop, epoch: int) -> None:
        from .evaluation import evaluate
        from .runtime import compile_seconds

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

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


class SaveCheckpoint:
    """The epoch checkpoint (``checkpoint.EpochCheckpoint``) at an epoch's end: the last one, when
    ``runtime.checkpoint_every_s`` has passed, or when a stop is requested."""

    def __init__(self, checkpoint):
        self.checkpoint = checkpoint

    def epoch_end(self, loop, epoch: int) -> None:
        from .checkpoint import snapshot
        from .interrupt import stop_requested

        if epoch + 1 == loop.recipe.epochs or self.checkpoint.due() or stop_requested():
            self.checkpoint.save(snapshot(loop, epoch + 1, 0, loop.gen.get_state()))


def standard(loop, checkpoint, log: Callable[[str], None]) -> list:
    """The callbacks every training call runs, in order."""
    out = [EverySteps(loop.runtime.nonfinite_check_steps, check_finite), Evaluate(), loop.hook_callback(),
           Progress(loop, log)]
    return out + ([SaveCheckpoint(checkpoint)] if checkpoint is not None else [])
