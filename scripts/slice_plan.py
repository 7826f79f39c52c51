"""The plan of scripts/gpu-paper-slice.sh, computed before the device call from measured throughput.

    python scripts/slice_plan.py [--mode full|quick] [--budget 540] [--shell]

Prints the plan: every step with its expected seconds and time limit, and the slice's cells (method,
seed, epochs) with the second each is expected to finish, from a simulation of K workers pulling
cells in grid order on one GPU: a cell makes or waits for the artifacts it shares (the teacher, a
seed's dense model and fine-tunes), and K busy cells share the GPU as the measured 1/2/4-cell rows
say. ``--shell`` prints the step limits and the run's overrides as shell assignments for the script.

Every rate is a row of docs/performance.md (MEASURED; tests/test_slice_plan.py checks that the rows
hold these numbers) or a stated assumption (ASSUMED). The plan is an estimate: the script prints
planned and spent seconds side by side.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
PRESET = REPO / "bench" / "configs" / "cifar10-gpu-slice.yaml"

# docs/performance.md, "On one H100 (measured 2026-11-26)": ResNet-18, full CIFAR-10, batch 256, bf16.
MEASURED = {
    "cells_img_s": {1: 17115, 2: 34695, 4: 48082},     # cells-K rows: all K cells together
    "teacher_s": 20.0, "teacher_epochs": 3,            # pipeline row: ResNet-50 teacher, 3 epochs (eval included)
    "finetune_s": 6.5,                                  # pipeline row: 1 tgp fine-tune epoch (student + teacher forward)
    "eval_s": 2.9, "eval_epochs": 7,                    # pipeline row: evaluation over its 3 + 1 + 3 epochs
    "score_prune_s": 5.2,                               # pipeline row: tgp's gamma, scores and pruning
    # a process's first pruning-at-init scoring (cuDNN autotuning its new shapes): 45 s for DLB-EPSD
    # (docs/performance.md, "Estimating a grid": the H100 records)
    "pai_s": 45.0,
}
# Every cell's work is planned at this multiple of the measured rates: the committed H100 grid ran at
# 1.37x its estimate (docs/performance.md), and a plan that only just fits leaves nothing when it is wrong.
MARGIN = 1.25
# On the 2-core CPU (the same page): resnet_small, 2,048 images, batch 128; for MODE=quick.
MEASURED_CPU = {"cells_img_s": {1: 1156, 2: 1341}}
ASSUMED = {
    "setup_s": 20,          # run.sh: the submitit wheel and CIFAR-10 materialised (14 s of CPU here)
    "device_s": 5,          # nvidia-smi and one python import of torch
    "process_s": 15,        # a bench process: python, torch and CUDA start, CIFAR-10 onto the GPU
    "smoke_s": 90,          # the smoke grid (seeds [0], two runners) on the GPU beside the teacher
    "smoke_slowdown": 1.1,  # the teacher's epochs with the smoke grid beside it
    "cell_s": 2,            # a cell's own overhead: artifacts loaded, evaluation, record written
    "prune_s": 1,           # magnitude / random pruning of a ResNet-18
    "dlb_factor": 2,        # a DLB epoch forwards and backwards two batches per step
    "pack_s": 25,           # collect, tables, claims, figures, tarballs
    "step_profile_s": 30,   # two bounded profiles (40 steps each) in one process
    "speed_s": 50,          # the speed candidates (50 steps each) in one process
}
PROFILE_STEPS, SPEED_STEPS = 40, 50
SPEED_CANDIDATES = ["engine", "engine-graphs", "engine:b512", "engine-graphs:b512", "kd:b512", "kd-stream:b512",
                    "kd-fold:b512", "kd-graphs:b512", "kd-graphs-stream-fold:b512"]
QUICK = {   # MODE=quick: the same steps CPU-sized (the script passes these to every bench command)
    "set": ["runtime.device=cpu", "model.arch=resnet_small", "teacher.arch=resnet_small", "dataset.train_limit=600",
            "dataset.test_limit=300", "pretrain.epochs=1", "retrain.epochs=1", "tgp.finetune.epochs=1",
            "teacher.train.epochs=1", "pretrain.batch_size=128", "retrain.batch_size=128",
            "tgp.finetune.batch_size=128", "teacher.train.batch_size=128", "grid.seeds=[42,43]",
            "runtime.eval_batch_size=300"],
    # the smoke grid: the three methods never run on CUDA and one more, 256 images, one epoch each
    "smoke_methods": ["pskd-simple", "pskd-epsd", "cskd-epsd", "magnitude"],
    "smoke_set": ["runtime.device=cpu", "grid.sparsities=[0.9]", "dataset.synthetic.train_size=256",
                  "pretrain.epochs=1", "retrain.epochs=1", "teacher.train.epochs=1"],
    "speed_set": ["model.arch=resnet_small", "teacher.arch=resnet_small", "dataset.train_limit=512",
                  "dataset.test_limit=128", "retrain.batch_size=32", "tgp.finetune.batch_size=32"],
    "speed_only": [c.replace(":b512", ":b64") for c in SPEED_CANDIDATES], "profile_steps": 2, "speed_steps": 2,
    "workers": 2, "train_images": 600, "budget": 1200, "process_s": 30, "smoke_s": 200, "step_profile_s": 90,
    "speed_s": 150, "pack_s": 60, "setup_s": 0, "device_s": 10,
}
SMOKE_FIRST = ["pskd-simple", "pskd-epsd", "cskd-epsd"]      # never run on CUDA before this call


def concurrency(k: int, rates: dict[int, float]) -> float:
    """Total throughput of k busy cells over one cell's (measured K; linear between; flat beyond)."""
    ks = sorted(rates)
    k = min(k, ks[-1])
    if k in rates:
        return rates[k] / rates[1]
    lo = max(x for x in ks if x < k)
    hi = min(x for x in ks if x > k)
    return (rates[lo] + (rates[hi] - rates[lo]) * (k - lo) / (hi - lo)) / rates[1]


