"""What a method can ask for while it runs: data, models, the engine, masks, cached artifacts.

Trained artifacts that later runs reuse (the dense model, teachers, the proposed method's
fine-tuned student and importance) are cached by a hash of everything that determines them,
data fingerprint included. A cached file carries its sha256 in a JSON sidecar written last; a
file that fails to load or whose hash differs is an error, never silently retrained over.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.nn as nn

from . import engine
from .config import Config, RUNTIME_IDENTITY, TrainConfig, hash_identity, to_dict
from .engine import PhaseTimer, TrainResult
from .masks import Masks
from .models import build_model
from .store import atomic_write_bytes, atomic_write_json


class CorruptCheckpointError(RuntimeError):
    """A cached checkpoint that cannot be trusted."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class Artifacts:
    """``<root>/<kind>/<key>.pt`` plus ``<key>.json`` (metadata with the file's sha256)."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def paths(self, kind: str, key: str) -> tuple[Path, Path]:
        d = self.root / kind
        return d / f"{key}.pt", d / f"{key}.json"

    def load(self, kind: str, key: str) -> Optional[tuple[dict, dict]]:
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
        digest = sha256_file(pt)
        if digest != meta.get("sha256"):
            raise CorruptCheckpointError(f"checkpoint {pt} has sha256 {digest[:16]}..., its metadata says "
                                         f"{str(meta.get('sha256'))[:16]}...; the file changed or is corrupt; {fix}")
        try:
            payload = torch.load(pt, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - any unpickling failure means the file is unusable
            raise CorruptCheckpointError(f"checkpoint {pt} cannot be loaded ({type(e).__name__}: {e}); {fix}") from e
        return payload, meta

    def save(self, kind: str, key: str, payload: dict, meta: dict) -> dict:
        pt, meta_path = self.paths(kind, key)
        buf = io.BytesIO()
        torch.save(payload, buf)
        data = buf.getvalue()
        atomic_write_bytes(pt, data)
        meta = dict(meta, sha256=hashlib.sha256(data).hexdigest(), path=str(pt),
                    created_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
        atomic_write_json(meta_path, meta)
        return meta


@dataclass
class Outcome:
    """What a method hands back; the runner measures sparsity itself from ``model``."""
    model: nn.Module
    result: TrainResult
    masks: Optional[Masks] = None
    extra: dict = field(default_factory=dict)


def derived_seed(seed: int, purpose: str) -> int:
    """A seed for one purpose (a phase's data order, random scores, ...), fixed by the run seed.

    Never reuse the run seed itself for a second generator: model initialisation draws from the
    global generator seeded with it, so a generator with the same seed replays the very numbers the
    initial weights were made from (random pruning scores would then track the weights)."""
    return seed * 1_000_003 + zlib.crc32(purpose.encode())


class RunContext:
    def __init__(self, cfg: Config, data, device: torch.device, artifacts: Artifacts,
                 log: Callable[[str], None] = print):
        self.cfg, self.data, self.device, self.artifacts, self.log = cfg, data, device, artifacts, log
        self.timer = PhaseTimer(device)
        self.reused: dict[str, float] = {}      # phase -> seconds it cost when the artifact was made
        self.teacher_info: Optional[dict] = None
        self.extra: dict = {}

    # ------------------------------------------------------------------ building blocks
    def phase(self, name: str):
        return self.timer.phase(name)

    def seed_for(self, purpose: str) -> int:
        return derived_seed(self.cfg.seed, purpose)

    def build(self, arch: Optional[str] = None, seed: Optional[int] = None) -> nn.Module:
        torch.manual_seed(self.cfg.seed if seed is None else seed)
        model = build_model(arch or self.cfg.model.arch, self.data.num_classes).to(self.device)
        if engine.use_channels_last(self.cfg.runtime, self.device):
            model = model.to(memory_format=torch.channels_last)
        return model

    def train(self, model: nn.Module, recipe: TrainConfig, *, phase: str, objective=None, masks=None,
              after_backward=None) -> TrainResult:
        return engine.train(model, self.data, recipe, runtime=self.cfg.runtime, timer=self.timer,
                            seed=self.seed_for(phase), augment=self.cfg.dataset.augment,
                            objective=objective, masks=masks, after_backward=after_backward, phase=phase,
                            log=self.log)

    def masks(self, model: nn.Module) -> Masks:
        return Masks(model, self.cfg.prune.layers)

    def phases(self) -> dict:
        out = {k: {"seconds": v, "reused": False} for k, v in self.timer.seconds().items()}
        for k, v in self.reused.items():
            out.setdefault(k, {"seconds": v, "reused": True})
        return out

    # ------------------------------------------------------------------ cached stages
    def stage(self, kind: str, ident: dict, model: nn.Module, produce: Callable[[], tuple[dict, list]],
              phases: tuple[str, ...]) -> tuple[dict, list]:
        """Restore ``model`` (and saved tensors) from the cache, or run ``produce()``, which trains
        ``model`` in place and returns (JSON-able meta, list of tensors), and cache the result."""
        runtime = {k: getattr(self.cfg.runtime, k) for k in RUNTIME_IDENTITY}
        key = hash_identity({"kind": kind, "data": self.data.info["fingerprint"], "runtime": runtime, **ident})
        hit = self.artifacts.load(kind, key)
        if hit is not None:
            payload, meta = hit
            model.load_state_dict(payload["model"])
            for ph in phases:
                self.reused[ph] = meta["phase_seconds"].get(ph, 0.0)
            self.log(f"  reused {kind} checkpoint {meta['path']}")
            return meta, [t.to(self.device) for t in payload["tensors"]]
        before = self.timer.seconds()
        meta, tensors = produce()
        after = self.timer.seconds()
        meta["phase_seconds"] = {ph: after.get(ph, 0.0) - before.get(ph, 0.0) for ph in phases}
        meta["identity"] = ident
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        meta = self.artifacts.save(kind, key, {"model": state, "tensors": [t.detach().cpu() for t in tensors]}, meta)
        return meta, tensors

    def dense_model(self) -> tuple[nn.Module, TrainResult]:
        """The dense model trained with the ``pretrain`` recipe (cached by config hash)."""
        c = to_dict(self.cfg)
        model = self.build()

        def produce():
            res = self.train(model, self.cfg.pretrain, phase="pretrain")
            return {"result": res.to_dict()}, []

        ident = {"dataset": c["dataset"], "model": c["model"], "pretrain": c["pretrain"], "seed": c["seed"]}
        meta, _ = self.stage("dense", ident, model, produce, ("pretrain",))
        return model, TrainResult.from_dict(meta["result"])

    def teacher(self) -> nn.Module:
        """The frozen teacher for this dataset (trained once, cached; recorded in ``teacher_info``)."""
        c = to_dict(self.cfg)
        tc = self.cfg.teacher
        model = self.build(tc.arch, tc.seed)

        def produce():
            res = self.train(model, tc.train, phase="teacher")
            return {"result": res.to_dict(), "arch": tc.arch}, []

        meta, _ = self.stage("teachers", {"dataset": c["dataset"], "teacher": c["teacher"]}, model, produce,
                             ("teacher",))
        self.teacher_info = {"arch": tc.arch, "sha256": meta["sha256"], "path": meta["path"],
                             "top1": meta["result"]["top1_final"], "top1_best": meta["result"]["top1_best"]}
        model.eval().requires_grad_(False)
        return model

    # ------------------------------------------------------------------ the common tail
    def prune_and_retrain(self, model: nn.Module, scores: list[torch.Tensor], objective=None) -> Outcome:
        """One-shot global pruning by ``scores`` to the target sparsity, then retraining with a fresh
        optimizer and the masks fixed (the shape every one-shot method shares)."""
        masks = self.masks(model)
        with self.phase("prune"):
            masks.prune_global(scores, self.cfg.prune.sparsity)
        result = self.train(model, self.cfg.retrain, phase="retrain", objective=objective, masks=masks)
        return Outcome(model=model, result=result, masks=masks)
