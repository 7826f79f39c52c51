"""``runtime.cuda_graphs: on``: each full-batch training step replayed as one CUDA graph.

Why: on one H100 a single ResNet-18 cell trains at 17k images/s while four cells on the same GPU
train 2.8x as many, so one cell leaves the GPU idle between the few hundred small kernels of its
step, each launched from Python (docs/performance.md). Captured once, a step is one launch.

Inside the graph: the objective's forward and loss (under autocast), the backward pass, the
gradient masks, the optimizer step, the weight masks and the device-side metrics (loss sum,
correct count, step counter, NaN flag): the engine's ``step_body``, the same function an eager step
runs. Outside: drawing and augmenting the batch (copied into static input tensors), the LR
schedule (the learning rate is a one-element device tensor that the scheduler fills in place), the
NaN flag read, stop requests, checkpoints, and any batch of another size (an epoch's short tail),
which runs eagerly on the same parameters, gradients and optimizer state.

The first ``WARMUP`` full batches of a training call run eagerly on a side stream (a real step
each, as PyTorch's capture recipe asks: libraries allocate their workspaces there), the next one
is captured and replayed, every later one is replayed. Gradients are zeroed in place rather than
set to None, so that they keep the addresses the graph captured (0 + g = g: the same values).

Eligibility (``why_not``): a CUDA device; an objective that declares its step pure device work on
``batch.x`` and ``batch.y`` (``GRAPH_SAFE``: cross-entropy and distillation; the self-distillation
objectives keep memories and draw extra views, so they run eagerly); no method callback on a step event
(tgp's importance keeps host-side step counts); no step profile; compile off. Ineligible calls
train eagerly and say why once.

On a CPU, ``GraphedStep(capture=False)`` runs the same sequence (warm-up steps, static buffers,
tensor learning rate, in-place zeroed gradients) with ``step_body`` called where a replay would
be: tests/test_speedups.py checks that it trains the same trajectory as the eager loop. The
capture and replay themselves need CUDA.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch

WARMUP = 3          # eager full-batch steps before the capture


def why_not(runtime, device: torch.device, objective, step_hooks: bool, profile) -> Optional[str]:
    """None when this training call can replay its steps as a CUDA graph, else the reason it cannot."""
    if device.type != "cuda":
        return f"the device is {device.type}, not CUDA"
    if runtime.compile == "on":
        return "runtime.compile is on (a compiled module is not captured here)"
    if profile is not None:
        return "the step profile times the parts of an eager step"
    if step_hooks:
        return "a method callback on a step event (importance scores, a pruning schedule) keeps host-side state"
    if not type(objective).__dict__.get("GRAPH_SAFE", False):
        return f"the objective {type(objective).__name__} is not declared graph-safe"
    return None


def use(loop, profile, log) -> None:
    """Replay ``loop``'s full-batch steps as a CUDA graph (``loop.graphed``) where ``why_not`` allows it."""
    reason = why_not(loop.runtime, loop.device, loop.objective, loop.step_hooks, profile)
    if reason is not None:
        log(f"  {loop.phase}: CUDA graphs off for this call: {reason}")
        return
    tensor_lr(loop.opt, loop.device)            # after any resume: the restored LR, as a tensor
    loop.lr_tensors = [g["lr"] for g in loop.opt.param_groups]
    loop.graphed = GraphedStep(lambda b: loop.step(b), loop.recipe.batch_size, loop.device,
                               capture=loop.device.type == "cuda")


def tensor_lr(opt: torch.optim.Optimizer, device: torch.device) -> None:
    """Make every param group's learning rate a one-element float32 tensor on ``device`` (the value
    the fused/foreach kernels use anyway): a captured step reads it from memory, and the LR
    scheduler fills it in place between steps."""
    for group in opt.param_groups:
        if not torch.is_tensor(group["lr"]):
            group["lr"] = torch.tensor(float(group["lr"]), dtype=torch.float32, device=device)


def keep_tensor_lr(opt: torch.optim.Optimizer, tensors: list[torch.Tensor]) -> None:
    """After the scheduler's step: the group's learning rate back in its tensor (the one a graph
    reads), in case this torch's scheduler assigned a float instead of filling the tensor."""
    for group, t in zip(opt.param_groups, tensors):
        if group["lr"] is not t:
            t.fill_(float(group["lr"]))
            group["lr"] = t


def plain_lr(opt_state: dict) -> dict:
    """An optimizer state dict with float learning rates (checkpoints resume with graphs on or off)."""
    groups = [{**g, "lr": float(g["lr"])} if torch.is_tensor(g.get("lr")) else g for g in opt_state["param_groups"]]
    return {**opt_state, "param_groups": groups}


class GraphedStep:
    """Runs ``step_body(batch)`` for every full batch: eagerly for the first ``WARMUP``, then as one
    captured CUDA graph (``capture=False``: called directly on the static buffers, for CPU tests)."""

    def __init__(self, step_body: Callable, batch_size: int, device: torch.device, capture: bool = True,
                 warmup: int = WARMUP):
        self.step_body, self.batch_size, self.device = step_body, batch_size, device
        self.capture, self.warmup = capture, warmup
        self.eager_steps = 0          # warm-up steps taken so far
        self.replays = 0
        self.static = None            # the batch the graph reads (a Batch of static tensors)
        self.graph = None
        self._side = torch.cuda.Stream(device) if capture else None

    def fits(self, batch) -> bool:
        return batch.y.shape[0] == self.batch_size

    def __call__(self, batch) -> None:
        if self.eager_steps < self.warmup:
            self._eager(batch)
            self.eager_steps += 1
            return
        if self.static is None:
            self.static = type(batch)(*(t.clone() for t in batch))
            if self.capture:
                self._capture()
        else:
            for dst, src in zip(self.static, batch):
                dst.copy_(src)
        if self.capture:
            self.graph.replay()
        else:
            self.step_body(self.static)
        self.replays += 1

    def _eager(self, batch) -> None:
        if not self.capture:
            self.step_body(batch)
            return
        side, main = self._side, torch.cuda.current_stream(self.device)
        side.wait_stream(main)
        with torch.cuda.stream(side):
            self.step_body(batch)
        main.wait_stream(side)

    def _capture(self) -> None:
        # The captured kernels are recorded, not run: the replay right after runs this step.
        torch.cuda.synchronize(self.device)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.step_body(self.static)