@dataclass
class Costs:
    """One cell alone on the device: seconds per epoch (training + evaluation) and fixed costs."""
    ce_epoch: float
    kd_epoch: float
    teacher_epoch: float
    score_prune: float
    pai: float = 3.0          # pruning at initialisation (meta-gradient scores), first shapes included

    @classmethod
    def gpu(cls) -> "Costs":
        m = MEASURED
        ev = m["eval_s"] / m["eval_epochs"]
        return cls(50000 / m["cells_img_s"][1] + ev, m["finetune_s"] + ev, m["teacher_s"] / m["teacher_epochs"],
                   m["score_prune_s"], m["pai_s"])

    @classmethod
    def cpu(cls, images: int) -> "Costs":
        ce = images / MEASURED_CPU["cells_img_s"][1]
        return cls(ce * 1.3, ce * 2.6, ce * 1.3, 1.0, 3.0)    # ASSUMED for quick mode: evaluation 30%, KD twice CE


def cells(preset: dict, c: Costs) -> list[tuple[str, int, list[tuple]]]:
    """(method label, seed, tasks) in grid order; a task is ("make", artifact, seconds) or ("work", seconds)."""
    e_p, e_f, e_r = preset["pretrain"]["epochs"], preset["tgp"]["finetune"]["epochs"], preset["retrain"]["epochs"]
    a = ASSUMED
    out = []
    for m in preset["grid"]["methods"]:
        for s in preset["grid"]["seeds"]:
            dense = ("make", f"dense-{s}", e_p * c.ce_epoch)
            kdft = ("make", f"kd-finetune-{s}", e_f * c.kd_epoch)
            ceft = ("make", f"ce-finetune-{s}", e_f * c.ce_epoch)
            teacher = ("make", "teacher", 0.0)              # made in step 2 (a cache hit here)
            tasks = {"dense": [dense],
                     "tgp-kd": [teacher, dense, kdft, ("work", c.score_prune + e_r * c.kd_epoch)],
                     "tgp": [teacher, dense, kdft, ("work", c.score_prune + e_r * c.ce_epoch)],
                     "magnitude": [dense, ("work", a["prune_s"] + e_r * c.ce_epoch)],
                     "magnitude-ft": [dense, ceft, ("work", a["prune_s"] + e_r * c.ce_epoch)],
                     "grad-ce": [dense, ceft, ("work", a["prune_s"] + e_r * c.ce_epoch)],
                     "random-layerwise": [dense, ("work", a["prune_s"] + e_r * c.ce_epoch)],
                     "dlb-epsd": [("work", c.pai + e_r * a["dlb_factor"] * c.ce_epoch)]}[m]
            matched = (preset.get("budget") or {}).get("basis") == "retrain-matched"
            label = m + ("-matched" if m.startswith(("dlb", "cskd", "pskd")) and matched else "")
            tasks = [(t[0], t[1], t[2] * MARGIN) if t[0] == "make" else (t[0], t[1] * MARGIN) for t in tasks]
            out.append((label, s, tasks + [("work", a["cell_s"])]))
    return out


