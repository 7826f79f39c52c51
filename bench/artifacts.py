"""Cached artifacts on disk: ``<root>/<kind>/<key>.pt`` and a JSON sidecar with its sha256, written last.

A file that fails to load, or whose hash differs from its sidecar's, is an error, never silently
retrained over. ``Artifacts.fetch`` gets an artifact or the right to make it: when another runner is
making it (its lock is live), it waits for that runner's file (bench/leases.py).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from .leases import Lease, wait_for
from .store import atomic_write_bytes, atomic_write_json, file_digest


class CorruptCheckpointError(RuntimeError):
    """A cached checkpoint that cannot be trusted."""


class Artifacts:
    """``<root>/<kind>/<key>.pt`` plus ``<key>.json`` (metadata with the file's sha256)."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def paths(self, kind: str, key: str) -> tuple[Path, Path]:
        d = self.root / kind
        return d / f"{key}.pt", d / f"{key}.json"

    def load(self, kind: str, key: str) -> Optional[tuple[Any, dict]]:
        pt, meta_path = self.paths(kind, key)
        if not meta_path.exists():
            return None  # never completed (the sidecar is written last)
        fix = f"delete {pt} and {meta_path} to train it again"
        try:
            meta = json.loads(meta_path.read_text())
        except json.JSONDecodeError as e:
            raise CorruptCheckpointError(f"checkpoint metadata {meta_path} is not valid JSON ({e}); {fix}") from e
        if not pt.exists():
            raise CorruptCheckpointError(f"checkpoint {pt} is missing but its metadata exists; {fix}")
        digest = file_digest(pt)
        if digest != meta.get("sha256"):
            raise CorruptCheckpointError(f"checkpoint {pt} has sha256 {digest[:16]}..., its metadata says "
                                         f"{str(meta.get('sha256'))[:16]}...; the file changed or is corrupt; {fix}")
        try:
            payload = torch.load(pt, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - any unpickling failure means the file is unusable
            raise CorruptCheckpointError(f"checkpoint {pt} cannot be loaded ({type(e).__name__}: {e}); {fix}") from e
        return payload, meta

    def save(self, kind: str, key: str, payload: Any, meta: dict) -> dict:
        pt, meta_path = self.paths(kind, key)
        buf = io.BytesIO()
        torch.save(payload, buf)
        data = buf.getvalue()
        atomic_write_bytes(pt, data, fault="artifact-write")
        meta = dict(meta, sha256=hashlib.sha256(data).hexdigest(), path=str(pt),
                    created_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
        atomic_write_json(meta_path, meta)
        return meta

    def fetch(self, kind: str, key: str, heartbeat_s: float, stale_after_s: float,
              log: Callable[[str], None]) -> tuple[Optional[tuple[Any, dict]], Optional[Lease]]:
        """(the artifact if it exists or another runner made it meanwhile, the lock this runner holds to
        make it: None when there is an artifact, else release it once the artifact is saved)."""
        hit = self.load(kind, key)
        if hit is not None:
            return hit, None
        pt, meta_path = self.paths(kind, key)
        lock = Lease(pt.with_suffix(".lock"), f"{kind} artifact {key}", heartbeat_s, stale_after_s)
        acquired, hit = wait_for(lock, lambda: self.load(kind, key) if meta_path.exists() else None, log)
        if acquired:
            hit = self.load(kind, key)
        if hit is not None:
            lock.release()
            return hit, None
        return None, lock


def _to(obj, device):
    """``obj`` (nested dicts/lists/tuples of tensors) with every tensor moved to ``device``."""
    if torch.is_tensor(obj):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: _to(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to(v, device) for v in obj)
    return obj


def _to_cpu(obj):
    if torch.is_tensor(obj):
        return obj.detach().cpu().contiguous()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj
