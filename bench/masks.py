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
# What a target sparsity counts (prune.measure): zeros over the weights of a measure's set.
# ``overall`` (conv + linear + BatchNorm weights) is COLT's and the paper's; ``prunable`` is the
# method's own prunable set, so it differs between methods (not a common axis).
MEASURES = ("overall", "prunable", "conv", "conv+linear", "conv-noshortcut")
# A run is on its target when its realised sparsity (on the grid's measure) is within 0.05
# percentage points of it; tables, claims and figures compare only such runs.
TOLERANCE = 0.0005


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
    def _order(scores: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """The pruning order of flat ``scores``: entries already removed (``keep`` false) first, then
        lowest score first; ties go by position (deterministic)."""
        if not torch.isfinite(scores[keep]).all():
            raise ValueError("importance scores contain NaN or inf for unpruned weights")
        ranked = torch.where(keep, scores, torch.full_like(scores, -float("inf")))
        return torch.argsort(ranked, stable=True)

    @classmethod
    def _lowest(cls, scores: torch.Tensor, keep: torch.Tensor, k: int) -> torch.Tensor:
        """A flat 0/1 mask with the first ``k`` entries of the pruning order removed."""
        new = torch.ones_like(scores)
        new[cls._order(scores, keep)[:k]] = 0
        return new

    def _flat(self, scores: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        self._check_scores(scores)
        return (torch.cat([s.detach().float().flatten() for s in scores]),
                torch.cat([m.flatten() for m in self.masks]) > 0)

    def _set_flat(self, flat: torch.Tensor) -> None:
        for m, piece in zip(self.masks, torch.split(flat, [m.numel() for m in self.masks])):
            m.copy_(piece.view_as(m))
        self.apply()

    @torch.no_grad()
    def prune_global(self, scores: Sequence[torch.Tensor], sparsity: float) -> int:
        """Remove exactly ``round(sparsity * N)`` weights of the prunable set, lowest score first,
        ranked across all tensors at once (``prune_count``). Returns the count removed."""
        if not 0 <= sparsity < 1:
            raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
        return self.prune_count(scores, round(sparsity * self.numel))

    @torch.no_grad()
    def prune_count(self, scores: Sequence[torch.Tensor], k: int) -> int:
        """Leave exactly ``k`` weights of the prunable set removed, lowest score first, ranked across
        all tensors at once. Weights already pruned stay pruned (they rank first). Ties are broken by
        position, so the selection is deterministic. Returns ``k``."""
        flat, keep = self._flat(scores)
        already = int((~keep).sum())
        if not already <= k <= flat.numel():
            raise ValueError(f"cannot leave {k} of {flat.numel()} weights pruned: {already} are already pruned "
                             "and pruned weights are never revived")
        self._set_flat(self._lowest(flat, keep, k))
        return k

    @torch.no_grad()
    def ranks(self, scores: Sequence[torch.Tensor]) -> torch.Tensor:
        """Each weight's (flat) position in the global pruning order of ``scores``: ``prune_count(scores, k)``
        removes exactly the weights of rank < k."""
        flat, keep = self._flat(scores)
        rank = torch.empty(flat.numel(), dtype=torch.long, device=flat.device)
        rank[self._order(flat, keep)] = torch.arange(flat.numel(), device=flat.device)
        return rank

    def member_flags(self, member: Sequence[bool]) -> torch.Tensor:
        """A flat bool per weight: whether its tensor is a ``member``."""
        return torch.cat([torch.full((m.numel(),), bool(b), device=m.device) for m, b in zip(self.masks, member)])

    @torch.no_grad()
    def ranked_in(self, scores: Sequence[torch.Tensor], member: Sequence[bool]) -> torch.Tensor:
        """Cumulative count, along the global pruning order of ``scores`` (already pruned first), of the
        weights whose tensor is a ``member``: entry i is how many of the first i + 1 removed weights
        count. (How many weights a global prune must remove to land a measure that counts only some
        of the prunable tensors on its target.)"""
        flat, keep = self._flat(scores)
        return torch.cumsum(self.member_flags(member)[self._order(flat, keep)].long(), 0)

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


def _measured(model: nn.Module, prunable: set[int]):
    """(name, module, the measures that count its weight) for every conv, linear and BatchNorm module."""
    for name, m in model.named_modules():
        if not isinstance(m, (nn.Conv2d, nn.Linear, nn.BatchNorm2d)) or m.weight is None:
            continue
        keys = ["overall"]
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            keys.append("conv+linear")
        if isinstance(m, nn.Conv2d):
            keys.append("conv")
            if not _is_shortcut(name):
                keys.append("conv-noshortcut")
        if id(m.weight) in prunable:
            keys.append("prunable")
        yield name, m, keys


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
    for name, m, keys in _measured(model, prunable):
        w = m.weight
        z, n = int((w == 0).sum()), w.numel()
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            density[f"{name}.weight"] = 1 - z / n
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


class UnreachableSparsity(ValueError):
    """A target that the method's prunable set cannot reach on the grid's measure, even pruned whole."""

    def __init__(self, target: float, measure: str, maximum: float, reason: str, layers: str | None = None):
        self.target, self.measure, self.maximum, self.reason = target, measure, maximum, reason
        self.layers = layers                     # the prunable set that cannot reach it
        super().__init__(f"target sparsity {target:g} ({measure}) is unreachable: {reason}")


class Target:
    """A target sparsity on a measure, in weight counts of one model whose prunable set is ``masks``'.

    A measure is a union of whole weight tensors (every conv, linear or BatchNorm weight is in it or
    not), so a target becomes a count of zeros: ``zeros = round(fraction * total)``. Zeros of measured
    tensors outside the prunable set are fixed (``fixed``); the rest must come from pruning the
    prunable tensors that the measure counts (``member``)."""

    def __init__(self, masks: "Masks", model: nn.Module, fraction: float, measure: str):
        if measure not in MEASURES:
            raise ValueError(f"unknown sparsity measure {measure!r}; allowed: {', '.join(MEASURES)}")
        self.fraction, self.measure = float(fraction), measure
        prunable = {id(p) for p in masks.params}
        counted = [(m.weight, id(m.weight) in prunable) for _, m, keys in _measured(model, prunable) if measure in keys]
        self.total = sum(w.numel() for w, _ in counted)
        with torch.no_grad():
            self.fixed = sum(int((w == 0).sum()) for w, inside in counted if not inside)
        ids = {id(w) for w, _ in counted}
        self.member = [id(p) in ids for p in masks.params]
        self.capacity = sum(p.numel() for p, b in zip(masks.params, self.member) if b)
        self.zeros = round(self.fraction * self.total)

    @property
    def maximum(self) -> float:
        """The highest sparsity on this measure that pruning the whole prunable set reaches."""
        return (self.fixed + self.capacity) / self.total if self.total else 0.0

    def check(self, layers: str) -> None:
        """Raise ``UnreachableSparsity`` when the prunable set ``layers``, pruned whole, stays below the target."""
        if self.fixed + self.capacity < self.zeros:
            raise UnreachableSparsity(
                self.fraction, self.measure, self.maximum,
                f"the prunable set '{layers}' holds {self.capacity:,} of the {self.total:,} weights the measure "
                f"counts; pruned whole it reaches {100 * self.maximum:.2f}% {self.measure}", layers)

    def pruned_in(self, masks: "Masks") -> int:
        """Zeros that ``masks`` put into the measured prunable tensors."""
        return sum(int(m.numel() - m.sum()) for m, b in zip(masks.masks, self.member) if b)

    def missing(self, masks: "Masks") -> int:
        """Measured weights still to prune to land on the target (negative: past it)."""
        return self.zeros - self.fixed - self.pruned_in(masks)

    def global_count(self, masks: "Masks", scores: Sequence[torch.Tensor]) -> int:
        """The number of prunable weights a global prune by ``scores`` must leave removed so that the
        measure lands on the target (``Masks.prune_count``)."""
        need = self.zeros - self.fixed
        if need <= 0:
            return masks.numel - masks.remaining()
        if all(self.member):
            return need + sum(int(m.numel() - m.sum()) for m, b in zip(masks.masks, self.member) if not b)
        counted = masks.ranked_in(scores, self.member)
        return int(torch.searchsorted(counted, torch.tensor(need, device=counted.device))) + 1

    def realised(self, model: nn.Module, layers: str) -> float:
        return sparsity_stats(model, layers)["sparsity"]["prunable" if self.measure == "prunable" else self.measure]