def simulate(cell_list, workers: int, rates: dict[int, float], start_s: float, dt: float = 0.25) -> list[float]:
    """Seconds (from the grid's start) at which each cell is expected to end."""
    made: dict[str, str] = {}                 # artifact -> "making" | "done"
    ends = [None] * len(cell_list)
    state = [{"cell": None, "task": 0, "left": None, "wait_until": start_s} for _ in range(workers)]
    nxt, t = 0, 0.0
    while any(e is None for e in ends) and t < 10_000:
        busy = []
        for w in state:
            if t < w["wait_until"]:
                continue
            while True:                           # advance through what needs no time
                if w["cell"] is None:
                    if nxt >= len(cell_list):
                        break
                    w["cell"], w["task"], w["left"] = nxt, 0, None
                    nxt += 1
                tasks = cell_list[w["cell"]][2]
                if w["task"] == len(tasks):
                    ends[w["cell"]], w["cell"] = t, None
                    continue
                task = tasks[w["task"]]
                if task[0] == "make" and w["left"] is None:
                    if made.get(task[1]) == "done" or task[2] == 0:
                        w["task"] += 1
                        continue
                    if made.get(task[1]) == "making":
                        break                      # waits for the worker making it
                    made[task[1]] = "making"
                if w["left"] is None:
                    w["left"] = task[-1]
                busy.append(w)
                break
        speed = concurrency(len(busy), rates) / len(busy) if busy else 0
        for w in busy:
            w["left"] -= dt * speed
            if w["left"] <= 0:
                task = cell_list[w["cell"]][2][w["task"]]
                if task[0] == "make":
                    made[task[1]] = "done"
                w["task"], w["left"] = w["task"] + 1, None
        t += dt
    return ends


