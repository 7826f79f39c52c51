"""What a grid will cost, before it starts: ``python -m bench estimate CONFIG`` and ``bench run --dry-run``.

Each method declares its work (``plan(cfg)``, bench/plan.py); the cells still to run are planned
without data, each shared artifact (teacher, dense model, fine-tune, round of a chain) counted once,
and the work is priced with the throughput table ``bench/throughput.csv`` (rows measured by
``python -m bench speed``: device, model, image size, batch, precision, K concurrent cells, images/s).

The step-time model (docs/performance.md, "Estimating a grid"): a training step of one cell costs
``host`` seconds of its own process (Python, kernel launches: cells run it side by side) and
``device`` seconds of the shared device, so K cells on one device each take max(host, K x device)
per step. From a group of rows of one network: host = batch / images/s of one cell, device =
batch / the best images/s of any K. A network without rows is scaled from a measured one: device
time by multiply-accumulates per batch; host time by the number of conv, linear and BatchNorm
layers on a GPU (launch-bound), by multiply-accumulates on a CPU (compute-bound). A forward pass
without gradients (a teacher's, evaluation, EGP's entropy pass) costs ``plan.FORWARD`` of a step.
"""
from __future__ import annotations

import csv
import functools
import math
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.nn as nn

from . import registry
from .config import Config, MethodEntry, from_dict, upgrade, ConfigError, load_config
from .declared import Guarded
from .grid import declared_sections, RunSpec, expand_grid
from .masks import UnreachableSparsity
from .models import build_model
from .plan import FORWARD, Work, split
from .report.aggregate import grid_totals, record_device, run_time
from .runtime import device_type, precision
from .store import atomic_write_bytes, load_runs, status_of

THROUGHPUT = Path(__file__).with_name("throughput.csv")
COLUMNS = ("date", "device", "torch", "model", "image_size", "batch", "precision", "cells", "images_per_s", "source")
# A grid that this many hours of this machine's CPU would not finish is a GPU grid (the paper presets:
# thousands of hours): `bench run` refuses to train it on the CPU without --allow-cpu.
CPU_HOURS_LIMIT = 100.0


class CostError(ValueError):
    """A grid refused because of what it would cost where it would run."""


# --------------------------------------------------------------------------- the throughput table

def load_rows(path: Path = THROUGHPUT) -> list[dict]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r.update(image_size=int(r["image_size"]), batch=int(r["batch"]), cells=int(r["cells"]),
                 images_per_s=float(r["images_per_s"]))
    return rows


def append_row(row: dict, path: Path = THROUGHPUT) -> None:
    """Add one measured row (``bench speed``); the file is rewritten atomically."""
    text = path.read_text() if path.exists() else ",".join(COLUMNS) + "\n"
    line = ",".join(str(row[c]).replace(",", ";") for c in COLUMNS)
    atomic_write_bytes(path, (text + line + "\n").encode())


@functools.lru_cache(maxsize=None)
def network(arch: str, image_size: int) -> tuple[int, int]:
    """(multiply-accumulates of one image's forward pass, conv + linear + BatchNorm layers), counted on
    the meta device (no memory, no weights)."""

    with torch.device("meta"):
        model = build_model(arch, 10).eval()        # eval: BatchNorm takes a batch of one at any size
    macs = 0

    def count(m, inputs, out):
        nonlocal macs
        if isinstance(m, nn.Conv2d):
            macs += out.numel() * m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
        else:
            macs += m.in_features * m.out_features
    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model(torch.empty(1, 3, image_size, image_size, device="meta"))
    for h in hooks:
        h.remove()
    return macs, sum(isinstance(m, (nn.Conv2d, nn.Linear, nn.BatchNorm2d)) for m in model.modules())


def this_device_name(dev_type: str) -> str:
    """How the table names this machine's device: the GPU's name, or 'cpu (N threads)'."""
    if dev_type == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"cpu ({torch.get_num_threads()} threads)"


def _threads(name: str) -> Optional[int]:
    m = re.search(r"(\d+) threads?", name)
    return int(m.group(1)) if m else None


