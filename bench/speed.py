"""``python -m bench speed``: training throughput on one device, every configuration in one run.

Configurations (``--only``; all by default), each printed, and appended as a row with the device
name to the Markdown file ``--output`` names (none by default; docs/performance.md holds the rows the
project measured):

- ``engine`` and ``engine-compiled``: ``bench.engine.train`` with cross-entropy, ``runtime.compile``
  off and on: the uint8 split on the device, augmentation on the device, bf16 and channels_last on
  CUDA, fused SGD, no per-step host sync. One untimed warm-up epoch (it absorbs compilation, whose
  seconds are reported apart), then ``--epochs`` timed epochs; evaluation is not timed.
- ``official-0``, ``official-8`` (``--workers``): the baselines' official training loop, as COLT's
  code runs it: a torchvision ``CIFAR10``/``CIFAR100`` dataset over the same folder with PIL
  transforms (RandomCrop with padding, RandomHorizontalFlip, RandomRotation as the preset's
  augmentation says, ToTensor, Normalize), a ``DataLoader`` (shuffle, batch of the recipe, 0 or 8
  workers), fp32, contiguous memory, cuDNN deterministic with benchmark off (COLT main.py:41-48),
  SGD with momentum; dense (COLT's prune hooks and gradient rule would only slow it further).
  ``--official-steps`` steps are timed after ``--official-warmup`` untimed ones.
- ``cells-K`` (``--cells``): K processes on the one device, each training its own model with the
  engine (the grid's ``runtime.compile``) after a warm-up epoch, started together at a barrier;
  the row is the grid's total images/s (all images / (last end - first start)). These rows also go
  to ``bench/throughput.csv`` (``--throughput``), the table ``bench estimate`` prices grids with.

- speed candidates (issue 20), ``engine`` or ``kd`` with switches joined by ``-`` and an optional
  batch ``:bN``: ``compiled`` (runtime.compile), ``graphs`` (runtime.cuda_graphs), ``stream``
  (runtime.teacher_stream), ``fold`` (runtime.teacher_fold_bn). ``kd`` is a tgp-kd retraining
  step: the student masked at 90% sparsity, the preset's teacher architecture (randomly
  initialised: only time is measured) in inference mode, CA-KLD + CE. E.g. ``engine-graphs:b512``,
  ``kd-graphs-stream``. Each row's s/epoch is printed against the 1.5 s goal.

``--steps N`` bounds every engine row and the profile by steps instead of epochs: the training
split is cut to N batches, one call trains 2 such epochs and the second one is timed (the first
absorbs cuDNN's autotuning and any CUDA-graph capture); s/epoch is s/step x the full split's
steps, labelled "N steps" in the row.

``--profile``: the engine's step broken into parts (data and augmentation, forward, backward,
optimizer, masks, metrics, evaluation), the device synchronised around each part, as a table;
twice: a retraining step (cross-entropy, masks at 90%) and a tgp-kd fine-tune step (student and
teacher forward, CA-KLD, the importance EMA after each backward pass).

``--pipeline``: the proposed method's whole pipeline (dense pre-training, teacher-guided
fine-tune, pruning, retraining) at the preset's recipe for one sparsity, wall-clock per phase,
the teacher trained and counted separately. ``--epochs-scale`` shortens every recipe; the full
recipe's time is then extrapolated per phase from seconds per epoch, and labelled as such.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import multiprocessing as mp
import os
import tempfile
import time
import traceback
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F

from .artifacts import Artifacts
from .config import Config, ConfigError, from_dict, load_config, to_dict
from .context import RunContext
from .data import spec_of, load_dataset
from .engine import PhaseTimer, train
from .estimate import THROUGHPUT, append_row as append_throughput
from .importance import EMAImportance
from .losses import Distillation
from .masks import Masks
from .models import build_model
from .runner import run_grid
from .runtime import precision, persistent_compile_cache, resolve_device, use_channels_last, use_compile
from .store import atomic_write_bytes, load_runs


class StepProfile:
    """Seconds per part of the training step, for ``python -m bench speed --profile``. Every
    section synchronises the device before and after it, so profiled training is slower and its
    shares, not its total, are the result. Grids never profile."""

    SECTIONS = ("data", "forward", "backward", "optimizer", "masks", "metrics", "evaluation")
    LABELS = {"data": "data + augmentation", "forward": "forward + loss (teacher included)",
              "backward": "backward (+ importance)", "optimizer": "optimizer + LR schedule",
              "masks": "masks (grads and weights)", "metrics": "metrics + NaN flag", "evaluation": "evaluation"}

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.seconds = dict.fromkeys(self.SECTIONS, 0.0)

    @contextlib.contextmanager
    def section(self, name: str):
        if self.cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        try:
            yield
        finally:
            if self.cuda:
                torch.cuda.synchronize()
            self.seconds[name] += time.perf_counter() - t0

    def table(self) -> str:
        total = sum(self.seconds.values()) or 1.0
        lines = ["| part of the step | seconds | share |", "|---|---|---|"]
        lines += [f"| {self.LABELS[k]} | {v:.3f} | {100 * v / total:.1f}% |" for k, v in self.seconds.items()]
        return "\n".join(lines + [f"| total | {total:.3f} | 100% |"])


MARK = "<!-- bench-speed rows: appended by `python -m bench speed` -->"
HEADER = ("| date | device | torch | data | model | batch | precision | configuration | images/s | s/epoch "
          "| vs official, 0 workers | compile s |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n")
PIPELINE_MARK = "<!-- bench-speed pipeline rows: appended by `python -m bench speed --pipeline` -->"
PIPELINE_HEADER = ("| date | device | torch | preset (model, data) | method, sparsity | epochs run (pre/ft/re; teacher) | pretrain s "
                   "| finetune s | score+prune s | retrain s | eval s | compile s | student pipeline s | full recipe "
                   "| teacher s |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")


def _quiet(_):
    pass


def _device_label(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --------------------------------------------------------------------------- the engine

def _model(cfg: Config, data, device):
    torch.manual_seed(0)
    model = build_model(cfg.model.arch, data.num_classes).to(device)
    if use_channels_last(cfg.runtime):
        model = model.to(memory_format=torch.channels_last)
    return model


def _one_test_batch(data, cfg: Config | None, n: int | None = None):
    """``data`` with its test split cut to one training batch: the engine evaluates after every
    epoch, and these rows are about training (evaluation is timed apart, in the profile)."""
    n = n or cfg.retrain.batch_size
    return replace(data, test_x=data.test_x[:n], test_y=data.test_y[:n], monitor=None)


# The goals the rows are printed against (docs/performance.md, "On one H100": the goal table).
GOAL_S_PER_EPOCH = 1.5    # ResNet-18, full CIFAR-10, one cell on one GPU
# The proposed pipeline (tgp, cifar10-paper recipe, teacher apart) on one H100: about a fifth of the
# paper's 27.82 min for it.
GOAL_PIPELINE_MIN = 5.6
SWITCHES = {"compiled": ("compile", "on"), "graphs": ("cuda_graphs", "on"), "stream": ("teacher_stream", "on"),
            "fold": ("teacher_fold_bn", "on")}


def parse_candidate(name: str) -> tuple[str, dict, int | None] | None:
    """``engine-graphs:b512`` -> ("engine", {"cuda_graphs": "on"}, 512); None if not of that form."""
    base, _, batch = name.partition(":")
    kind, *mods = base.split("-")
    if kind not in ("engine", "kd") or any(m not in SWITCHES for m in mods) or len(set(mods)) != len(mods):
        return None
    if kind == "engine" and {"stream", "fold"} & set(mods):
        return None                                   # no teacher to overlap or fold
    if batch and not (batch.startswith("b") and batch[1:].isdigit() and int(batch[1:]) > 0):
        return None
    return kind, dict(SWITCHES[m] for m in mods), int(batch[1:]) if batch else None


def kd_objective(cfg: Config, data, device) -> Distillation:
    """A distillation objective with the preset's teacher architecture, randomly initialised (only
    the time of its forward matters here), frozen, channels_last as the runs keep it."""
    torch.manual_seed(1)
    teacher = build_model(cfg.teacher.arch, data.num_classes).to(device)
    if use_channels_last(cfg.runtime):
        teacher = teacher.to(memory_format=torch.channels_last)
    return Distillation(teacher.eval(), cfg.kd, gamma=0.5)


def _cut(data, steps: int, batch: int):
    """``data`` with its training split cut to ``steps`` batches and its test split to one batch."""
    n = steps * batch
    return _one_test_batch(replace(data, train_x=data.train_x[:n], train_y=data.train_y[:n]), None, batch)


def engine_rate(cfg: Config, data, device, epochs: int, profile: StepProfile | None = None,
                sparsity: float | None = None, *, steps: int | None = None, objective=None,
                importance: bool = False, recipe=None) -> dict:
    """images/s of ``engine.train`` (``recipe``, default the ``retrain`` recipe; constant LR) after a
    warm-up; with ``sparsity``, masked like a retraining (global magnitude masks of the initial
    weights); ``objective`` (default cross-entropy); ``importance``: tgp's EMA after each backward.
    Epochs: a warm-up epoch, then ``epochs`` timed ones (their training seconds). ``steps``: see
    the module docstring (one call, two epochs of ``steps`` batches, the second one timed)."""
    recipe = replace(recipe or cfg.retrain, epochs=epochs, warmup_epochs=0.0, schedule="constant", milestones=[])
    model = _model(cfg, data, device)
    masks = Masks(model, cfg.prune.layers)
    if sparsity is not None:
        masks.prune_global([p.detach().abs() for p in masks.params], sparsity)
    hooks = [EMAImportance(masks.params)] if importance else []
    masks = masks if sparsity is not None else None
    timer = PhaseTimer(device)
    common = dict(runtime=cfg.runtime, timer=timer, augment=cfg.dataset.augment, masks=masks, objective=objective,
                  hooks=hooks)
    full_steps = data.steps_per_epoch(recipe.batch_size, recipe.drop_last)
    if steps is None:
        train(model, data, replace(recipe, epochs=1), seed=0, phase="warmup", log=_quiet, **common)
        res = train(model, data, recipe, seed=1, phase="timed", log=_quiet, profile=profile, **common)
        seconds, images = res.train_seconds / epochs, full_steps * recipe.batch_size
    else:
        cut = _cut(data, steps, recipe.batch_size)
        steps = cut.steps_per_epoch(recipe.batch_size, recipe.drop_last)    # fewer where the split is smaller
        if profile is not None:       # the profile's shares come from a whole call of N steps
            train(model, cut, replace(recipe, epochs=1), seed=0, phase="warmup", log=_quiet, **common)
            res = train(model, cut, replace(recipe, epochs=1), seed=1, phase="timed", log=_quiet, profile=profile,
                        **common)
            seconds = res.train_seconds
        else:
            ends = []                 # an epoch's end is logged after its metrics are read: a device sync
            train(model, cut, replace(recipe, epochs=2), seed=1, phase="timed",
                  log=lambda line: ends.append(time.perf_counter()), **common)
            seconds = ends[-1] - ends[-2]
        seconds, images = seconds / steps * full_steps, full_steps * recipe.batch_size
    return {"images_per_s": images / seconds, "s_per_epoch": seconds,
            "compile_s": timer.seconds("compile"), "precision": precision(cfg.runtime, device.type)}


# --------------------------------------------------------------------------- the official loop

def official_rate(cfg: Config, data_dir: Path, device, workers: int, steps: int, warmup: int) -> dict:
    """images/s of the baselines' official loop (module docstring) on the same folder and model."""
    import torchvision
    import torchvision.transforms as T

    name = cfg.dataset.name
    if name not in ("cifar10", "cifar100") or cfg.dataset.classes is not None or cfg.dataset.image_size is not None:
        raise ConfigError(f"the official loop reads whole CIFAR folders with torchvision at 32 px; dataset {name!r} "
                          f"(classes {cfg.dataset.classes}, image_size {cfg.dataset.image_size}) is not one")
    spec, aug = spec_of(name), cfg.dataset.augment
    base = torchvision.datasets.CIFAR10 if name == "cifar10" else torchvision.datasets.CIFAR100

    class Folder(base):
        """The folder as torchvision reads it, minus its md5 checks (bench.data compares the files
        with the official md5s and says so in the row) and minus unpickling the label-names file,
        which bench.data never unpickles either (no class names are needed to train)."""

        def _check_integrity(self):
            return True

        def _load_meta(self):
            self.classes = [str(c) for c in range(spec.num_classes)]

    tf = [T.RandomCrop(spec.image_size, padding=aug.crop_padding)] if aug.crop_padding else []
    tf += [T.RandomHorizontalFlip()] if aug.flip else []
    tf += [T.RandomRotation(aug.rotate_deg)] if aug.rotate_deg else []
    tf += [T.ToTensor(), T.Normalize(spec.mean, spec.std)]
    ds = Folder(str(data_dir), train=True, transform=T.Compose(tf), download=False)
    if cfg.dataset.train_limit:
        ds = torch.utils.data.Subset(ds, range(min(cfg.dataset.train_limit, len(ds))))
    recipe = cfg.retrain
    loader = torch.utils.data.DataLoader(ds, batch_size=recipe.batch_size, shuffle=True, drop_last=False,
                                         num_workers=workers, persistent_workers=workers > 0)
    torch.manual_seed(0)
    model = build_model(cfg.model.arch, spec.num_classes).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                          weight_decay=recipe.weight_decay)
    cudnn = torch.backends.cudnn
    saved = cudnn.deterministic, cudnn.benchmark
    cudnn.deterministic, cudnn.benchmark = True, False
    model.train()

    def batches():
        while True:
            yield from loader

    it = batches()
    try:
        for i in range(warmup + steps):
            if i == warmup:
                _sync(device)
                t0 = time.perf_counter()
            x, y = next(it)
            x, y = x.to(device), y.to(device)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        _sync(device)
        seconds = time.perf_counter() - t0
    finally:
        cudnn.deterministic, cudnn.benchmark = saved
        del it, loader
    n = len(ds)
    rate = steps * recipe.batch_size / seconds
    return {"images_per_s": rate, "s_per_epoch": n / rate, "compile_s": 0.0, "precision": "fp32"}


