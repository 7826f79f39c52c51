"""EGP: entropy-guided pruning (Liao et al., ICCV 2023 Workshops; ZhuLIAO001/Unstructured_Relu_Pruning_Reduce_Depth),
as its official code runs it, with the ReLU-to-conv mapping it intends (docs/baselines.md, "EGP").

1. A dense model trained with EGP's own recipe (``egp.dense``; cached apart from ``dense``).
2. Each iteration:
   a. the binary on/off entropy of every ReLU channel, over one pass of augmented training batches
      in eval mode; a layer's entropy is the mean over its channels that are neither always on nor
      always off, averaged over batches;
   b. each ReLU scores the conv before it (stem relu -> conv1, block reluK -> convK; the 1x1
      shortcuts are never pruned): score = entropy x mean |w| of its remaining weights; layers
      with zero entropy or nothing left are skipped this iteration;
   c. a budget of ``egp.rate`` of the remaining weights of those layers is shared out by a peaked
      softmax of (sum of scores) / score, layers that would get more than they have are removed
      entirely and their share goes to the others (``allocate``);
   d. per-layer pruning by |w|, then ``egp.finetune`` with a fresh optimizer, the masks fixed and
      no rewinding.
3. The run for a target is the model after the first iteration whose sparsity (on the grid's
   measure) is at or beyond it. With ``egp.exact_final_round`` (default, a stated deviation) that
   last iteration's budget is only what is left to reach the target, shared out by the same
   allocation; ``false`` keeps the official full iteration, which overshoots. Every full iteration
   is a cached stage (``egp-round``), so one chain per (dataset, model, seed, egp section) serves
   every target; a truncated last iteration is keyed by the target too.

``egp.layers: conv`` (a labelled variant, not EGP's code) lets EGP prune the 1x1 shortcut convs
too, each scored by the entropy of the ReLU after its block's residual add; EGP's own set cannot
reach the paper's 98.41% overall on ResNet-18 (its weights are about 98.37% of the network).
"""
from __future__ import annotations


import torch
import torch.nn as nn

from bench import plan as P
from bench.context import Outcome
from bench.data import make_generator
from bench.engine import TrainResult
from bench.masks import Masks, sparsity_stats
from bench.stages import stage_ident


NAME = "egp"
VERSION = 1
PRUNES = True
SECTIONS = ("egp",)
# a grid may list the label alone (bench/registry.py::variants)
VARIANTS = {"egp-shortcut": {"egp.layers": "conv"}}


def prunable_set(cfg) -> str:
    return cfg.egp.layers


# --------------------------------------------------------------------------- entropy

def channel_entropy(a: torch.Tensor) -> torch.Tensor:
    """Mean binary entropy (bits) of the on/off state (a > 0) of ``a``'s channels (dim 1), each channel's
    on-probability taken over every other dim; channels always on or always off are left out, and a
    layer with none left gives 0 (EGP main.py:103-123). float32, no host sync."""
    p = (a > 0).float().mean(dim=[d for d in range(a.ndim) if d != 1])
    live = ((p > 0) & (p < 1)).sum()
    # The clamps (EGP's) make a dead or saturated channel's term exactly 0, so summing every
    # channel sums the live ones.
    h = -(p * torch.log2(p.clamp(min=1e-5)) + (1 - p) * torch.log2((1 - p).clamp(min=1e-5)))
    return h.sum() / live.clamp(min=1)


