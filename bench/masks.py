"""The one mask mechanism: a 0/1 buffer per prunable tensor, applied around every optimizer step.

Weights are zeroed when a mask is set and re-masked after each ``optimizer.step()``, so momentum
and weight decay can never revive a pruned weight. Gradients are masked before the step as well,
which keeps the optimizer's momentum buffers zero at pruned positions (clean state in
checkpoints). Every way of choosing what to prune (global, per layer, intersection, a mask taken
from another model) ends in the same buffers.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
import torch.nn as nn

SCOPES = ("conv", "conv+linear", "conv-noshortcut")


def _is_shortcut(name: str) -> bool:
    return "shortcut" in name.split(".")


def prunable_parameters(model: nn.Module, layers: str = "conv") -> list[tuple[str, nn.Parameter]]:
    """The prunable set, in module order:

    - ``conv``: every Conv2d weight (the paper's and COLT's accounting);
    - ``conv+linear``: plus every Linear weight (ProsPr, hence Simple/EPSD);
    - ``conv-noshortcut``: every Conv2d weight except the 1x1 shortcut (downsample) convs, i.e. the
      convs followed by a ReLU (EGP's set).

    BatchNorm parameters and biases always stay dense."""
    if layers not in SCOPES:
        raise ValueError(f"unknown prunable scope {layers!r}; allowed: {', '.join(SCOPES)}")
    kinds = (nn.Conv2d, nn.Linear) if layers == "conv+linear" else (nn.Conv2d,)
    return [(f"{name}.weight", m.weight) for name, m in model.named_modules()
            if isinstance(m, kinds) and not (layers == "conv-noshortcut" and _is_shortcut(name))]


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

    def remaining(self) -> int:
        """Unpruned weights (one host sync)."""
        return int(sum(m.sum() for m in self.masks).item())

    def sparsity(self) -> float:
        return 1.0 - self.remaining() / self.numel

    def pruned_per_layer(self) -> dict[str, int]:
        """{tensor name: weights pruned}."""
        return {n: int(m.numel() - m.sum().item()) for n, m in zip(self.names, self.masks)}

    @torch.no_grad()
    def apply(self) -> None:
        torch._foreach_mul_(self.params, self.masks)

    @torch.no_grad()
    def mask_grads(self) -> None:
        pairs = [(p.grad, m) for p, m in zip(self.params, self.masks) if p.grad is not None]
        if pairs:
            torch._foreach_mul_([g for g, _ in pairs], [m for _, m in pairs])

    def _check_scores(self, scores: Sequence[torch.Tensor]) -> None:
        if len(scores) != len(self.params):
            raise ValueError(f"expected {len(self.params)} score tensors, got {len(scores)}")
        for s, p, n in zip(scores, self.params, self.names):
            if s.shape != p.shape:
                raise ValueError(f"score for {n} has shape {tuple(s.shape)}, weight has {tuple(p.shape)}")

    @staticmethod
    def _lowest(scores: torch.Tensor, keep: torch.Tensor, k: int) -> torch.Tensor:
        """A flat 0/1 mask with the ``k`` lowest-scored entries removed; entries already removed
        (``keep`` false) rank first, so they stay removed. Ties go by position (deterministic)."""
        if not torch.isfinite(scores[keep]).all():
            raise ValueError("importance scores contain NaN or inf for unpruned weights")
        ranked = torch.where(keep, scores, torch.full_like(scores, -float("inf")))
        order = torch.argsort(ranked, stable=True)
        new = torch.ones_like(scores)
        new[order[:k]] = 0
        return new

    def _set_flat(self, flat: torch.Tensor) -> None:
        for m, piece in zip(self.masks, torch.split(flat, [m.numel() for m in self.masks])):
            m.copy_(piece.view_as(m))
        self.apply()

    @torch.no_grad()
    def prune_global(self, scores: Sequence[torch.Tensor], sparsity: float) -> int:
        """Remove exactly ``round(sparsity * N)`` weights of the prunable set, lowest score first,
        ranked across all tensors at once. Weights already pruned stay pruned (they rank first).
        Ties are broken by position, so the selection is deterministic. Returns the count removed."""
        if not 0 <= sparsity < 1:
            raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
        self._check_scores(scores)
        flat = torch.cat([s.detach().float().flatten() for s in scores])
        keep = torch.cat([m.flatten() for m in self.masks]) > 0
        k = round(sparsity * flat.numel())
        already = int((~keep).sum())
        if k < already:
            raise ValueError(f"target sparsity {sparsity} removes {k} weights but {already} are already "
                             "pruned; pruned weights are never revived")
        self._set_flat(self._lowest(flat, keep, k))
        return k

    @torch.no_grad()
    def prune_per_layer(self, scores: Sequence[torch.Tensor], counts: Mapping[str, int]) -> int:
        """In each named tensor, remove ``counts[name]`` more of its *remaining* weights, lowest score
        first (tensors not named are left as they are). Returns the total removed."""
        self._check_scores(scores)
        unknown = sorted(set(counts) - set(self.names))
        if unknown:
            raise ValueError(f"per-layer counts name tensors outside the prunable set: {unknown}")
        total = 0
        for name, s, m in zip(self.names, scores, self.masks):
            k = int(counts.get(name, 0))
            if k == 0:
                continue
            keep = m.flatten() > 0
            left = int(keep.sum())
            if not 0 <= k <= left:
                raise ValueError(f"cannot remove {k} weights from {name}: {left} remain")
            new = self._lowest(s.detach().float().flatten(), keep, m.numel() - left + k)
            m.copy_(new.view_as(m))
            total += k
        self.apply()
        return total

    @torch.no_grad()
    def intersect_(self, *others: "Masks") -> None:
        """Keep a weight only where every mask keeps it (COLT's AND of the partition masks)."""
        for o in others:
            if o.names != self.names:
                raise ValueError("cannot intersect masks over different prunable tensors")
            torch._foreach_mul_(self.masks, [x.to(self.masks[0].device) for x in o.masks])
        self.apply()

    @torch.no_grad()
    def copy_from(self, other: "Masks") -> None:
        """Take ``other``'s mask tensor by tensor name (a mask moved between models whose prunable
        tensors have the same names and shapes; e.g. COLT's ticket given a new head)."""
        mine = dict(zip(self.names, self.masks))
        theirs = dict(zip(other.names, other.masks))
        missing = [n for n in self.names if n not in theirs]
        if missing:
            raise ValueError(f"the source mask has no tensor(s) {missing}")
        for n, m in mine.items():
            if theirs[n].shape != m.shape:
                raise ValueError(f"mask {n}: shape {tuple(theirs[n].shape)} in the source, {tuple(m.shape)} here")
            m.copy_(theirs[n])
        self.apply()

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
    """Measured (not assumed) sparsity: zeros actually present in the weights, under every
    definition the compared papers use (docs/baselines.md, "Sparsity definitions"):

    - ``prunable``: zeros / weights of the run's prunable set (``layers``);
    - ``conv``: zeros / all Conv2d weights (the paper's conv-level targets);
    - ``overall``: zeros / (conv + linear + BatchNorm weights), the COLT-style figure the paper reports;
    - ``conv+linear``: zeros / (Conv2d + Linear weights), ProsPr's and so EPSD's;
    - ``conv-noshortcut``: zeros / the convs followed by a ReLU, EGP's.

    ``layer_density`` is the fraction non-zero of every conv and linear weight."""
    count = {k: [0, 0] for k in ("prunable", "conv", "overall", "conv+linear", "conv-noshortcut")}
    prunable = {id(p) for _, p in prunable_parameters(model, layers)}
    density = {}
    for name, m in model.named_modules():
        if not isinstance(m, (nn.Conv2d, nn.Linear, nn.BatchNorm2d)) or m.weight is None:
            continue
        w = m.weight
        z, n = int((w == 0).sum()), w.numel()
        keys = ["overall"]
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            density[f"{name}.weight"] = 1 - z / n
            keys.append("conv+linear")
        if isinstance(m, nn.Conv2d):
            keys.append("conv")
            if not _is_shortcut(name):
                keys.append("conv-noshortcut")
        if id(w) in prunable:
            keys.append("prunable")
        for k in keys:
            count[k][0] += z
            count[k][1] += n
    sparsity = {k: (z / n if n else 0.0) for k, (z, n) in count.items()}
    return {
        "sparsity": sparsity,
        "sparsity_prunable": sparsity["prunable"],
        "sparsity_overall": sparsity["overall"],
        "prunable_weights": count["prunable"][1],
        "overall_weights": count["overall"][1],
        "layer_density": density,
    }