@dataclass
class Speed:
    """The step-time model of one device, from the table's rows (module docstring)."""
    name: str                              # the device asked for
    groups: dict                           # (model, image size, batch) -> {cells: images/s}
    cpu: bool
    scale: float = 1.0                     # another CPU's rows: their threads / this CPU's
    notes: list[str] = field(default_factory=list)
    used: dict = field(default_factory=dict)       # (arch, image size, batch) -> how it was priced

    def parts(self, arch: str, size: int, batch: int) -> tuple[float, float]:
        """(host, device) seconds of one training step of ``arch`` at ``size`` px and ``batch``."""
        want = (arch, size, batch)
        ref = want if want in self.groups else min(self.groups, key=lambda g: (
            g[0] != arch, g[1] != size, abs(math.log(g[2] / batch)), -len(self.groups[g]), g))
        rates = self.groups[ref]
        host = ref[2] / rates[1] if 1 in rates else min(k * ref[2] / r for k, r in rates.items())
        dev = ref[2] / max(rates.values())
        if ref == want:
            self.used.setdefault(want, "measured (cells " + ", ".join(map(str, sorted(rates))) + ")")
        else:
            compute = batch * network(arch, size)[0] / (ref[2] * network(ref[0], ref[1])[0])
            layers = network(arch, size)[1] / network(ref[0], ref[1])[1]
            dev *= compute
            host *= compute if self.cpu else layers
            self.used.setdefault(want, f"scaled from {ref[0]} {ref[1]}px batch {ref[2]}: x{compute:.3g} "
                                       "multiply-accumulates per step" + ("" if self.cpu else f", x{layers:.2f} layers"))
        return host * self.scale, dev * self.scale

    def seconds(self, w: Work, cells: int, eval_batch: int) -> tuple[float, float]:
        """(training, evaluation) seconds of ``w`` in one of ``cells`` cells sharing the device."""
        host, dev = (x * w.passes for x in self.parts(w.arch, w.image_size, w.batch_size))
        if w.teacher:
            th, td = self.parts(w.teacher, w.image_size, w.batch_size)
            host, dev = host + FORWARD * th, dev + FORWARD * td
        train = w.images / w.batch_size * max(host, cells * dev)
        if not w.eval_images:
            return train, 0.0
        eh, ed = self.parts(w.arch, w.image_size, eval_batch)
        return train, w.eval_images / eval_batch * FORWARD * max(eh, cells * ed)


def speed_for(name: str, precision: str, rows: Optional[list[dict]] = None) -> Optional[Speed]:
    """The step-time model of device ``name`` (a table device name, a part of one such as 'H100', or
    'cpu (N threads)') for ``precision``; None when the table has no row to go on."""
    rows = load_rows() if rows is None else rows
    cpu = name.lower().startswith("cpu")
    devices = list(dict.fromkeys(r["device"] for r in rows if r["device"].lower().startswith("cpu") == cpu))
    if not devices:
        return None
    notes, scale = [], 1.0
    match = [d for d in devices if d == name] or [d for d in devices if name.lower() in d.lower()]
    if match:
        device = match[0]
    elif cpu:
        mine = _threads(name) or 1
        device = min(devices, key=lambda d: abs((_threads(d) or 1) - mine))
        scale = (_threads(device) or 1) / mine
        notes.append(f"no rows for {name}: the rows of {device}, scaled by its threads / these ({scale:.2f}x time)")
    else:
        device = Counter(r["device"] for r in rows if r["device"] in devices).most_common(1)[0][0]
        notes.append(f"no rows for {name}: the rows of {device}, unscaled")
    mine = [r for r in rows if r["device"] == device]
    same = [r for r in mine if r["precision"] == precision]
    if not same:
        notes.append(f"rows measured in {mine[0]['precision']}, the grid trains in {precision}: not scaled")
    groups: dict = defaultdict(dict)
    for r in same or mine:
        groups[(r["model"], r["image_size"], r["batch"])][r["cells"]] = r["images_per_s"]
    return Speed(device if match else name, dict(groups), cpu, scale, notes)


# --------------------------------------------------------------------------- planning a grid

@dataclass
class Cell:
    spec: object                  # config.RunSpec
    state: str                    # done, failed, interrupted, pending
    work: list[Work]
    note: str = ""                # why it has no work: unreachable, or a method without a plan

    @property
    def unreachable(self) -> bool:
        return self.note.startswith("unreachable")


