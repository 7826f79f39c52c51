"""Where and with what a result was made: git commit, device name, library versions, host."""
from __future__ import annotations

import functools
import hashlib
import os
import platform
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

import torch

from . import registry
from .config import HARNESS_VERSION
from .leases import job_id

REPO_ROOT = Path(__file__).resolve().parent.parent


# The code whose change can change a result: the two packages (sources and shipped presets) and
# the project file. The fingerprint and the dirty flag both look at exactly these.
CODE_PATHS = ("bench", "baselines", "pyproject.toml")
_CODE_SUFFIXES = (".py", ".yaml")


def code_files(root: Path = REPO_ROOT) -> list[Path]:
    """The files ``code_fingerprint`` hashes, sorted by their path relative to ``root``."""
    files = []
    for name in CODE_PATHS:
        p = root / name
        if p.is_file():
            files.append(p)
        elif p.is_dir():
            files += [f for f in p.rglob("*") if f.is_file() and f.suffix in _CODE_SUFFIXES
                      and "__pycache__" not in f.parts]
    return sorted(files, key=lambda f: f.relative_to(root).as_posix())


def code_fingerprint(root: Path = REPO_ROOT) -> str:
    """sha256 (16 hex digits) over the relative path and the bytes of every file of ``code_files``: the
    same for any copy of the same code (a clone, a copied tree without .git, an installed checkout),
    different as soon as one source file or shipped preset differs."""
    h = hashlib.sha256()
    for f in code_files(root):
        data = f.read_bytes()
        h.update(f"{f.relative_to(root).as_posix()}\0{len(data)}\0".encode())
        h.update(data)
    return h.hexdigest()[:16]


@functools.lru_cache(maxsize=1)
def code_state() -> dict:
    """The code that runs, computed once per process (at its start): harness version, code fingerprint,
    git commit and whether the code differs from that commit."""
    commit, dirty = git_state()
    return {"harness_version": HARNESS_VERSION, "code_fingerprint": code_fingerprint(),
            "git_commit": commit, "git_dirty": dirty}


@functools.lru_cache(maxsize=1)
def git_state() -> tuple[str | None, bool | None]:
    """(commit, dirty) of the checkout the code runs from; (None, None) outside a git checkout. Dirty:
    a file of the code (``CODE_PATHS``) differs from the commit, modified, deleted or untracked (an
    ignored file, like a cache, does not count; nor does anything outside the code, like results)."""
    try:
        top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=REPO_ROOT, capture_output=True,
                             text=True, check=True).stdout.strip()
        if Path(top).resolve() != REPO_ROOT.resolve():
            return None, None          # the code sits inside another repository: its state says nothing here
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=all", "--", *CODE_PATHS],
                                    cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout.strip())
        return commit, dirty
    except (OSError, subprocess.CalledProcessError):
        return None, None


def device_name(device: torch.device) -> str:
    """'cpu', or the GPU's model name (e.g. 'NVIDIA H100 80GB HBM3'): what latency rows are keyed by."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


# The /proc/cpuinfo flags of the instruction-set extensions that CPU kernels dispatch on: two processors
# that differ in these can round a float result differently (docs/reliability.md, "Bit for bit").
_ISA_PREFIXES = ("sse4", "avx", "fma", "f16c", "amx", "vnni")


@functools.lru_cache(maxsize=1)
def processor() -> dict:
    """The CPU: its model name and the instruction-set extensions its kernels may use (Linux; elsewhere
    what ``platform`` says), and the kernel level torch dispatches to (``get_cpu_capability``)."""
    model, flags = platform.processor() or platform.machine(), []
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "model name":
                model = value.strip()
            elif key == "flags" and not flags:
                flags = sorted(f for f in value.split() if f.startswith(_ISA_PREFIXES))
    except OSError:
        pass
    return {"model": model, "isa": flags, "torch_capability": torch.backends.cpu.get_cpu_capability()}


def numerics(device: torch.device) -> dict:
    """Every setting of this process that can change float results: thread counts (a reduction splits
    differently over another count), the processor, math precision and determinism switches. A run
    repeated with the same values, on the same code and data, is bit-identical on the CPU (a test)."""
    out = {"threads": torch.get_num_threads(), "interop_threads": torch.get_num_interop_threads(),
           "processor": processor(), "float32_matmul_precision": torch.get_float32_matmul_precision(),
           "mkldnn": bool(torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled),
           "deterministic": torch.are_deterministic_algorithms_enabled()}
    if device.type == "cuda":
        out.update(cudnn_benchmark=torch.backends.cudnn.benchmark,
                   cudnn_allow_tf32=torch.backends.cudnn.allow_tf32,
                   cuda_matmul_allow_tf32=torch.backends.cuda.matmul.allow_tf32)
    return out


def provenance(device: torch.device) -> dict:
    cuda = device.type == "cuda"
    return {
        **code_state(),
        "python": platform.python_version(), "torch": torch.__version__,
        "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version() if cuda else None,
        "gpu_name": torch.cuda.get_device_name(device) if cuda else None,
        "gpu_count": torch.cuda.device_count() if cuda else 0,
        "hostname": socket.gethostname(), "job_id": job_id(), "platform": platform.platform(), "cpu_count": os.cpu_count(),
        "argv": sys.argv,
        # plug-in methods (--plugin FILE): which files, and what they held when this process loaded them
        **({"plugins": registry.plugins()} if registry.plugins() else {}),
    }


def code_versions(records) -> list[str]:
    """One line per distinct code that made ``records`` (code fingerprint, git commit and dirty flag,
    harness version) with how many records each, most first. Records made before the fingerprint
    existed are listed as such; their harness version is the one in their run identity."""
    counts: Counter = Counter()
    for r in records:
        p = r.get("provenance") or {}
        commit, dirty = p.get("git_commit"), p.get("git_dirty")
        git = "no git checkout" if not commit else f"git {commit[:7]}" + {True: " (dirty)", False: " (clean)"}.get(dirty, "")
        harness = p.get("harness_version") or (r.get("identity") or {}).get("harness")
        counts[(p.get("code_fingerprint") or "unknown (made before fingerprints)", git, harness)] += 1
    return [f"{n:6d} record{'s' if n != 1 else ' '}  code {fp}  {git}  harness {h}"
            for (fp, git, h), n in sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0])))]