def plan(mode: str, budget: float | None = None, preset_path: Path = PRESET) -> dict:
    preset = yaml.safe_load(preset_path.read_text())
    quick = mode == "quick"
    a = {**ASSUMED, **({k: v for k, v in QUICK.items() if k in ASSUMED} if quick else {})}
    budget = budget or (QUICK["budget"] if quick else 540)
    if quick:
        for kv in QUICK["set"]:
            key, val = kv.split("=", 1)
            node = preset
            *path, last = key.split(".")
            for k in path:
                node = node.setdefault(k, {})
            node[last] = yaml.safe_load(val)
    workers = QUICK["workers"] if quick else max(MEASURED["cells_img_s"], key=lambda k: MEASURED["cells_img_s"][k])
    rates = MEASURED_CPU["cells_img_s"] if quick else MEASURED["cells_img_s"]
    costs = Costs.cpu(QUICK["train_images"]) if quick else Costs.gpu()
    teacher = preset["teacher"]["train"]["epochs"] * costs.teacher_epoch * a["smoke_slowdown"] + a["process_s"]
    steps = [("setup", "run.sh: wheels, CIFAR-10 materialised", a["setup_s"]),
             ("device", "1. GPU, torch, CUDA", a["device_s"]),
             ("smoke+teacher", "2. smoke grid (" + (f"{len(QUICK['smoke_methods'])} methods, CPU" if quick else
                                                   "every method, GPU") + ") beside the slice's teacher",
              max(teacher, a["smoke_s"])),
             ("profile", f"3. step profile: retraining, tgp-kd fine-tune ({QUICK['profile_steps'] if quick else PROFILE_STEPS} steps)",
              a["step_profile_s"]),
             ("speed", f"4. {len(SPEED_CANDIDATES)} speed candidates ({QUICK['speed_steps'] if quick else SPEED_STEPS} steps each)",
              a["speed_s"])]
    cl = cells(preset, costs)
    slice_start = sum(s for *_, s in steps)
    ends = simulate(cl, workers, rates, start_s=a["process_s"] + 5)
    slice_s = max(ends)
    steps.append(("slice", f"5. the slice: {len(cl)} cells, {workers} workers on one device", slice_s))
    steps.append(("pack", "6. collect, tables, claims, figures, tarballs", a["pack_s"]))
    total = sum(s for *_, s in steps)
    limits = {"smoke+teacher": round(steps[2][2] + 20), "profile": round(a["step_profile_s"] + 15),
              "speed": round(a["speed_s"] + 15)}
    # The slice's limit is what is left when it starts, less the packing: the script reads the clock.
    # Expected, and in the worst case (every earlier step ran to its limit).
    available = round(budget - slice_start - a["pack_s"])
    limits["slice"] = round(available - sum(limits[k] - s for k, _, s in steps if k in limits))
    fast = None
    if not quick:                      # the cifar10-fast recipe's epochs, for the preset's justification
        fp = yaml.safe_load((REPO / "bench" / "configs" / "cifar10-fast.yaml").read_text())
        alt = {**preset, "pretrain": fp["pretrain"], "retrain": fp["retrain"], "tgp": fp["tgp"]}
        fast = max(simulate(cells(alt, costs), workers, rates, start_s=a["process_s"] + 5))
    return {"mode": mode, "budget": budget, "workers": workers, "steps": steps, "total": total, "limits": limits,
            "cells": [(label, seed, end) for (label, seed, _), end in zip(cl, ends)], "slice_start": slice_start,
            "epochs": {"teacher": preset["teacher"]["train"]["epochs"], "pretrain": preset["pretrain"]["epochs"],
                       "finetune": preset["tgp"]["finetune"]["epochs"], "retrain": preset["retrain"]["epochs"]},
            "costs": costs, "fast_recipe_slice_s": fast, "fits": total <= budget, "slice_available": available}


def render(p: dict) -> str:
    c, e = p["costs"], p["epochs"]
    where = "the CPU (rows of the 2-core machine; rough)" if p["mode"] == "quick" else "one H100 (rows of 2026-11-26)"
    lines = [f"PLAN ({p['mode']} mode; rates measured on {where}, docs/performance.md; assumptions in "
             "scripts/slice_plan.py ASSUMED)",
             f"  one cell alone: CE epoch {c.ce_epoch:.2f} s, tgp fine-tune / KD epoch {c.kd_epoch:.2f} s, teacher "
             f"epoch {c.teacher_epoch:.2f} s (evaluation included); K cells: total throughput x"
             + ", x".join(f"{concurrency(k, MEASURED_CPU['cells_img_s'] if p['mode'] == 'quick' else MEASURED['cells_img_s']):.2f} ({k})"
                          for k in (1, 2, 3, 4)),
             f"  epochs: teacher {e['teacher']}, dense {e['pretrain']}, fine-tune {e['finetune']}, retrain {e['retrain']}; "
             f"{p['workers']} workers (--executor local) on one device",
             "  step                                   expected s   limit s"]
    for key, what, s in p["steps"]:
        lim = p["limits"].get(key, "")
        if key == "slice":
            lim = f"the rest: {p['slice_available']} expected, {lim} if every earlier step runs to its limit"
        lines.append(f"  {what[:60]:60s} {s:7.0f}   {lim!s:>7}")
    lines.append(f"  total {p['total']:.0f} s of a {p['budget']:.0f} s budget: "
                 + ("fits" if p["fits"] else "DOES NOT FIT"))
    if p["fast_recipe_slice_s"]:
        lines.append(f"  (the cifar10-fast recipe's epochs would need {p['fast_recipe_slice_s']:.0f} s for the slice "
                     f"instead of {p['steps'][5][2]:.0f} s)")
    lines.append("  cells in grid order, expected end (s after the slice starts):")
    lines += [f"    {label:18s} seed {seed}  {end:6.0f}" + (
        "" if end <= p["limits"]["slice"] else "  (past the worst-case limit)" if end <= p["slice_available"]
        else "  (past the expected limit)") for label, seed, end in p["cells"]]
    return "\n".join(lines)