def plan_cells(specs, states: list[str]) -> list[Cell]:
    """Each cell's work (bench/plan.py); an unreachable target costs nothing (its record is written
    without training)."""

    cells = []
    for spec, state in zip(specs, states):
        mod = registry.get(spec.method.name)
        plan = getattr(mod, "plan", None)
        if plan is None:
            cells.append(Cell(spec, state, [], f"no plan: method {spec.method.name!r} declares none, not estimated"))
            continue
        try:      # a plan reads what its run reads: the declared sections only (bench/declared.py)
            cells.append(Cell(spec, state, plan(Guarded(spec.config, declared_sections(mod),
                                                        f"the plan of method {mod.NAME!r}"))))
        except UnreachableSparsity as e:
            cells.append(Cell(spec, state, [], f"unreachable ({e.reason}): recorded without training"))
    return cells


def distinct_work(cells: list[Cell]) -> list[tuple[Cell, Work, int]]:
    """(first cell, work, cells using it): every shared artifact once, every other work once per cell."""
    users = Counter(w.shared for c in cells for w in c.work if w.shared)
    seen, out = set(), []
    for c in cells:
        for w in c.work:
            if w.shared is None:
                out.append((c, w, 1))
            elif w.shared not in seen:
                seen.add(w.shared)
                out.append((c, w, users[w.shared]))
    return out


@dataclass
class Total:
    device: str
    cells: int                  # concurrent cells per device
    train_h: float              # cell-hours: the sum of every work's seconds at that concurrency
    eval_h: float

    @property
    def hours(self) -> float:
        return self.train_h + self.eval_h

    @property
    def wall_h(self) -> float:
        """Wall-clock on one device with ``cells`` cells side by side (perfectly packed)."""
        return self.hours / self.cells


def total(cells: list[Cell], speed: Speed, concurrent: int = 1) -> Total:
    train = ev = 0.0
    for c, w, _ in distinct_work(cells):
        t, e = speed.seconds(w, concurrent, c.spec.config.runtime.eval_batch_size)
        train, ev = train + t, ev + e
    return Total(speed.name, concurrent, train / 3600, ev / 3600)


# --------------------------------------------------------------------------- the preview

def _n(x: float) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if x >= div:
            return f"{x / div:.3g}{unit}"
    return f"{x:.0f}"


def _h(hours: float) -> str:
    return f"{hours:,.0f}" if hours >= 100 else f"{hours:.1f}" if hours >= 10 else f"{hours:.2f}"


def hours_text(hours: float, unit: str = "") -> str:
    """'122 GPU-hours', '1.71 GPU-hours', '4 GPU-minutes' (under 0.1 h in minutes)."""
    tag = f"{unit}-" if unit else ""
    if hours < 0.1:
        return f"{hours * 60:.1f} {tag}minutes"
    return f"{_h(hours)} {tag}hours"


# --------------------------------------------------------------------------- by method, and corrections

CORRECTIONS = Path(__file__).with_name("estimate_corrections.csv")
CORRECTION_COLUMNS = ("device", "method", "ratio", "runs", "source")


def load_corrections(path: Path = CORRECTIONS) -> list[dict]:
    """Measured / estimated cost per (device, method), from committed records (``estimate --records DIR
    --save-corrections``); empty when there is no file."""
    if not path.exists():
        return []
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r.update(ratio=float(r["ratio"]), runs=int(r["runs"]))
    return rows


def corrections_for(device: str, rows: Optional[list[dict]] = None) -> dict[str, dict]:
    """{method: row} of the corrections measured on ``device`` (a part of the name matches, as in speed_for)."""
    rows = load_corrections() if rows is None else rows
    exact = [r for r in rows if r["device"] == device]
    mine = exact or [r for r in rows if device.lower() in r["device"].lower() or r["device"].lower() in device.lower()]
    return {r["method"]: r for r in mine}


def _method_of(label: str, cells: list[Cell]) -> str:
    """The registry name behind a grid label (corrections are per method, labels vary)."""
    for c in cells:
        if c.spec.method.display == label:
            return c.spec.method.name
    return label