# --------------------------------------------------------------------------- concurrent cells

def _cell(rank: int, cfg_dict: dict, data_dir: str, epochs: int, threads: int, barrier, queue) -> None:
    """One of K concurrent cells (a spawned process): warm up, wait for the others, train, report."""
    try:
        torch.set_num_threads(threads)
        cfg = from_dict(Config, cfg_dict)
        device = resolve_device(cfg.runtime)
        data = _one_test_batch(load_dataset(cfg.dataset, data_dir, device), cfg)
        recipe = replace(cfg.retrain, epochs=epochs, warmup_epochs=0.0, schedule="constant", milestones=[])
        model = _model(cfg, data, device)
        timer = PhaseTimer(device)
        train(model, data, replace(recipe, epochs=1), runtime=cfg.runtime, timer=timer, seed=rank,
              augment=cfg.dataset.augment, phase="warmup", log=_quiet)
        _sync(device)
        barrier.wait(timeout=900)
        t0 = time.monotonic()           # CLOCK_MONOTONIC: one clock for every process of the host
        train(model, data, recipe, runtime=cfg.runtime, timer=timer, seed=100 + rank, augment=cfg.dataset.augment,
              phase="timed", log=_quiet)
        _sync(device)
        t1 = time.monotonic()
        images = data.steps_per_epoch(recipe.batch_size, recipe.drop_last) * recipe.batch_size * epochs
        queue.put({"rank": rank, "images": images, "t0": t0, "t1": t1, "compile_s": timer.seconds("compile")})
    except BaseException as e:  # noqa: BLE001 - report the failure to the parent, which raises it
        barrier.abort()
        queue.put({"rank": rank, "error": f"{type(e).__name__}: {e}"})


