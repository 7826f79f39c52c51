"""COLT: cyclic overlapping lottery tickets (Hossain et al., IEEE TAI 2025; ismail31416/COLT), as its
official code runs it (docs/baselines.md, "COLT").

1. The classes are split into ``colt.partitions`` contiguous ranges, each relabelled 0..n-1; model j
   trains and is tested on partition j only. Every model starts from one shared init theta0 with
   an n-way head.
2. Round 0: each model trains on its partition (``colt.train``).
3. Round r >= 1: each model prunes ``round(colt.rate * remaining)`` of its remaining conv weights
   by one global |w| threshold; every parameter (conv, linear, BatchNorm weight and bias) rewinds
   to theta0, BatchNorm running statistics do not; the masks become their AND; each model
   retrains on its partition with the mask fixed.
4. The chain stops at the first round whose mask reaches the target sparsity (on the grid's
   measure, counted on the final C-way network). With ``colt.exact_final_round`` (default, a
   stated deviation) that last round prunes only what is left to reach the target: each model
   removes the same smaller count, the least that makes the AND of the masks land on it. The
   official code prunes the full 15% and overshoots (``exact_final_round: false``). Its ticket
   (theta0 with that mask, a fresh C-way head from a fixed seed) trains on the full data with
   ``retrain``, the mask fixed: that is the run's model.

Every full round is a cached stage (``colt-round``, keyed by round number), so one chain per
(dataset, model, seed, colt section) serves every target sparsity; a truncated last round is a
stage of its own, keyed by the target too. A run is charged the seconds of every round it used
(reused ones at what they cost when made) plus its own final training.
"""
from __future__ import annotations

import copy

import torch

from bench import plan as P
from bench.context import Outcome
from bench.engine import TrainResult
from bench.masks import Masks, sparsity_stats
from bench.stages import stage_ident

LAYERS = "conv"          # COLT prunes every Conv2d weight, never the head or BatchNorm


NAME = "colt"
VERSION = 1
PRUNES = True
SECTIONS = ("retrain", "colt")


def prunable_set(cfg) -> str:
    return LAYERS


def partitions(data, parts: int) -> list:
    """COLT's class split: partition j holds classes [j*n, (j+1)*n), relabelled 0..n-1 (n = C / parts),
    its own train and test samples (COLT utils.py:13-74)."""
    c = data.num_classes
    if c % parts:
        raise ValueError(f"COLT splits the classes into equal contiguous ranges: {c} classes cannot be split "
                         f"into colt.partitions={parts}")
    n = c // parts
    out = [data.subset_classes(list(range(j * n, (j + 1) * n))) for j in range(parts)]
    for j, part in enumerate(out):       # a small slice of a many-class dataset can leave a range empty
        if not len(part.train_y) or not len(part.test_y):
            raise ValueError(f"COLT partition {j} (classes {j * n}..{(j + 1) * n - 1}) has {len(part.train_y)} train "
                             f"and {len(part.test_y)} test images in this data; it needs both (raise "
                             "dataset.train_limit / dataset.test_limit)")
    return out


def magnitudes(mk: Masks) -> list[torch.Tensor]:
    return [p.detach().abs() for p in mk.params]


@torch.no_grad()
def prune_round(models: list, masks: list[Masks], theta0: dict, rate: float, count: int | None = None) -> list[int]:
    """One COLT round before retraining. Each model removes ``round(rate * remaining)`` of its remaining
    conv weights (Python round, ties to even, as torch.nn.utils.prune counts), or ``count`` when given
    (a truncated last round), lowest |w| first across all its convs; then every parameter rewinds to
    ``theta0`` (buffers, i.e. BatchNorm running statistics, do not); then every model's mask becomes the
    AND of all of them, applied to its weights. Returns the count each model removed, before the
    intersection."""
    removed = []
    for mk in masks:
        left = mk.remaining()
        k = round(rate * left) if count is None else count
        mk.prune_count(magnitudes(mk), mk.numel - left + k)
        removed.append(k)
    for model in models:
        for name, p in model.named_parameters():
            p.copy_(theta0[name])
    masks[0].intersect_(*masks[1:])
    for mk in masks[1:]:
        mk.copy_from(masks[0])
    return removed


@torch.no_grad()
def final_round_count(masks: list[Masks], rate: float, target) -> int | None:
    """The per-model count that makes this round the last one, or None when a full round stays short of
    the target. The AND of the models' masks, each removing its ``k`` lowest-|w| remaining weights,
    removes exactly the weights whose earliest rank over the models is below ``already + k``; the
    least such ``k`` whose measured zeros reach ``target`` is the answer (at most the full round's)."""
    already = masks[0].numel - masks[0].remaining()
    full = round(rate * masks[0].remaining())
    first = torch.stack([mk.ranks(magnitudes(mk)) for mk in masks]).min(dim=0).values
    counted = first[masks[0].member_flags(target.member)].sort().values    # measured weights, by earliest rank
    need = target.zeros - target.fixed
    if need <= 0:
        return 0
    if need > counted.numel() or int(counted[need - 1]) >= already + full:
        return None
    return max(0, int(counted[need - 1]) - already + 1)


# What a chain of full rounds depends on (every target of a seed shares it; also its plan's key).
CHAIN = ("dataset", "model", "seed", "colt")