def by_method(cells: list[Cell], speed: Speed) -> list[tuple[str, float, str]]:
    """(label, hours, what dominates) per grid label, each cell's own work (training + evaluation) and the
    artifacts only its cells use (an iterative method's rounds); an artifact several labels share (dense
    models, teachers, fine-tunes) in a row of its kind, counted once; by hours."""
    hours: dict[str, float] = defaultdict(float)
    top: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    users: dict = defaultdict(set)
    for c in cells:
        for w in c.work:
            if w.shared:
                users[w.shared].add(c.spec.method.display)
    for c, w, _ in distinct_work(cells):
        h = sum(speed.seconds(w, 1, c.spec.config.runtime.eval_batch_size)) / 3600
        label = c.spec.method.display
        if w.shared and len(users[w.shared]) > 1:       # an artifact of one label is that label's cost
            label = f"(shared {w.shared[0]}, {len(users[w.shared])} labels)"
        hours[label] += h
        per_cell = (f"{w.epochs} epochs" + (" (x2 passes)" if w.passes >= 2 else "")) if w.epochs else "forward"
        key = f"{_label(w)}" + ("" if w.shared else f", {per_cell} per cell")
        top[label][key] += h
    out = []
    for label, h in sorted(hours.items(), key=lambda kv: -kv[1]):
        main, mh = max(top[label].items(), key=lambda kv: kv[1])
        out.append((label, h, f"{main}: {100 * mh / h:.0f}%" if h else main))
    return out



def _label(w: Work) -> str:
    return w.shared[0] if w.shared else re.sub(r"\d+", "NN", w.phase)


def work_table(cells: list[Cell], speed: Optional[Speed]) -> list[str]:
    """One line per (phase or artifact kind, network): trainings, model-epochs, images, hours."""
    rows: dict = {}
    for c, w, users in distinct_work(cells):
        r = rows.setdefault((_label(w), w.arch, w.shared is not None), [0, 0, 0, 0.0, 0, set()])
        r[0] += 1
        r[1] += w.epochs
        r[2] += w.images
        if speed is not None:
            r[3] += sum(speed.seconds(w, 1, c.spec.config.runtime.eval_batch_size)) / 3600
        r[4] += users
        r[5].add(c.spec.method.display if w.shared is None else w.shared[0])
    head = f"  {'phase or artifact':22s} {'network':13s} {'count':>6s} {'epochs':>8s} {'images':>8s} " + \
           (f"{'hours':>8s}  " if speed else "") + "shared by / methods"
    lines = [head]
    for (label, arch, shared), (n, ep, im, h, users, who) in sorted(rows.items(), key=lambda kv: -kv[1][3]):
        by = f"{users} cells" if shared else ", ".join(sorted(who))
        lines.append(f"  {label + (' (shared)' if shared else ''):22s} {arch:13s} {n:6d} {ep:8d} {_n(im):>8s} "
                     + (f"{h:8.2f}  " if speed else "") + (by if len(by) < 60 else by[:57] + "..."))
    by_arch: dict = defaultdict(lambda: [0, 0])
    for _, w, _ in distinct_work(cells):
        by_arch[w.arch][0] += w.epochs
        by_arch[w.arch][1] += w.images
    lines.append("  by network: " + "; ".join(f"{a} {ep:,} model-epochs, {_n(im)} images"
                                              for a, (ep, im) in sorted(by_arch.items())))
    return lines


def _log_sources(speed: Speed, log: Callable[[str], None]) -> None:
    """The notes of an estimate's speed and the throughput row behind each (arch, size, batch) it priced."""
    for note in speed.notes:
        log(f"  note: {note}")
    for (arch, size, batch), how in sorted(speed.used.items()):
        log(f"  {arch} {size}px batch {batch}: {how}")


