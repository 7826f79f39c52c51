"""Where and with what a result was made: git commit, device name, library versions, host."""
from __future__ import annotations

import functools
import os
import platform
import socket
import subprocess
import sys
from pathlib import Path

import torch

from .leases import job_id

REPO_ROOT = Path(__file__).resolve().parent.parent


@functools.lru_cache(maxsize=1)
def git_state() -> tuple[str | None, bool | None]:
    """(commit, dirty) of the checkout the code runs from; (None, None) outside a git checkout."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                                    capture_output=True, text=True, check=True).stdout.strip())
        return commit, dirty
    except (OSError, subprocess.CalledProcessError):
        return None, None


def device_name(device: torch.device) -> str:
    """'cpu', or the GPU's model name (e.g. 'NVIDIA H100 80GB HBM3'): what latency rows are keyed by."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def provenance(device: torch.device) -> dict:
    commit, dirty = git_state()
    cuda = device.type == "cuda"
    return {
        "git_commit": commit, "git_dirty": dirty,
        "python": platform.python_version(), "torch": torch.__version__,
        "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version() if cuda else None,
        "gpu_name": torch.cuda.get_device_name(device) if cuda else None,
        "gpu_count": torch.cuda.device_count() if cuda else 0,
        "hostname": socket.gethostname(), "job_id": job_id(), "platform": platform.platform(), "cpu_count": os.cpu_count(),
        "argv": sys.argv,
    }