def _mean(xs):
    return sum(xs) / len(xs)


def run(ctx) -> Outcome:
    cfg, colt = ctx.cfg, ctx.cfg.colt
    parts = partitions(ctx.data, colt.partitions)
    # The ticket: theta0 with the last round's mask and a fresh C-way head, the same head for every
    # ticket (COLT transfer.py:239-241,346-354). The target is counted on it (C-way head).
    final = ctx.build(num_classes=ctx.data.num_classes, seed=ctx.seed_for("colt-head"))
    final_masks = Masks(final, LAYERS)
    target = ctx.target(final_masks, final)
    init = ctx.build(num_classes=parts[0].num_classes)               # theta0, from the run seed
    theta0 = {k: v.detach().clone() for k, v in init.state_dict().items()}
    models = [copy.deepcopy(init) for _ in parts]
    masks = [Masks(m, LAYERS) for m in models]

    def step(r, phase):
        count = None
        if r > 0 and colt.exact_final_round:      # whether this round is the last (truncated) one
            with ctx.phase(f"{phase}-plan", group="score+prune"):
                count = final_round_count(masks, colt.rate, target)

        def produce():
            pruned = [0] * len(models)
            if r > 0:
                with ctx.phase(phase, group="score+prune"):
                    pruned = prune_round(models, masks, theta0, colt.rate, count)
            results = [ctx.train(m, colt.train, phase=phase, group="score+prune", masks=mk, data=part,
                                 seed=ctx.seed_for(f"{phase}/partition{j}"))
                       for j, (m, mk, part) in enumerate(zip(models, masks, parts))]
            return ({"results": [x.to_dict() for x in results], "pruned": pruned},
                    {"models": [m.state_dict() for m in models], "mask": masks[0].state_dict()})
        return count is not None, produce

    def restore(payload):
        for m, mk, state in zip(models, masks, payload["models"]):
            m.load_state_dict(state)
            mk.load_state_dict(payload["mask"])

    def record(r, phase, meta, last):
        results = [TrainResult.from_dict(x) for x in meta["results"]]
        # COLT's own counter is model 0's, n-way head included (prune.py:200-215): "overall" here.
        ctx.add_round(r, phase=phase, sparsity=sparsity_stats(models[0], LAYERS)["sparsity"],
                      top1_final=_mean([x.top1_final for x in results]),
                      top1_best=_mean([x.top1_best for x in results]),
                      partition_top1_final=[x.top1_final for x in results],
                      partition_top1_best=[x.top1_best for x in results], pruned_per_model=meta["pruned"],
                      truncated=last)

    r = ctx.rounds("colt-round", target, sections=CHAIN, version=VERSION, first=0, limit=colt.max_rounds,
                   step=step, restore=restore, record=record, reached=lambda: target.missing(masks[0]) <= 0,
                   too_many=lambda r: f"COLT did not reach sparsity {cfg.prune.sparsity} in colt.max_rounds="
                                      f"{colt.max_rounds} rounds (round {r - 1}: {masks[0].sparsity():.4f}); raise it")

    missing, unexpected = final.load_state_dict({k: v for k, v in theta0.items() if not k.startswith("linear.")},
                                                strict=False)
    assert sorted(missing) == ["linear.bias", "linear.weight"] and not unexpected, (missing, unexpected)
    final_masks.copy_from(masks[0])
    result = ctx.train(final, cfg.retrain, phase="retrain", group="retrain", masks=final_masks)

    phases = ctx.phases()
    rounds_s = sum(phases[f"round{i:02d}"]["seconds"] for i in range(r + 1))
    ctx.extra.update(final_round=r, seconds_rounds=rounds_s,
                     seconds_rounds_plus_final=rounds_s + phases["retrain"]["seconds"],
                     seconds_note="The paper's COLT minutes do not say whether COLT's final full-data training "
                                  "is included: seconds_rounds counts rounds 0..final_round (round 0 = the "
                                  "partition models' dense training), seconds_rounds_plus_final adds it.")
    off = None if colt.exact_final_round else ("COLT's official stopping rule (colt.exact_final_round: false): "
                                               "the first full round at or past the target")
    return Outcome(model=final, result=result, masks=final_masks, off_target=off)


def plan(cfg) -> list[P.Work]:
    """Rounds estimated from the rate: each model keeps 1 - rate of its remaining conv weights, and the
    AND of the partition models' masks keeps about (1 - rate)^partitions when they overlap little (on
    the committed H100 records one round more at 98%: docs/performance.md)."""
    colt = cfg.colt
    fraction = P.prunable_fraction(cfg, LAYERS)
    last = P.rounds_to(fraction, (1 - colt.rate) ** colt.partitions, colt.max_rounds)
    work = []
    for r in range(last + 1):
        ident = {"round": r}
        if r == last and colt.exact_final_round:
            ident.update(target=cfg.prune.sparsity, measure=cfg.prune.measure)
        work.append(P.training(cfg, colt.train, f"round{r:02d}", fraction=1 / colt.partitions, models=colt.partitions,
                               shared=P.key("colt-round", stage_ident(cfg, CHAIN, VERSION, **ident))))
    return [*work, P.training(cfg, cfg.retrain, "retrain")]