def preview(cells: list[Cell], devices: list[str], precision: Callable[[str], str], workers: Optional[int],
            log: Callable[[str], None] = print, limit_here: Optional[str] = None) -> dict[str, Total]:
    """Print what the cells still to run will cost: first the totals (and, with ``limit_here`` (the config
    name), whether `run` would refuse the grid on this CPU), then the methods by hours with what dominates
    each, then the work by phase and the notes. Where committed records measured a method on the device,
    its hours are corrected by measured / estimated and the band is stated. Returns the totals."""
    todo = [c for c in cells if c.state != "done"]
    speeds = {d: speed_for(d, precision(d)) for d in devices}
    log(f"cost preview: {len(todo)} of {len(cells)} cells to run (each shared artifact counted once; artifacts "
        "already in the results cache are not subtracted)")
    totals: dict[str, Total] = {}
    methods: dict[str, list] = {}
    for d, speed in speeds.items():
        if speed is None:
            log(f"  on {d}: no row in {THROUGHPUT.name} to go on (python -m bench speed adds some)")
            continue
        t = totals[d] = total(todo, speed, 1)
        unit = "CPU" if speed.cpu else "GPU"
        rows = by_method(todo, speed)
        corr = corrections_for(speed.name)
        corrected = sum(h * corr.get(_method_of(m, todo), {}).get("ratio", 1.0) for m, h, _ in rows)
        methods[d] = rows
        band = ""
        if corr:
            ratios = sorted(r["ratio"] for r in corr.values())
            src = sorted({r["source"] for r in corr.values()})
            band = (f"; corrected by measured/estimated per method ({ratios[0]:.2f}-{ratios[-1]:.2f} on "
                    f"{', '.join(src)}): {hours_text(corrected, unit)}")
        log(f"  on {speed.name}: {hours_text(t.hours, unit)} estimated, one cell per device ({hours_text(t.train_h)} "
            f"training, {hours_text(t.eval_h)} evaluation){band}")
        if workers and workers > 1:
            tk = total(todo, speed, workers)
            log(f"    with {workers} cells per device (--workers {workers}): {hours_text(tk.wall_h)} wall-clock per "
                f"device")
        if limit_here and speed.cpu and t.hours > CPU_HOURS_LIMIT:
            log(f"  refused on this CPU: more than {CPU_HOURS_LIMIT:g} CPU-hours; a GPU grid (python -m bench run "
                f"{limit_here} --allow-cpu starts it anyway)")
    first = next(((d, s) for d, s in speeds.items() if s is not None), None)
    if first is not None:
        d, speed = first
        rows = methods[d]
        whole = sum(h for _, h, _ in rows) or 1.0
        corr = corrections_for(speed.name)
        log(f"by method on {speed.name} (hours, share of the grid, what dominates it):")
        for label, h, what in rows:
            c = corr.get(_method_of(label, todo))
            fix = f"  (measured/estimated {c['ratio']:.2f}, {c['runs']} runs)" if c else ""
            log(f"  {label:24s} {hours_text(h):>14s} {100 * h / whole:5.1f}%  {what}{fix}")
        if not corr:
            log(f"  (no committed records measured these methods on {speed.name}: uncorrected; on the committed "
                f"H100 grid, measured/estimated ran 0.73x for the grid, per method as listed in "
                f"{CORRECTIONS.name} where measured)")
    log("by phase:")
    for line in work_table(todo, first[1] if first else None):
        log(line)
    skipped = [c for c in todo if c.note]
    groups: dict = defaultdict(list)
    for c in skipped:
        groups[(c.spec.method.display, c.spec.sparsity, c.note)].append(str(c.spec.seed))
    for (method, sparsity, note), seeds in groups.items():
        log(f"  no cost: {method} at sparsity {sparsity:g} (seed {', '.join(seeds)}): {note}")
    for speed in (s for s in speeds.values() if s is not None):
        _log_sources(speed, log)
    if totals:
        log(f"  included: teacher forwards and forward-only passes at {FORWARD:.2f} of a training step, CS-KD's partner "
            "(x1.33) and DLB's second view (x2); not included: start-up, checkpoints, compile, data loading")
    return totals


def devices_for(cfg, asked: Optional[str]) -> tuple[list[str], Optional[str]]:
    """The devices to estimate on, and a warning: ``asked``; else where the grid would run here (a
    GPU grid on a machine without one: the table's GPU); with ``runtime.device: auto`` on a machine
    without a GPU, this CPU and the table's GPU."""

    if asked:
        known = list(dict.fromkeys(r["device"] for r in load_rows()))
        if not asked.lower().startswith("cpu") and not any(asked == d or asked.lower() in d.lower() for d in known):
            raise CostError(f"--device {asked!r} is not a device of the throughput table (bench/throughput.csv); "
                            f"known: {', '.join(known)} (or a part of a name, e.g. H100; 'cpu (N threads)')")
        return [asked], None
    if device_type(cfg.runtime) == "cuda":
        return [this_device_name("cuda") if torch.cuda.is_available() else _reference_gpu()], None
    here = this_device_name("cpu")
    if cfg.runtime.device != "auto":
        return [here], None
    return [_reference_gpu(), here], (f"warning: runtime.device is auto and this machine has no GPU: the grid would "
                                      f"train on the CPU ({here}); estimated on {_reference_gpu()} and here")


