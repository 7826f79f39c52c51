"""Device policy, in one place: where a run executes, in which precision and memory format, whether
it is compiled. Torch-free at import (``bench.config`` uses the identity part; torch is imported by
the functions that need it), so a config loads without it."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path


def device_type(runtime) -> str:
    """'cuda' or 'cpu': where ``runtime.device`` puts a run on this machine (auto: CUDA if present)."""
    if runtime.device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return "cuda" if runtime.device.startswith("cuda") else "cpu"


def precision(runtime, dev_type: str) -> str:
    """The effective training precision: 'bf16' (autocast) or 'fp32'."""
    return "bf16" if runtime.amp == "bf16" or (runtime.amp == "auto" and dev_type == "cuda") else "fp32"


def runtime_identity(runtime, dev_type: str) -> dict:
    """What of the runtime can change a result: device type, effective precision, determinism.
    (channels_last, compile, the evaluation batch and the device index change float rounding at most.)"""
    return {"device_type": dev_type, "precision": precision(runtime, dev_type),
            "deterministic": runtime.deterministic}


def resolve_device(runtime):
    import torch

    from .config import ConfigError

    if runtime.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(runtime.device)
    except RuntimeError:
        raise ConfigError(f"config key 'runtime.device' has value {runtime.device!r}; allowed: auto, cpu, "
                          "cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"config key 'runtime.device' is {runtime.device!r} but CUDA is not available on "
                              "this machine; use --set runtime.device=cpu (or auto)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"config key 'runtime.device' is {runtime.device!r} but this machine has "
                              f"{torch.cuda.device_count()} CUDA device(s); use cuda:0..cuda:{torch.cuda.device_count() - 1}")
    return dev


def use_amp(runtime, device) -> bool:
    return precision(runtime, device.type) == "bf16"


def use_channels_last(runtime) -> bool:
    return runtime.channels_last != "off"          # auto: on, on the CPU too (measured faster there)


def autocast(runtime, device, cache: bool = True):
    """bf16 autocast where the run's precision is bf16. ``cache=False`` inside a captured CUDA graph
    (PyTorch's graph recipe: no cast cached across the capture's boundary; the same casts)."""
    if use_amp(runtime, device):
        import torch

        return torch.autocast(device_type=device.type, dtype=torch.bfloat16, cache_enabled=cache)
    return contextlib.nullcontext()


def use_compile(runtime) -> bool:
    # auto = off on every device: compiling did not pay off on the one GPU measured (docs/performance.md)
    return runtime.compile == "on"


def compile_module(module):
    """``torch.compile(module)``, one static graph per input shape, train/eval mode and grad mode.

    The wrapper shares ``module``'s parameters and buffers (masks and checkpoints keep using
    ``module``); a new wrapper of a model of the same architecture reuses the graphs compiled so
    far in the process, and inductor's on-disk cache (``TORCHINDUCTOR_CACHE_DIR``; the runner puts
    it under the results folder) serves later processes."""
    import torch
    import torch._dynamo

    # Train, eval, no-grad, frozen-BN and tail-batch variants of student and teacher add up to more
    # graphs than the default limit of 8, past which dynamo silently falls back to eager.
    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
    return torch.compile(module, dynamic=False)


def persistent_compile_cache(folder: Path) -> None:
    """Keep inductor's compiled kernels in ``folder`` (unless ``TORCHINDUCTOR_CACHE_DIR`` is set
    already), so the later processes of a grid load them instead of compiling again. Call before
    the first compilation of the process."""
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(Path(folder).resolve()))


def compile_seconds() -> float:
    """Seconds this process has spent in torch.compile so far (dynamo's own clock: tracing, graph
    compilation, the lazily compiled backward). 0 if that internal counter is unavailable, in
    which case compile time stays inside the phases it happened in."""
    try:
        from torch._dynamo.utils import calculate_time_spent

        return float(calculate_time_spent().get("total_wall_time", 0.0))
    except Exception:  # noqa: BLE001 - an internal API; its absence must not stop training
        return 0.0
