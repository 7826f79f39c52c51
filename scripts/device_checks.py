"""Two reliability checks of the GPU code paths, run by scripts/gpu-check.sh on the device machine
(``python scripts/device_checks.py OUT_DIR [--device cuda]``; ``--device cpu`` tries it here).

1. Identity (issue 7): the same tiny grid run on the CPU and then on the GPU into one results
   folder. The GPU runner must skip nothing as done, reuse no CPU-trained checkpoint, and the
   latency table must list the two devices apart.
2. Stop and resume on the device (issue 11): a deterministic tgp-kd run stopped by SIGTERM at an
   exact step (a mid-epoch checkpoint), then resumed, ends with the same weights (sha256) as an
   uninterrupted run.

Prints one PASS/FAIL line per check and writes them to OUT_DIR/device-checks.txt; exit 1 on a FAIL.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bench.tiny import TINY  # noqa: E402


def bench(*args, env=None, timeout=300):
    e = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=str(REPO))
    e.pop("BENCH_FAULT", None)
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "bench", *map(str, args)], cwd=REPO, env=e,
                          capture_output=True, text=True, timeout=timeout)


def records(results: Path) -> list[dict]:
    return [json.loads(Path(p).read_text()) for p in glob.glob(str(results / "runs" / "*" / "*.json"))]


def identity(work: Path, device: str) -> tuple[bool, str]:
    cfg = {**TINY, "grid": {"methods": ["dense", "magnitude", "tgp"], "sparsities": [0.9], "seeds": [0]}}
    path = work / "identity.yaml"
    path.write_text(yaml.safe_dump(cfg))
    results = work / "identity"
    cpu = bench("run", path, "--results", results, "--data-dir", work, "--set", "runtime.device=cpu")
    gpu = bench("run", path, "--results", results, "--data-dir", work, "--set", f"runtime.device={device}")
    if cpu.returncode or gpu.returncode:
        return False, f"runs failed: cpu rc {cpu.returncode}, gpu rc {gpu.returncode}: {(cpu.stdout + gpu.stdout)[-1500:]}"
    recs = records(results)
    ids = [r["run_id"] for r in recs]
    skipped = "skip" in gpu.stdout.lower() and "0 skipped" not in gpu.stdout
    reused_cpu = [a for r in recs if r.get("device_type") != "cpu"
                  for a in r.get("artifacts", []) if a.get("device") == "cpu"]
    bench("table", "--results", results, "--dataset", "synthetic")
    latency = (results / "tables" / "synthetic_latency.csv").read_text()    # `table` writes files, prints paths
    devices = sorted({str(r.get("device_name")) for r in recs})
    both = all(d in latency for d in devices)
    ok = len(recs) == 6 and len(set(ids)) == 6 and not skipped and not reused_cpu and len(devices) == 2 and both
    detail = (f"{len(recs)} records, {len(set(ids))} distinct run ids, devices {devices}, GPU runner skipped "
              f"nothing: {not skipped}, CPU checkpoints reused by GPU runs: {len(reused_cpu)}, latency table "
              f"lists both devices: {both}")
    return ok, detail


def stop_resume(work: Path, device: str) -> tuple[bool, str]:
    runtime = {"device": device, "deterministic": True, "checkpoint_every_s": 0, "heartbeat_s": 0.2,
               "stale_after_s": 3, "compile": "off"}
    cfg = {**TINY, "runtime": runtime, "retrain": {**TINY["retrain"], "epochs": 3},
           "grid": {"methods": ["tgp-kd"], "sparsities": [0.9], "seeds": [0]}}
    path = work / "resume.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = {"CUBLAS_WORKSPACE_CONFIG": ":4096:8"}
    clean = bench("run", path, "--results", work / "clean", "--data-dir", work, env=env)
    first = bench("run", path, "--results", work / "broken", "--data-dir", work, env={**env, "BENCH_FAULT": "step:5:term"})
    again = bench("run", path, "--results", work / "broken", "--data-dir", work, env=env)
    if clean.returncode or again.returncode:
        return False, f"rc clean {clean.returncode}, resumed {again.returncode}: {(clean.stdout + again.stdout)[-1500:]}"
    (a,), (b,) = records(work / "clean"), records(work / "broken")
    same = a["final_weights_sha256"] == b["final_weights_sha256"]
    ok = first.returncode != 0 and "resuming at epoch" in again.stdout and same and b.get("previous_interruptions")
    return bool(ok), (f"stopped rc {first.returncode}, resumed ({'resuming at epoch' in again.stdout}), final weights "
                      f"equal to the uninterrupted run's: {same} (top1 {a['top1_final']:.2f} vs {b['top1_final']:.2f}), "
                      f"device {b.get('device_name')}")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--work", type=Path, default=Path("/tmp/device-checks"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    args.work.mkdir(parents=True, exist_ok=True)
    failed = False
    for name, check in (("identity CPU then GPU in one folder", identity), ("SIGTERM at a step, resume", stop_resume)):
        try:
            work = args.work / name.split()[0]
            work.mkdir(exist_ok=True)
            ok, detail = check(work, args.device)
        except Exception as exc:  # a crash of one check still lets the other run
            ok, detail = False, f"{type(exc).__name__}: {exc}"
        line = f"{'PASS' if ok else 'FAIL'} {name}: {detail}"
        print(line, flush=True)
        with open(args.out / "device-checks.txt", "a") as f:
            f.write(line + "\n")
        failed |= not ok
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