def _reference_gpu() -> str:
    gpus = [r["device"] for r in load_rows() if not r["device"].lower().startswith("cpu")]
    return Counter(gpus).most_common(1)[0][0] if gpus else "cuda"


def precision_of(cfg) -> Callable[[str], str]:
    return lambda name: precision(cfg.runtime, "cpu" if name.lower().startswith("cpu") else "cuda")


def refuse_on_cpu(cfg, specs, states, config_name: str) -> None:
    """Raise ``CostError`` when the cells still to run would take this machine's CPU more than
    CPU_HOURS_LIMIT hours (a paper grid): name the estimate and the way round it."""
    here = this_device_name("cpu")
    speed = speed_for(here, precision_of(cfg)(here))
    if speed is None:
        return
    cells = plan_cells(specs, states)
    todo = [c for c in cells if c.state != "done"]
    hours = total(todo, speed).hours
    if hours <= CPU_HOURS_LIMIT:
        return
    gpu = speed_for(_reference_gpu(), precision_of(cfg)("cuda"))
    on_gpu = f", about {total(todo, gpu).hours:,.1f} GPU-hours on {gpu.name}" if gpu else ""
    raise CostError(f"refusing to train this grid on the CPU: its {len(todo)} cells to run need about {hours:,.0f} "
                    f"CPU-hours on {here}{on_gpu} (python -m bench estimate {config_name}); run it on a GPU, "
                    f"or pass --allow-cpu to start anyway (make: RUN_ARGS=--allow-cpu)")


# --------------------------------------------------------------------------- a finished grid

def cells_from_records(results_dir: Path) -> list[Cell]:
    """The cells of the ok records in ``results_dir``, each planned from its record's own config.
    Records made before targets had a measure (no ``sparsity_measure``) targeted the method's own
    set ("prunable"); before ``colt``/``egp.exact_final_round`` existed the chains ran the official
    full rounds (false)."""
    specs = []
    for rec in load_runs(results_dir, status="ok"):
        d = upgrade(rec["config"])
        if "sparsity_measure" not in rec:
            d["prune"] = {**d.get("prune", {}), "measure": "prunable"}
        for section in ("colt", "egp"):
            if section in d and "exact_final_round" not in d[section]:
                d[section] = {**d[section], "exact_final_round": False}
        specs.append(RunSpec(from_dict(Config, d), MethodEntry(rec["method_name"], rec["method"]), rec["run_id"]))
    return plan_cells(specs, ["pending"] * len(specs))


def check_records(results_dir: Path, workers: int, asked: Optional[str], log: Callable[[str], None] = print,
                  save: Optional[Path] = None) -> dict:
    """The estimate of the grid the ok records of ``results_dir`` ran, beside what they measured (the
    latency table's grid total: phase seconds, evaluation excluded, each shared artifact once)."""
    runs = load_runs(results_dir, status="ok")
    if not runs:
        raise FileNotFoundError(f"no ok run records under {results_dir}/runs; give --records a results folder")
    measured = max(grid_totals(runs), key=lambda t: t.runs)
    cells = cells_from_records(results_dir)
    speed = speed_for(asked or measured.device, runs[0]["precision"])
    if speed is None:
        raise FileNotFoundError(f"no throughput row for {asked or measured.device} in {THROUGHPUT}")
    est = total(cells, speed, workers)
    ratio = est.train_h * 60 / measured.minutes
    per_method = method_ratios(runs, cells, speed)
    log(f"{len(cells)} ok records in {results_dir}, measured on {measured.device}: {measured.minutes:.2f} cell-minutes "
        f"(phase seconds without evaluation, each of {measured.artifacts} artifacts once)")
    log(f"estimate with {workers} cell(s) per device on {speed.name}: {est.train_h * 60:.2f} cell-minutes training "
        f"(+ {est.eval_h * 60:.2f} evaluation): {ratio:.2f}x the measured total")
    log("per method (measured / estimated minutes per run, teacher and evaluation left out):")
    for m, (r, n) in sorted(per_method.items(), key=lambda kv: -kv[1][0]):
        log(f"  {m:18s} {r:5.2f}  ({n} runs)")
    _log_sources(speed, log)
    if save:
        rows = [r for r in load_corrections(save) if r["device"] != measured.device]
        rows += [{"device": measured.device, "method": m, "ratio": f"{r:.4f}", "runs": n, "source": str(results_dir)}
                 for m, (r, n) in sorted(per_method.items())]
        text = ",".join(CORRECTION_COLUMNS) + "\n" + "".join(
            ",".join(str(r[c]) for c in CORRECTION_COLUMNS) + "\n" for r in rows)
        atomic_write_bytes(Path(save), text.encode())
        log(f"wrote {save} ({len(per_method)} methods on {measured.device})")
    return {"measured_min": measured.minutes, "estimate_min": est.train_h * 60, "ratio": ratio,
            "per_method": per_method}