def relu_to_conv(model: nn.Module, shortcuts: bool = False) -> dict[str, list[str]]:
    """{ReLU module name: the conv weights it scores}: the stem ``relu`` -> ``conv1``, a block's ``reluK``
    -> its ``convK`` (relu2 follows the residual add and still scores conv2; EGP main.py:318-327). With
    ``shortcuts``, a block's last ReLU (after the add) also scores the block's 1x1 shortcut conv."""
    convs = {n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    out: dict[str, list[str]] = {}
    for name, m in model.named_modules():
        if not isinstance(m, nn.ReLU):
            continue
        prefix, _, leaf = name.rpartition(".")
        conv = "conv1" if leaf == "relu" else "conv" + leaf.removeprefix("relu")
        conv = f"{prefix}.{conv}" if prefix else conv
        if conv not in convs:
            raise ValueError(f"EGP pairs ReLU {name!r} with conv {conv!r}, which the model does not have")
        out[name] = [f"{conv}.weight"]
    if shortcuts:
        for name in sorted(c for c in convs if c.endswith(".shortcut.0")):
            block = name.removesuffix(".shortcut.0")
            last = max(r for r in out if r.rpartition(".")[0] == block)       # relu2 (basic), relu3 (bottleneck)
            out[last].append(f"{name}.weight")
    return out


@torch.no_grad()
def layer_entropies(model: nn.Module, batches) -> dict[str, torch.Tensor]:
    """{ReLU module name: its entropy averaged over ``batches``}, measured by forward hooks with the
    model in eval mode and in float32 (EGP main.py:78-130)."""
    sums, handles = {}, []

    def hook(name):
        def record(module, inputs, output):      # returns None: the output is left as it is
            sums[name].add_(channel_entropy(output))
        return record

    for name, m in model.named_modules():
        if isinstance(m, nn.ReLU):
            sums[name] = torch.zeros((), device=next(model.parameters()).device)
            handles.append(m.register_forward_hook(hook(name)))
    was_training = model.training
    model.eval()
    n = 0
    try:
        for batch in batches:
            model(batch.x)
            n += 1
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return {k: v / max(n, 1) for k, v in sums.items()}


# --------------------------------------------------------------------------- allocation

def allocate(scores: dict[str, torch.Tensor], remaining: dict[str, int], budget: float) -> dict[str, int]:
    """EGP's per-layer pruning counts (main.py:356-396). ``scores``: layer -> entropy x mean |w| (float32
    scalars), in module order, eligible layers only; ``remaining``: their unpruned weights; ``budget``:
    the weights to remove (EGP: rate x the remaining weights of these layers).

    Repeat: a_l = B softmax_l(T / S_l) over the layers still waiting (T = their total score); in
    module order, a layer with fewer weights than a_l gets all of them (it is removed entirely),
    leaves the waiting set, and B and T drop by its weights and score; stop when a pass caps
    nothing. The lowest score takes nearly the whole budget until it is empty. Counts are floored.
    float32 where EGP computes in float32 (T / S_l and the exp)."""
    names = list(scores)
    total = torch.tensor(sum(scores[n].item() for n in names), dtype=torch.float32)
    waiting, amount = list(names), {}
    while waiting:
        head = {n: total / scores[n].float() for n in waiting}
        top = max(head.values())
        expo = {n: torch.exp(head[n] - top).item() for n in waiting}
        z = sum(expo.values())
        for n in waiting:
            amount[n] = budget * (expo[n] / z)
        capped = [n for n in waiting if remaining[n] < amount[n]]
        for n in capped:
            amount[n] = remaining[n]
            budget -= remaining[n]
            total = total - scores[n].float()
            waiting.remove(n)
        if not capped:
            break
    return {n: int(amount[n]) for n in names}


def layer_scores(masks: Masks, entropy: dict[str, torch.Tensor]) -> tuple[dict, dict]:
    """(scores, remaining) of the layers eligible this iteration, from their entropies ({conv weight
    name: entropy}); layers with zero entropy or no weight left are skipped (EGP main.py:337-347)."""
    scores, remaining = {}, {}
    for name, w, m in zip(masks.names, masks.params, masks.masks):
        e = entropy.get(name)
        left = int(m.sum())
        if e is None or float(e) == 0 or left == 0:
            continue
        scores[name] = e.float() * w.detach()[m > 0].abs().float().mean()
        remaining[name] = left
    return scores, remaining


def iteration_counts(masks: Masks, entropy: dict[str, torch.Tensor], rate: float, target=None) -> tuple[dict, bool]:
    """One iteration's counts ({layer: weights to remove}) and whether it is the last one: with a
    ``target`` (``masks.Target``, exact last iteration) and when a full budget of ``rate`` x the eligible
    remaining weights would reach it, the least budget whose counts land on it."""
    scores, remaining = layer_scores(masks, entropy)
    if not scores:
        return {}, False
    full = rate * sum(remaining.values())
    if target is None:
        return allocate(scores, remaining, full), False
    member = dict(zip(masks.names, target.member))
    need = target.missing(masks)

    def counted(budget: float) -> int:
        return sum(k for n, k in allocate(scores, remaining, budget).items() if member[n])

    if counted(full) < need:
        return allocate(scores, remaining, full), False
    lo, hi = 0, int(full) + 1               # the least integer budget with counted(budget) >= need
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (mid + 1, hi) if counted(mid) < need else (lo, mid)
    return allocate(scores, remaining, min(lo, full)), True


# --------------------------------------------------------------------------- the method

# What EGP's cached dense model and a chain of full iterations depend on (every target of a seed
# shares them; also their plan's keys).
DENSE = ("dataset", "model", "seed", "egp.dense", "egp.augment")
CHAIN = ("dataset", "model", "seed", "egp")


def run(ctx) -> Outcome:
    cfg, egp = ctx.cfg, ctx.cfg.egp
    model = ctx.build()
    masks = Masks(model, egp.layers)
    target = ctx.target(masks, model)          # an unreachable target fails here, before any training

    def train_dense():
        res = ctx.train(model, egp.dense, phase="pretrain", group="pretrain", augment=egp.augment)
        return {"result": res.to_dict()}, None

    meta, _ = ctx.stage("egp-dense", train_dense, ("pretrain",), sections=DENSE, version=VERSION, model=model)
    result = TrainResult.from_dict(meta["result"])
    pairs = relu_to_conv(model, shortcuts=egp.layers == "conv")

    def step(r, phase):
        # The entropy pass and the allocation decide whether this iteration is the last (truncated) one,
        # so they run before the cached stage (again on a cache hit): a phase of their own.
        with ctx.phase(f"{phase}-plan", group="score+prune"):
            gen = make_generator(ctx.seed_for(f"{phase}/entropy"), ctx.device)
            batches = ctx.data.train_batches(egp.entropy_batch_size, egp.augment, gen, drop_last=False)
            entropy = {conv: v for relu, v in layer_entropies(model, batches).items() for conv in pairs[relu]}
            counts, last = iteration_counts(masks, entropy, egp.rate, target if egp.exact_final_round else None)

        def produce():
            with ctx.phase(phase, group="score+prune"):
                masks.prune_per_layer([p.detach().abs() for p in masks.params], counts)
            res = ctx.train(model, egp.finetune, phase=phase, group="score+prune", masks=masks, augment=egp.augment)
            return ({"result": res.to_dict(), "pruned": counts, "entropy": {k: float(v) for k, v in entropy.items()}},
                    {"mask": masks.state_dict()})
        return last, produce

    def record(r, phase, meta, last):
        nonlocal result
        result = TrainResult.from_dict(meta["result"])
        emptied = [n for n, w in zip(masks.names, masks.masks) if n in meta["pruned"] and not bool(w.any())]
        ctx.add_round(r, phase=phase, sparsity=sparsity_stats(model, egp.layers)["sparsity"],
                      top1_final=result.top1_final, top1_best=result.top1_best, pruned_per_layer=meta["pruned"],
                      entropy=meta["entropy"], layers_removed=emptied, truncated=last)

    def too_many(r):
        return (f"EGP did not reach sparsity {cfg.prune.sparsity} ({target.measure}) in egp.max_iterations="
                f"{egp.max_iterations} iterations (iteration {r - 1}: {target.realised(model, egp.layers):.4f}); raise it")

    reached = lambda: target.missing(masks) <= 0            # noqa: E731
    r = 0 if reached() else ctx.rounds("egp-round", target, sections=CHAIN, version=VERSION, first=1,
                                       limit=egp.max_iterations, step=step, record=record, reached=reached,
                                       restore=lambda payload: masks.load_state_dict(payload["mask"]),
                                       too_many=too_many, model=model)

    rounds_s = sum(ctx.phases()[f"round{i:02d}"]["seconds"] for i in range(1, r + 1))
    ctx.extra.update(final_round=r, seconds_rounds=rounds_s, seconds_rounds_plus_final=rounds_s,
                     seconds_note="EGP has no training after its last iteration: the last iteration's fine-tune "
                                  "is its final training, so both sums are the iterations' seconds (the dense "
                                  "model's, group pretrain, is in neither).")
    off = None if egp.exact_final_round else ("EGP's official iterations (egp.exact_final_round: false): the "
                                              "first full iteration at or past the target")
    return Outcome(model=model, result=result, masks=masks, off_target=off)


def plan(cfg) -> list[P.Work]:
    """Iterations estimated from the rate: each keeps 1 - rate of the eligible remaining weights (the
    committed H100 records: exactly so). Every cell runs each iteration's entropy pass itself."""
    egp = cfg.egp
    last = P.rounds_to(P.prunable_fraction(cfg, egp.layers), 1 - egp.rate, egp.max_iterations)
    work = [P.training(cfg, egp.dense, "pretrain", shared=P.key("egp-dense", stage_ident(cfg, DENSE, VERSION)))]
    for r in range(1, last + 1):
        ident = {"round": r}
        if r == last and egp.exact_final_round:
            ident.update(target=cfg.prune.sparsity, measure=cfg.prune.measure)
        work += [P.forward(cfg, f"round{r:02d}-plan", P.split(cfg.dataset).train, egp.entropy_batch_size),
                 P.training(cfg, egp.finetune, f"round{r:02d}",
                            shared=P.key("egp-round", stage_ident(cfg, CHAIN, VERSION, **ident)))]
    return work