def shell(p: dict) -> str:
    """The script's variables: step limits and expected seconds, workers, steps, the run's overrides."""
    q = p["mode"] == "quick"
    sets = " ".join(shlex.quote(f"--set={kv}") for kv in QUICK["set"]) if q else ""
    expected = {k: round(s) for k, _, s in p["steps"]}
    smoke = QUICK["smoke_methods"] if q else SMOKE_FIRST + [
        m for m in yaml.safe_load((REPO / "bench" / "configs" / "smoke.yaml").read_text())["grid"]["methods"]
        if m not in SMOKE_FIRST]
    arrays = {"PLAN_SMOKE_SET": QUICK["smoke_set"] if q else ["runtime.device=cuda"],
              "PLAN_SPEED_SET": ["runtime.device=cpu", *QUICK["speed_set"]] if q else []}
    lines = [f"{k}=(" + " ".join(shlex.quote(f"--set={kv}") for kv in v) + ")" for k, v in arrays.items()]
    lines += [f"PLAN_SMOKE_ORDER={shlex.quote(json.dumps(smoke))}",
              f"PLAN_SMOKE_REVERSED={shlex.quote(json.dumps(smoke[::-1]))}",
              f"PLAN_THREADS={1 if q else 0}"]
    return "\n".join(lines + [f"PLAN_BUDGET={round(p['budget'])}", f"PLAN_LIMIT_SMOKE={p['limits']['smoke+teacher']}",
                      f"PLAN_LIMIT_PROFILE={p['limits']['profile']}", f"PLAN_LIMIT_SPEED={p['limits']['speed']}",
                      f"PLAN_PACK={expected['pack']}", f"PLAN_WORKERS={p['workers']}", f"PLAN_TOTAL={round(p['total'])}",
                      f"PLAN_T_DEVICE={expected['device']}", f"PLAN_T_SMOKE={expected['smoke+teacher']}",
                      f"PLAN_T_PROFILE={expected['profile']}", f"PLAN_T_SPEED={expected['speed']}",
                      f"PLAN_T_SLICE={expected['slice']}",
                      f"PLAN_PROFILE_STEPS={QUICK['profile_steps'] if q else PROFILE_STEPS}",
                      f"PLAN_SPEED_STEPS={QUICK['speed_steps'] if q else SPEED_STEPS}",
                      f"PLAN_SPEED_ONLY={','.join(QUICK['speed_only'] if q else SPEED_CANDIDATES)}",
                      f"PLAN_SET=({sets})"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", choices=("full", "quick"), default="full")
    ap.add_argument("--budget", type=float, default=None)
    ap.add_argument("--shell", action="store_true")
    args = ap.parse_args(argv)
    p = plan(args.mode, args.budget)
    print(shell(p) if args.shell else render(p))
    return 0 if p["fits"] else 1


if __name__ == "__main__":
    sys.exit(main())
