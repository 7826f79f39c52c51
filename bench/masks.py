"""The one mask mechanism: a 0/1 buffer per prunable tensor, applied after every optimizer step.

Weights are zeroed when a mask is set and re-masked after each ``optimizer.step()``, so momentum
and weight decay can never revive a pruned weight (the bug class listed in
shared/research/ecosystem.md 3.3). Gradients are masked before the step as well, which keeps the
optimizer's momentum buffers zero at pruned positions (clean state in checkpoints).
"""
from __future__ import annotations

import torch
import torch.nn as nn


def prunable_parameters(model: nn.Module, layers: str = "conv") -> list[tuple[str, nn.Parameter]]:
    """The prunable set: every Conv2d weight (default; the paper's and COLT's accounting), plus
    every Linear weight with ``layers="conv+linear"``. BatchNorm parameters and biases stay dense."""
    kinds = {"conv": (nn.Conv2d,), "conv+linear": (nn.Conv2d, nn.Linear)}[layers]
    return [(f"{name}.weight", m.weight) for name, m in model.named_modules() if isinstance(m, kinds)]


class Masks:
    def __init__(self, model: nn.Module, layers: str = "conv"):
        named = prunable_parameters(model, layers)
        self.layers = layers
        self.names = [n for n, _ in named]
        self.params = [p for _, p in named]
        # Same dtype as the weights so a single foreach multiply applies them.
        self.masks = [torch.ones_like(p, memory_format=torch.preserve_format) for p in self.params]

    @property
    def numel(self) -> int:
        return sum(p.numel() for p in self.params)

    @torch.no_grad()
    def apply(self) -> None:
        torch._foreach_mul_(self.params, self.masks)

    @torch.no_grad()
    def mask_grads(self) -> None:
        pairs = [(p.grad, m) for p, m in zip(self.params, self.masks) if p.grad is not None]
        if pairs:
            torch._foreach_mul_([g for g, _ in pairs], [m for _, m in pairs])

    @torch.no_grad()
    def prune_global(self, scores: list[torch.Tensor], sparsity: float) -> int:
        """Remove exactly ``round(sparsity * N)`` weights of the prunable set, lowest score first,
        ranked across all tensors at once. Weights already pruned stay pruned (they rank first).
        Ties are broken by position, so the selection is deterministic. Returns the count removed."""
        if not 0 <= sparsity < 1:
            raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
        if len(scores) != len(self.params):
            raise ValueError(f"expected {len(self.params)} score tensors, got {len(scores)}")
        for s, p, n in zip(scores, self.params, self.names):
            if s.shape != p.shape:
                raise ValueError(f"score for {n} has shape {tuple(s.shape)}, weight has {tuple(p.shape)}")
        flat = torch.cat([s.detach().float().flatten() for s in scores])
        keep = torch.cat([m.flatten() for m in self.masks]) > 0
        if not torch.isfinite(flat[keep]).all():
            raise ValueError("importance scores contain NaN or inf for unpruned weights")
        k = round(sparsity * flat.numel())
        already = int((~keep).sum())
        if k < already:
            raise ValueError(f"target sparsity {sparsity} removes {k} weights but {already} are already "
                             "pruned; pruned weights are never revived")
        flat = torch.where(keep, flat, torch.full_like(flat, -float("inf")))
        order = torch.argsort(flat, stable=True)
        new = torch.ones_like(flat)
        new[order[:k]] = 0
        for m, piece in zip(self.masks, torch.split(new, [m.numel() for m in self.masks])):
            m.copy_(piece.view_as(m))
        self.apply()
        return k

    def state_dict(self) -> dict:
        return {"layers": self.layers, "names": list(self.names), "masks": [m.bool().cpu() for m in self.masks]}

    def load_state_dict(self, state: dict) -> None:
        if state["names"] != self.names:
            raise ValueError("mask names in the checkpoint do not match the model's prunable tensors")
        for m, saved in zip(self.masks, state["masks"]):
            m.copy_(saved.to(device=m.device, dtype=m.dtype))
        self.apply()


@torch.no_grad()
def sparsity_stats(model: nn.Module, layers: str = "conv") -> dict:
    """Measured (not assumed) sparsity: zeros actually present in the weights.

    - ``sparsity_prunable``: zeros / weights of the prunable set;
    - ``sparsity_overall``: zeros / (conv + linear + BatchNorm weights), the COLT-style figure the
      paper reports (shared/research/paper.md 2.4);
    - ``layer_density``: fraction non-zero of every conv and linear weight.
    """
    prunable = {id(p) for _, p in prunable_parameters(model, layers)}
    zeros_prunable = n_prunable = zeros_all = n_all = 0
    density = {}
    for name, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear, nn.BatchNorm2d)) and m.weight is not None:
            w = m.weight
            z = int((w == 0).sum())
            zeros_all += z
            n_all += w.numel()
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                density[f"{name}.weight"] = 1 - z / w.numel()
            if id(w) in prunable:
                zeros_prunable += z
                n_prunable += w.numel()
    return {
        "sparsity_prunable": zeros_prunable / n_prunable,
        "sparsity_overall": zeros_all / n_all,
        "prunable_weights": n_prunable,
        "overall_weights": n_all,
        "layer_density": density,
    }