def cells_rate(cfg: Config, data_dir: Path, device, k: int, epochs: int) -> dict:
    """The total images/s of ``k`` cells training at once on ``device`` (separate processes)."""
    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(k), ctx.Queue()
    threads = max(1, torch.get_num_threads() // k) if device.type == "cpu" else max(1, (os.cpu_count() or 1) // k)
    procs = [ctx.Process(target=_cell, args=(r, to_dict(cfg), str(data_dir), epochs, threads, barrier, queue))
             for r in range(k)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=1800) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    errors = [r["error"] for r in results if "error" in r]
    if errors:
        raise RuntimeError(f"a concurrent cell failed: {errors[0]}")
    span = max(r["t1"] for r in results) - min(r["t0"] for r in results)
    rate = sum(r["images"] for r in results) / span
    per_epoch = results[0]["images"] / epochs
    return {"images_per_s": rate, "s_per_epoch": per_epoch * k / rate, "precision": precision(cfg.runtime, device.type),
            "compile_s": max(r["compile_s"] for r in results)}


# --------------------------------------------------------------------------- rows

def _measure(name: str, cfg: Config, args, data, device) -> dict:
    cand = parse_candidate(name)
    if cand is not None:
        kind, switches, batch = cand
        runtime = replace(cfg.runtime, **{"compile": "off", **switches})
        recipe = replace(cfg.retrain, batch_size=batch or cfg.retrain.batch_size)
        c = replace(cfg, runtime=runtime, retrain=recipe)
        objective = kd_objective(c, data, device) if kind == "kd" else None
        res = engine_rate(c, _one_test_batch(data, c), device, args.epochs, steps=args.steps, objective=objective,
                          sparsity=0.9 if kind == "kd" else None)
        return {**res, "batch": recipe.batch_size}
    kind, _, n = name.partition("-")
    if kind == "official" and n.isdigit():
        return official_rate(cfg, args.data_dir, device, int(n), args.official_steps, args.official_warmup)
    if kind == "cells" and n.isdigit() and int(n) >= 1:
        return cells_rate(cfg, args.data_dir, device, int(n), args.epochs)
    raise ConfigError(f"--only: unknown configuration {name!r}; allowed: official-N, cells-K, and engine or kd with "
                      f"switches ({', '.join(SWITCHES)}; stream and fold need kd) and a batch, e.g. engine-graphs:b512")


def append_row(path: Path, mark: str, header: str, line: str) -> None:
    text = path.read_text() if path.exists() else ""
    if mark not in text:
        text = text.rstrip("\n") + f"\n\n{mark}\n\n{header}"
    atomic_write_bytes(path, (text + line).encode())


def _data_label(data) -> str:
    return _data_label_of(data.info)


def _data_label_of(info: dict) -> str:
    return f"{info['name']} ({info['n_train']} train{'' if info['official'] else ', not the official files'})"


def run_speed(args) -> list[dict]:
    if args.steps is not None and args.steps < 1:
        raise ConfigError(f"--steps has value {args.steps}; allowed: an integer >= 1")
    cfg = load_config(args.preset, [*args.overrides, *([f"runtime.device={args.device}"] if args.device else [])])
    device = resolve_device(cfg.runtime)
    persistent_compile_cache(Path(args.results) / "cache" / "inductor")
    data = load_dataset(cfg.dataset, args.data_dir, device)
    dev = _device_label(device)
    print(f"speed on {dev}: {_data_label(data)}, {cfg.model.arch}, batch {cfg.retrain.batch_size}")

    if args.profile:
        steps = f"{args.steps} steps (evaluation: one test batch)" if args.steps else (
            f"{args.epochs} epoch(s), evaluation on {len(data.test_y)} images per epoch")
        for what, kw in (("a retraining step (cross-entropy, masks at 90% sparsity)", {"sparsity": 0.9}),
                         (f"a tgp-kd fine-tune step (student forward and backward, {cfg.teacher.arch} teacher forward "
                          f"in inference mode, CA-KLD + CE, the importance EMA after each backward pass; dense, "
                          f"the tgp.finetune batch {cfg.tgp.finetune.batch_size})",
                          {"objective": kd_objective(cfg, data, device), "importance": True,
                           "recipe": cfg.tgp.finetune})):
            prof = StepProfile(device)
            t0 = time.perf_counter()
            res = engine_rate(cfg, data, device, args.epochs, profile=prof, steps=args.steps, **kw)
            print(f"engine step profile: {what}, {steps}, compile {'on' if use_compile(cfg.runtime) else 'off'}, "
                  f"{res['precision']}; the device is synchronised around every part, so the total is slower than "
                  f"unprofiled training ({time.perf_counter() - t0:.0f} s wall):\n{prof.table()}\n", flush=True)
        return []

    # The official loop with 0 workers first: every later row is compared with it when it is appended.
    workers = [f"official-{w}" for w in args.workers.split(",")]
    todo = args.only.split(",") if args.only else (
        workers[:1] + ["engine", "engine-compiled"] + workers[1:] + [f"cells-{k}" for k in args.cells.split(",")])
    rows, base = [], None
    for name in todo:         # each row is printed and appended as soon as it is measured
        t0 = time.perf_counter()
        try:
            res = _measure(name, cfg, args, data, device)
        except (ConfigError, ImportError, RuntimeError, OSError) as e:
            print(f"{name:16s} FAILED: {type(e).__name__}: {e}")
            if args.verbose:
                traceback.print_exc()
            continue
        if name == "official-0":
            base = res["images_per_s"]
        res.update(name=name, ratio=res["images_per_s"] / base if base else None)
        rows.append(res)
        ratio = f"{res['ratio']:.2f}x" if res["ratio"] else "n/a"
        label = f"{name} ({args.steps} steps)" if args.steps and parse_candidate(name) else name
        goal = ""
        if parse_candidate(name):
            gap = res["s_per_epoch"] - GOAL_S_PER_EPOCH
            goal = (f"  goal {GOAL_S_PER_EPOCH} s/epoch: " + ("met" if gap <= 0 else f"{gap:+.2f} s over")
                    + ("" if cfg.model.arch == "resnet18" and device.type == "cuda" else " (the goal is for ResNet-18 on a GPU)"))
        print(f"{label:36s} {res['images_per_s']:10.1f} images/s {res['s_per_epoch']:8.2f} s/epoch  {ratio:>7s} the "
              f"official loop (0 workers)  compile {res['compile_s']:.1f} s  ({time.perf_counter() - t0:.0f} s wall){goal}",
              flush=True)
        if args.output:
            append_row(Path(args.output), MARK, HEADER,
                       f"| {dt.date.today().isoformat()} | {dev} | {torch.__version__} | {_data_label(data)} | "
                       f"{cfg.model.arch} | {res.get('batch', cfg.retrain.batch_size)} | {res['precision']} | {label} | "
                       f"{res['images_per_s']:.0f} | {res['s_per_epoch']:.2f} | {ratio} | {res['compile_s']:.1f} |\n")
        kind, _, k = name.partition("-")
        if args.throughput and kind == "cells":       # the cost estimate's table (bench/estimate.py)
            append_throughput({"date": dt.date.today().isoformat(), "device": dev, "torch": torch.__version__,
                               "model": cfg.model.arch, "image_size": data.image_size,
                               "batch": cfg.retrain.batch_size, "precision": res["precision"], "cells": int(k),
                               "images_per_s": f"{res['images_per_s']:.0f}", "source": f"bench speed {name}"},
                              Path(args.throughput))
    if args.output and rows:
        print(f"appended {len(rows)} rows to {args.output}")
    if args.throughput and any(r["name"].startswith("cells-") for r in rows):
        print(f"appended the cells-K rows to {args.throughput}")
    return rows


# --------------------------------------------------------------------------- the pipeline

def _scale(recipe: dict, scale: float) -> None:
    recipe["epochs"] = max(1, round(recipe["epochs"] * scale))
    recipe["warmup_epochs"] = min(recipe["warmup_epochs"], recipe["epochs"])


def run_pipeline(args) -> dict:
    """The proposed method's pipeline at one sparsity, the teacher apart; per-phase wall-clock."""
    over = [*args.overrides, *([f"runtime.device={args.device}"] if args.device else [])]
    full = load_config(args.preset, over)
    s = args.epochs_scale
    if s <= 0:
        raise ConfigError(f"--epochs-scale has value {s}; allowed: a number > 0")
    sparsity = args.sparsity if args.sparsity is not None else max(full.grid.sparsities or [full.prune.sparsity])
    seed = (full.grid.seeds or [full.seed])[0]
    d = to_dict(full)
    for recipe in (d["pretrain"], d["retrain"], d["teacher"]["train"], d["tgp"]["finetune"]):
        _scale(recipe, s)
    d["grid"] = {"methods": [args.method], "sparsities": [sparsity], "seeds": [seed]}
    cfg = from_dict(Config, d)
    results = Path(tempfile.mkdtemp(prefix="pipeline-", dir=_mkdir(Path(args.results))))
    persistent_compile_cache(Path(args.results) / "cache" / "inductor")
    device = resolve_device(cfg.runtime)
    dev = _device_label(device)
    print(f"pipeline on {dev}: {cfg.name} {args.method} at sparsity {sparsity}, seed {seed}, epochs x {s:g} "
          f"(results in {results})")

    # 1. The teacher, on its own clock (the run then finds it cached and does not count it),
    # trained without compile: it is made once per dataset, and compiling a ResNet-50's training
    # step would cost the one device call minutes (its forward in the fine-tune is compiled).
    data = load_dataset(cfg.dataset, args.data_dir, device)
    tcfg = from_dict(Config, {**to_dict(cfg), "runtime": {**to_dict(cfg)["runtime"], "compile": "off"}})
    tctx = RunContext(tcfg, data, device, Artifacts(results / "cache"), log=print if args.verbose else _quiet)
    t0 = time.perf_counter()
    tctx.teacher()
    teacher_wall = time.perf_counter() - t0
    teacher = tctx.ledger.timer.seconds()
    del data, tctx
    # 2. The student's pipeline: one cell of the grid.
    t0 = time.perf_counter()
    counts = run_grid(cfg, results, args.data_dir, log=print if args.verbose else _quiet)
    wall = time.perf_counter() - t0
    if counts.get("ok") != 1:
        raise RuntimeError(f"the pipeline run did not finish: {counts}")
    (rec,) = load_runs(results)
    phases = {k: v["seconds"] for k, v in rec["phases"].items() if not v["reused"]}
    epochs = {"pretrain": cfg.pretrain.epochs, "finetune": cfg.tgp.finetune.epochs, "retrain": cfg.retrain.epochs}
    full_epochs = {"pretrain": full.pretrain.epochs, "finetune": full.tgp.finetune.epochs,
                   "retrain": full.retrain.epochs}
    factor = {k: full_epochs[k] / epochs[k] for k in epochs}
    factor["eval"] = sum(full_epochs.values()) / sum(epochs.values())
    student = sum(phases.values())
    full_student = sum(v * factor.get(k, 1.0) for k, v in phases.items())
    tfac = full.teacher.train.epochs / cfg.teacher.train.epochs
    teacher_total = sum(teacher.values())
    full_teacher = teacher.get("teacher", 0) * tfac + teacher.get("eval", 0) * tfac + teacher.get("compile", 0)
    extrapolated = s != 1.0
    print("phase seconds (measured): " + ", ".join(f"{k} {v:.1f}" for k, v in sorted(phases.items()))
          + "; teacher (compile off): " + ", ".join(f"{k} {v:.1f}" for k, v in sorted(teacher.items())))
    print(f"student pipeline: {student:.1f} s measured ({wall:.1f} s wall with set-up and records)"
          + (f"; {full_student:.1f} s = {full_student / 60:.2f} min extrapolated to the full recipe "
             f"({full_epochs['pretrain']}/{full_epochs['finetune']}/{full_epochs['retrain']} epochs)" if extrapolated else
             f" = {student / 60:.2f} min"))
    print(f"teacher: {teacher_total:.1f} s measured ({teacher_wall:.1f} s wall)"
          + (f"; {full_teacher:.1f} s extrapolated to {full.teacher.train.epochs} epochs" if extrapolated else ""))
    target = GOAL_PIPELINE_MIN * 60
    verdict = full_student if extrapolated else student
    print(f"goal (on one H100, full CIFAR-10, a fifth of the paper's 27.82 min): {target:.0f} s; here "
          f"{'within' if verdict <= target else 'over'} it ({'extrapolated' if extrapolated else 'measured'})")
    row = {"phases": phases, "student_s": student, "student_full_s": full_student, "teacher_s": teacher_total,
           "teacher_full_s": full_teacher, "extrapolated": extrapolated, "device": dev}
    if args.output:
        ep = f"{epochs['pretrain']}/{epochs['finetune']}/{epochs['retrain']}; {cfg.teacher.train.epochs}"
        fullcol = (f"{full_student:.0f} s = {full_student / 60:.2f} min (extrapolated)" if extrapolated
                   else f"{student / 60:.2f} min (measured)")
        teach = f"{teacher_total:.0f}" + (f" ({full_teacher:.0f} extrapolated)" if extrapolated else "")
        what = f"{full.name} ({rec['model']}, {_data_label_of(rec['data'])})"
        line = (f"| {dt.date.today().isoformat()} | {dev} | {torch.__version__} | {what} | {args.method}, "
                f"{sparsity:g} | {ep} | {phases.get('pretrain', 0):.1f} | {phases.get('finetune', 0):.1f} | "
                f"{phases.get('score', 0) + phases.get('prune', 0):.1f} | {phases.get('retrain', 0):.1f} | {phases.get('eval', 0):.1f} | "
                f"{phases.get('compile', 0):.1f} | {student:.1f} | {fullcol} | {teach} |\n")
        append_row(Path(args.output), PIPELINE_MARK, PIPELINE_HEADER, line)
        print(f"appended a row to {args.output}")
    return row


def _mkdir(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p


# --------------------------------------------------------------------------- CLI

def register(sub) -> None:
    p = sub.add_parser("speed", help="training throughput: the engine (compile off/on), the official loop "
                                     "(0 and 8 workers), K concurrent cells; --profile; --pipeline")
    p.add_argument("--preset", default="cifar10-paper",
                   help="dataset, augmentation, model and recipe (the retrain recipe's batch, lr) to measure with")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a preset value, e.g. --set model.arch=resnet_small --set dataset.train_limit=2048")
    p.add_argument("--device", default=None, help="runtime.device (default: the preset's, auto)")
    p.add_argument("--data-dir", type=Path, default=Path("data"),
                   help="where datasets live in their standard layouts (default: data)")
    p.add_argument("--results", type=Path, default=Path("results/speed"),
                   help="inductor's compile cache and the pipeline's runs go here")
    p.add_argument("--epochs", type=int, default=2, help="timed epochs of the engine and of each cell")
    p.add_argument("--steps", type=int, default=None,
                   help="bound the engine rows and the profile by N training steps instead of epochs "
                        "(s/epoch extrapolated to the full split)")
    p.add_argument("--workers", default="0,8", help="DataLoader workers of the official loop rows")
    p.add_argument("--official-steps", type=int, default=100, help="timed steps of the official loop")
    p.add_argument("--official-warmup", type=int, default=10, help="untimed steps before them")
    p.add_argument("--cells", default="1,2,4", help="numbers of concurrent cells")
    p.add_argument("--only", default=None,
                   help="comma list of configurations: official-N, cells-K, engine[-SWITCH...][:bN], "
                        "kd[-SWITCH...][:bN]; switches: compiled, graphs, stream, fold (e.g. kd-graphs-stream:b512)")
    p.add_argument("--profile", action="store_true", help="print the engine's per-part step profile instead")
    p.add_argument("--pipeline", action="store_true", help="time the proposed method's pipeline instead")
    p.add_argument("--method", default="tgp", help="--pipeline: the method (tgp or tgp-kd)")
    p.add_argument("--sparsity", type=float, default=None, help="--pipeline: default the preset's highest")
    p.add_argument("--epochs-scale", type=float, default=1.0,
                   help="--pipeline: multiply every recipe's epochs (and extrapolate back to the full recipe)")
    p.add_argument("--output", default="", metavar="FILE",
                   help="append the rows to this Markdown file, e.g. docs/performance.md (default: print only)")
    p.add_argument("--throughput", default=str(THROUGHPUT),
                   help="append the cells-K rows here too: the table `bench estimate` prices grids with ('' to skip)")
    p.add_argument("--verbose", action="store_true", help="print each training call's progress lines too")
    p.set_defaults(func=cmd_speed)


def cmd_speed(args) -> int:
    if args.pipeline:
        run_pipeline(args)
    else:
        run_speed(args)
    return 0
