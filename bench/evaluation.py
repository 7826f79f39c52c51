"""Test accuracy of a model on a dataset's test split: the evaluation the loop's callback and the
methods share (its own module, so that callbacks.py need not import the engine)."""
from __future__ import annotations

import torch
import torch.nn as nn

from .config import RuntimeConfig
from .runtime import autocast, use_channels_last


@torch.inference_mode()
def evaluate(model: nn.Module, data, runtime: RuntimeConfig, monitor: bool = False) -> tuple[float, float]:
    """Top-1 and top-5 test accuracy in percent (one host sync); ``monitor``: on the per-epoch monitoring
    subset (``dataset.monitor_limit``) where there is one."""
    device = data.test_x.device
    was_training = model.training
    model.eval()
    correct = torch.zeros(2, device=device, dtype=torch.long)
    k = min(5, data.num_classes)
    cl = use_channels_last(runtime)
    for batch in data.test_batches(runtime.eval_batch_size, monitor):
        x = batch.x.contiguous(memory_format=torch.channels_last) if cl else batch.x
        with autocast(runtime, device):
            logits = model(x)
        top = logits.topk(k, dim=1).indices
        hit = top == batch.y[:, None]
        correct += torch.stack([hit[:, 0].sum(), hit.any(dim=1).sum()])
    model.train(was_training)
    c1, c5 = correct.tolist()
    n = data.test_size(monitor)
    return 100.0 * c1 / n, 100.0 * c5 / n
