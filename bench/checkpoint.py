"""Epoch-level checkpoints: what one training call needs to continue after a kill.

One file per training call (``<results>/cache/epochs/<scope>/<phase>.pt``), replaced atomically.
It holds the model, optimizer, scheduler, masks, the objective's and the importance tracker's
state, every generator's state (the data-order generator as it was at the start of the epoch in
progress, plus the global CPU/CUDA generators), the step reached inside the epoch, the running
metrics, the history and the seconds already spent. Resuming replays the epoch's batch draws up to
that step without training on them, so a run killed and resumed ends with the same weights as an
uninterrupted one (bit for bit on the CPU in deterministic mode; tests/test_faults.py).
"""
from __future__ import annotations

import io
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch

from .graphs import plain_lr
from .interrupt import fault_point
from .store import atomic_write_bytes


@dataclass
class Best:
    """The best epoch so far of a training call (its top-1, 1-based epoch and top-5), saved with the epoch."""
    top1: float = -1.0
    epoch: int = 0
    top5: float = 0.0


class CorruptEpochCheckpointError(RuntimeError):
    """An epoch checkpoint that cannot be read; the message names the file and the fix."""


class EpochCheckpoint:
    """Where one training call saves and finds its progress.

    ``every_s``: at the end of an epoch, save only if this many seconds passed since the last save
    (0: every epoch). A stop request and the last epoch always save."""

    def __init__(self, path: Path, every_s: float = 0.0, on_save: Optional[Callable[[dict], None]] = None):
        self.path = Path(path)
        self.every_s = float(every_s)
        self.on_save = on_save
        self._last = time.monotonic()

    def load(self) -> Optional[dict]:
        if not self.path.exists():
            return None
        try:
            return torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - a torn or foreign file is unusable
            raise CorruptEpochCheckpointError(
                f"epoch checkpoint {self.path} cannot be read ({type(e).__name__}: {e}); delete it to "
                "restart that training phase from its first epoch") from e

    def due(self) -> bool:
        return time.monotonic() - self._last >= self.every_s

    def save(self, state: dict) -> None:
        buf = io.BytesIO()
        torch.save(state, buf)
        atomic_write_bytes(self.path, buf.getvalue(), fault="checkpoint-write")
        self._last = time.monotonic()
        if self.on_save is not None:
            self.on_save(state)
        fault_point("checkpoint-saved")

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def rng_state(device: torch.device) -> dict:
    """The global generators' state (model initialisation and anything else that draws from them)."""
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _state_of(obj) -> dict:
    return obj.state_dict() if hasattr(obj, "state_dict") else {}


def snapshot(loop, epoch: int, step: int, generator: torch.Tensor) -> dict:
    """What ``loop`` (an ``engine.Loop``) needs to continue at ``epoch``, ``step``; ``generator``: the
    data-order generator's state at the start of that epoch."""
    return {"phase": loop.phase, "epoch": epoch, "step": step, "epochs": loop.recipe.epochs,
            "model": loop.model.state_dict(), "optimizer": plain_lr(loop.opt.state_dict()),
            "scheduler": loop.sched.state_dict(),
            "masks": loop.masks.state_dict() if loop.masks is not None else None,
            "objective": _state_of(loop.objective), "state": {k: o.state_dict() for k, o in loop.state.items()},
            "generator": generator, "rng": rng_state(loop.device), "history": loop.history,
            "best": [loop.best.top1, loop.best.epoch, loop.best.top5],
            "stats": loop.stats.detach().cpu(), "count": loop.count, "steps": int(loop.steps),
            "seconds": loop.seconds()}


def resume(loop, checkpoint: EpochCheckpoint, log: Callable[[str], None]) -> None:
    """Continue ``loop`` from ``checkpoint``'s file, if there is one (``checkpoint.resumed`` says where)."""

    saved = checkpoint.load()
    if saved is None:
        log(f"  {loop.phase}: starting at epoch 1/{loop.recipe.epochs} (epoch checkpoints: {checkpoint.path})")
        return
    loop.model.load_state_dict(saved["model"])
    loop.opt.load_state_dict(saved["optimizer"])
    loop.sched.load_state_dict(saved["scheduler"])
    if loop.masks is not None:
        loop.masks.load_state_dict(saved["masks"])
    if hasattr(loop.objective, "load_state_dict"):
        loop.objective.load_state_dict(saved["objective"])
    for k, obj in loop.state.items():
        obj.load_state_dict(saved["state"][k])
    loop.gen.set_state(saved["generator"])
    set_rng_state(saved["rng"], loop.device)
    loop.history, loop.best = saved["history"], Best(*saved["best"])
    loop.epoch, loop.skip, loop.count = saved["epoch"], saved["step"], saved["count"]
    loop.stats.copy_(saved["stats"])
    loop.steps.fill_(saved["steps"])
    for k in (loop.phase, "eval", "compile"):
        loop.timer.add(k, saved["seconds"].get(k, 0.0))
    checkpoint.resumed = {"phase": loop.phase, "epoch": loop.epoch, "step": loop.skip}
    log(f"  {loop.phase}: resuming at epoch {loop.epoch + 1}/{loop.recipe.epochs}, step {loop.skip} ({checkpoint.path})")