def method_ratios(runs: list[dict], cells: list[Cell], speed: Speed) -> dict[str, tuple[float, int]]:
    """{method: (measured / estimated, runs)}: each run's minutes (the latency table's per run: from
    initialisation, cached phases at what they cost, no teacher, no evaluation) over its cell's planned
    work without the teacher's training, summed over the method's ok runs on the speed's device."""
    by_id = {c.spec.run_id: c for c in cells}
    sums: dict[str, list] = defaultdict(lambda: [0.0, 0.0, 0])
    for r in runs:
        c = by_id.get(r.get("run_id"))
        if c is None or record_device(r) != speed.name or not c.work:
            continue
        planned = sum(speed.seconds(w, 1, c.spec.config.runtime.eval_batch_size)[0] for w in c.work
                      if w.phase != "teacher") / 60
        measured = run_time(r).per_run
        if planned > 0 and measured > 0:
            acc = sums[r.get("method_name") or r["method"]]
            acc[0], acc[1], acc[2] = acc[0] + measured, acc[1] + planned, acc[2] + 1
    return {m: (a / b, n) for m, (a, b, n) in sums.items() if b > 0}


# --------------------------------------------------------------------------- CLI

def cmd_estimate(args) -> int:
    if args.records:
        check_records(args.records, args.workers or 1, args.device,
                      save=CORRECTIONS if args.save_corrections else None)
        return 0
    if args.config is None:
        raise ConfigError("give a config (a YAML file or a preset name), or --records DIR")
    cfg = load_config(args.config, args.overrides)
    specs = expand_grid(cfg, device_type(cfg.runtime))
    cells = plan_cells(specs, [status_of(args.results, s)[0] for s in specs])
    devices, warning = devices_for(cfg, args.device)
    if warning:
        print(warning)
    preview(cells, devices, precision_of(cfg), args.workers, limit_here=str(args.config))
    for line in size_notes(specs):
        print(line)
    return 0


def size_notes(specs) -> list[str]:
    """One line per dataset priced at its official size (no ``train_limit``): the estimate reads no
    data, so a smaller local copy (../shared/data's CIFAR-100 slice: 1,117 images) costs less than shown."""
    out = {}
    for s in specs:
        d = s.config.dataset
        if d.name != "synthetic" and d.train_limit is None:
            sz = split(d)
            out[d.name] = (f"  sizes assumed for {d.name}: {sz.train:,} train / {sz.test:,} test images, the official "
                           f"split (the estimate reads no data: a smaller local copy costs proportionally less; "
                           f"--set dataset.train_limit=N prices N images)")
    return list(out.values())


def register(sub) -> None:
    p = sub.add_parser("estimate", help="what a grid will train and cost (hours on a device), without data")
    p.add_argument("config", nargs="?", help="a YAML file or a preset name")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, as in run (repeatable)")
    p.add_argument("--results", type=Path, default=Path("results"), help="cells recorded there count as done")
    p.add_argument("--device", metavar="NAME", help="estimate on this device (a name in bench/throughput.csv, a part "
                                                   "of one such as H100, or 'cpu (N threads)'); default: where it would run")
    p.add_argument("--workers", type=int, metavar="K", help="also the wall-clock with K cells side by side per device")
    p.add_argument("--records", type=Path, metavar="DIR",
                   help="instead: estimate the grid the ok records of DIR ran and compare with what they measured")
    p.add_argument("--save-corrections", action="store_true",
                   help=f"with --records: store the per-method measured/estimated ratios in bench/{CORRECTIONS.name}, "
                        "which every later estimate on that device applies")
    p.set_defaults(func=cmd_estimate)
