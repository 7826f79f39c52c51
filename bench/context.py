"""What a method can ask for while it runs: data, models, the engine, masks, cached stages (``RunContext``).

Trained artifacts that later runs reuse (the dense model, teachers, the proposed method's
fine-tuned student and importance, the rounds of an iterative method) are cached by a hash of
everything that determines them: the sections the stage declares, the data fingerprint, the device
type and effective precision, and the harness version (bench/artifacts.py keeps the files, with
their sha256, git commit, device and phase seconds; bench/ledger.py what the run spent).
"""
from __future__ import annotations

import dataclasses
import shutil
import uuid
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import torch
import torch.nn as nn

from . import engine, registry
from .artifacts import Artifacts, CorruptCheckpointError, _to, _to_cpu
from .checkpoint import EpochCheckpoint
from .config import HARNESS_VERSION, Config, TrainConfig
from .declared import ALWAYS, Guarded, UndeclaredSection, covers, narrowed, raw
from .engine import TrainResult
from .grid import hash_identity, runtime_identity, identity
from .ledger import Ledger
from .masks import Masks, Target
from .models import build_model
from .phases import DEFAULT_GROUPS
from .provenance import code_state, device_name, git_state
from .runtime import use_channels_last
from .stages import stage_ident


@dataclass
class Outcome:
    """What a method hands back; the runner measures sparsity itself from ``model``."""
    model: nn.Module
    result: TrainResult
    masks: Optional[Masks] = None
    extra: dict = field(default_factory=dict)
    # Why the realised sparsity may miss the target by more than masks.TOLERANCE (an iterative method
    # run with its official overshoot); None: a miss is a bug and fails the run.
    off_target: Optional[str] = None


def derived_seed(seed: int, purpose: str) -> int:
    """A seed for one purpose (a phase's data order, random scores, ...), fixed by ``seed``.

    Never reuse the run seed itself for a second generator: model initialisation draws from the
    global generator seeded with it, so a generator with the same seed replays the very numbers the
    initial weights were made from (random pruning scores would then track the weights)."""
    return seed * 1_000_003 + zlib.crc32(purpose.encode())


# The stages the context itself makes, shared by every method: their sections and code version.
DENSE_SECTIONS = ("dataset", "model", "pretrain", "seed")
TEACHER_SECTIONS = ("dataset", "teacher")
CONTEXT_VERSION = 1


def dense_ident(cfg: Config) -> dict:
    """What the cached dense model depends on (``RunContext.dense_model``; also its plan's key)."""
    return stage_ident(cfg, DENSE_SECTIONS, CONTEXT_VERSION)


def teacher_ident(cfg: Config) -> dict:
    """What the cached teacher depends on (``RunContext.teacher``; also its plan's key)."""
    return stage_ident(cfg, TEACHER_SECTIONS, CONTEXT_VERSION)


class RunContext:
    """What a method's ``run(ctx)`` may use, and all it should use:

    * ``cfg``: the run's config, readable only where the method declares it (bench/declared.py);
      ``data`` (the run's split, on the device), ``device``, ``log``, ``extra`` (anything the record
      should carry) and ``seed_for(purpose)`` (a seed per purpose, never the run seed twice);
    * models: ``build()`` (a fresh network from the run seed), ``dense_model()`` and ``teacher()``
      (trained once, cached, shared by every run that needs them);
    * training: ``train(model, recipe, phase=...)``, the engine's loop, resumable, counted in the budget;
      ``phase(name)``, to time anything else;
    * pruning: ``masks(model)``, ``target(masks, model)``, ``prune_global(...)``, ``prune_and_retrain(...)``;
    * caching: ``stage(kind, produce, phases, sections=..., version=...)`` (an artifact made once, keyed by
      the sections it declares) and ``rounds(...)`` (an iterative method's chain of stages), with
      ``add_round`` for its per-round record.

    What the run spent and trained is kept by ``ledger`` (bench/ledger.py), cached files by ``artifacts``
    (bench/artifacts.py); the runner reads both into the record."""

    def __init__(self, cfg: Config, data, device: torch.device, artifacts: Artifacts,
                 log: Callable[[str], None] = print, run_id: Optional[str] = None,
                 load_data: Optional[Callable] = None, declared: Optional[tuple[str, ...]] = None,
                 owner: str = "this method"):
        # ``declared``: the config parts the run may read (grid.declared_sections); every read outside
        # them raises (bench/declared.py). None: no check (a context made by a test or a tool).
        self.cfg = cfg if declared is None else Guarded(cfg, declared, owner)
        self.declared, self.owner = declared, owner
        self.data, self.device, self.artifacts, self.log = data, device, artifacts, log
        self.load_data = load_data          # DatasetConfig -> data on the device (another split of the dataset)
        # Epoch checkpoints are scoped by run id: a context made outside a grid gets a unique one.
        self.run_id = run_id or f"adhoc-{uuid.uuid4().hex[:12]}"
        self.device_name = device_name(device)
        self._scopes = [f"run-{self.run_id}"]         # epoch checkpoints: of the run, or of the stage being made
        self._calls: dict[tuple[str, str], int] = {}
        self.resumed: list[dict] = []            # where interrupted training calls were resumed
        self.ledger = Ledger(device)             # what the run spent and trained: phases, budget, artifacts, rounds
        self.teacher_info: Optional[dict] = None
        self.extra: dict = {}

    # ------------------------------------------------------------------ building blocks
    def phase(self, name: str, group: Optional[str] = None):
        """Time a block under ``name``; ``group`` is its latency-table group (see GROUPS)."""
        self.ledger.declare(name, group)
        return self.ledger.timer.phase(name)

    def seed_for(self, purpose: str) -> int:
        return derived_seed(self.cfg.seed, purpose)

    def pair_with(self, method: str) -> None:
        """Record (``extra.pairs_with``) the run a control is compared with: ``method`` on this run's
        config, hence the same dataset, seed and sparsity, by the run id that method's cell gets."""
        mod = registry.get(method)
        self.extra["pairs_with"] = {
            "method": method, "run_id": hash_identity(identity(raw(self.cfg), mod, self.device.type)),
            "dataset": self.cfg.dataset.name, "seed": self.cfg.seed,
            "target_sparsity": self.cfg.prune.sparsity if mod.PRUNES else 0.0}

    def build(self, arch: Optional[str] = None, seed: Optional[int] = None,
              num_classes: Optional[int] = None) -> nn.Module:
        """A freshly initialised model, its initial weights drawn from ``seed`` (default: the run seed)."""
        torch.manual_seed(self.cfg.seed if seed is None else seed)
        model = build_model(arch or self.cfg.model.arch, num_classes or self.data.num_classes).to(self.device)
        if use_channels_last(self.cfg.runtime):
            model = model.to(memory_format=torch.channels_last)
        return model

    def train(self, model: nn.Module, recipe: TrainConfig, *, phase: str, group: Optional[str] = None,
              objective=None, masks=None, hooks=(), state: Optional[dict] = None,
              data=None, seed: Optional[int] = None, augment=None) -> TrainResult:
        """The engine's training loop on the run's data (or ``data``, e.g. a class subset); the data
        order and augmentation draws follow ``seed`` (default: derived from the run seed and ``phase``).
        Resumable: an interrupted call continues from its epoch checkpoint. ``state``: objects with
        ``state_dict``/``load_state_dict`` that the checkpoint must carry too (an importance tracker).
        ``hooks``: the method's callbacks (``callbacks.Callback``: importance scoring in ``after_backward``,
        a pruning schedule in ``after_step``)."""
        self.ledger.declare(phase, group)
        self.ledger.declare("eval", None)
        ckpt = self.epoch_checkpoint(phase)
        data = data if data is not None else self.data
        augment = augment or self.cfg.dataset.augment
        try:
            result = engine.train(model, data, recipe, runtime=self.cfg.runtime, timer=self.ledger.timer,
                                  seed=self.seed_for(phase) if seed is None else seed, augment=augment,
                                  objective=objective, masks=masks, hooks=hooks,
                                  state=state,
                                  checkpoint=ckpt, phase=phase, log=self.log)
        finally:
            if ckpt.resumed is not None:
                self.resumed.append({**ckpt.resumed, "scope": self._scopes[-1]})
        self.ledger.count(phase, recipe.epochs * data.images_per_epoch(recipe.batch_size, recipe.drop_last),
                          recipe.epochs, len(self.data.train_y), augment)
        return result

    def epoch_checkpoint(self, phase: str) -> EpochCheckpoint:
        """The checkpoint file of the next training call named ``phase`` in the current scope (the run,
        or the cached stage being produced, so that any run needing that stage resumes it)."""
        scope = self._scopes[-1]
        n = self._calls[(scope, phase)] = self._calls.get((scope, phase), 0) + 1
        name = phase if n == 1 else f"{phase}-{n}"
        ckpt = EpochCheckpoint(self.epochs_dir / scope / f"{name}.pt", self.cfg.runtime.checkpoint_every_s)
        ckpt.resumed = None
        return ckpt

    @property
    def epochs_dir(self) -> Path:
        return self.artifacts.root / "epochs"

    def remove_checkpoints(self, scope: Optional[str] = None) -> None:
        """Delete the epoch checkpoints of ``scope`` (default: this run's), once what they protect is saved."""
        shutil.rmtree(self.epochs_dir / (scope or self._scopes[0]), ignore_errors=True)

    def masks(self, model: nn.Module) -> Masks:
        return Masks(model, self.cfg.prune.layers)

    def target(self, masks: Masks, model: nn.Module) -> Target:
        """This run's target (``prune.sparsity`` on ``prune.measure``) as weight counts of
        ``model`` pruned over ``masks``' set; raises ``UnreachableSparsity`` when that set, pruned
        whole, cannot reach it (the runner records the cell as unreachable)."""
        target = Target(masks, model, self.cfg.prune.sparsity, self.cfg.prune.measure)
        target.check(masks.layers)
        return target

    def prune_global(self, masks: Masks, model: nn.Module, scores: list[torch.Tensor]) -> int:
        """One-shot global pruning of ``masks``' set by ``scores``, lowest first, to exactly the count
        that lands ``model`` on the run's target. Returns the weights removed."""
        return masks.prune_count(scores, self.target(masks, model).global_count(masks, scores))

    def add_round(self, r: int, *, phase: str, sparsity: dict, top1_final: Optional[float] = None,
                  top1_best: Optional[float] = None, **extra) -> None:
        """Record round ``r`` of an iterative method (``Ledger.add_round``)."""
        self.ledger.add_round(r, phase=phase, sparsity=sparsity, top1_final=top1_final, top1_best=top1_best, **extra)

    def phases(self) -> dict:
        """{phase: {seconds, reused, device, group, commit}} of this run so far (``Ledger.phases``)."""
        return self.ledger.phases()

    # ------------------------------------------------------------------ cached stages
    def stage_key(self, kind: str, ident: dict) -> str:
        """The cache key of a stage of identity ``ident`` (``stages.stage_ident``) on this run's data,
        device type, precision and harness version."""
        return hash_identity({"kind": kind, "data": self.data.info["fingerprint"], "harness": HARNESS_VERSION,
                              "runtime": runtime_identity(self.cfg.runtime, self.device.type), **ident})

    def stage(self, kind: str, produce: Callable[[], tuple[dict, Any]], phases: tuple[str, ...], *,
              sections: tuple[str, ...], version: int, extra: Optional[dict] = None,
              model: Optional[nn.Module] = None) -> tuple[dict, Any]:
        """Run ``produce()`` once and cache what it returns, or restore it from the cache.

        ``produce() -> (meta, payload)``: JSON-able meta and a payload of tensors (nested dicts and
        lists allowed), returned on the device. With ``model``, its state dict is saved too and
        restored into it on a cache hit. ``phases`` are the phase names ``produce`` times; on a hit
        they are recorded as reused, with the seconds, device and commit of the run that made them.
        The cache key is derived (``bench/stages.py``) from the whole content of the config
        ``sections`` the result depends on (dotted paths), ``version`` (the owning method's
        ``VERSION``), ``extra`` (a round number, a target), the data, device type, precision and
        harness version: declare what the result depends on, never list fields by hand."""
        if self.declared is not None:
            missing = [p for p in sections if p not in ALWAYS and not covers(self.declared, p)]
            if missing:
                raise UndeclaredSection(f"{self.owner}: its stage '{kind}' depends on {', '.join(missing)}, which "
                                        "the method does not declare in SECTIONS (its run id would not change with "
                                        "them); declare them")
        ident = stage_ident(raw(self.cfg), sections, version, **(extra or {}))
        runtime = runtime_identity(self.cfg.runtime, self.device.type)
        key = self.stage_key(kind, ident)
        rt = self.cfg.runtime
        hit, lock = self.artifacts.fetch(kind, key, rt.heartbeat_s, rt.stale_after_s, self.log)
        if hit is not None:
            payload, meta = hit
            if model is not None:
                model.load_state_dict(payload["model"])
            self.ledger.reuse(phases, meta)
            self.ledger.used(kind, key, meta, phases, reused=True)
            self.log(f"  reused {kind} checkpoint {meta['path']}")
            return meta, _to(payload.get("payload"), self.device)
        try:
            return self._produce(kind, key, ident, runtime, produce, phases, model)
        finally:
            lock.release()

    def rounds(self, kind: str, target: Target, *, sections: tuple[str, ...], version: int, first: int, limit: int,
               step: Callable, restore: Callable, record: Callable, reached: Callable[[], bool],
               too_many: Callable[[int], str], model: Optional[nn.Module] = None) -> int:
        """The rounds of an iterative method (COLT, EGP), each a cached stage ``kind`` keyed by
        ``sections``, ``version`` and its round number; the chain of full rounds is shared by every
        target, a truncated last round is keyed by the target too. Round ``r`` (from ``first``):

        ``step(r, phase) -> (last, produce)``: whether ``r`` is the truncated last round (any planning
        timed by the method) and its producer (``stage``'s ``produce``); ``restore(payload)`` loads a
        cached round into the live models (``model``, if given, is restored by ``stage``);
        ``record(r, phase, meta, last)`` adds the round to the record. The chain stops after a last
        round or once ``reached()``; a round past ``limit`` raises ``too_many(r)``. Returns the final round."""
        r = first
        while True:
            phase = f"round{r:02d}"
            last, produce = step(r, phase)
            extra = {"round": r}
            if last:       # truncated to land on this target: not shared with other targets
                extra.update(target=self.cfg.prune.sparsity, measure=target.measure)
            made = []

            def made_here():
                made.append(True)
                return produce()

            meta, payload = self.stage(kind, made_here, (phase,), sections=sections, version=version, extra=extra,
                                       model=model)
            if not made:
                restore(payload)
            record(r, phase, meta, last)
            if last or reached():
                return r
            r += 1
            if r > limit:
                raise RuntimeError(too_many(r))

    def _produce(self, kind, key, ident, runtime, produce, phases, model) -> tuple[dict, Any]:
        scope = f"stage-{kind}-{key}"
        self._scopes.append(scope)
        before = self.ledger.timer.seconds()
        view = self.cfg
        if self.declared is not None:      # while it is made, the stage reads only what it declares
            reads = tuple(ident["config"]) + (("prune.sparsity",) if "target" in ident else ())
            self.cfg = narrowed(view, reads, f"{self.owner}, stage '{kind}'")
        try:
            meta, payload = produce()
        finally:
            self._scopes.pop()
            self.cfg = view
        after = self.ledger.timer.seconds()
        commit, dirty = git_state()
        meta.update(phase_budget={ph: self.ledger.budget[ph] for ph in phases if ph in self.ledger.budget},
                    phase_seconds={ph: after.get(ph, 0.0) - before.get(ph, 0.0) for ph in phases},
                    phase_groups={ph: self.ledger.groups.get(ph, DEFAULT_GROUPS.get(ph, "other")) for ph in phases},
                    device=self.device_name, git_commit=commit, git_dirty=dirty, harness_version=HARNESS_VERSION,
                    code_fingerprint=code_state()["code_fingerprint"],
                    identity=ident, runtime=runtime)
        saved = {"payload": _to_cpu(payload)}
        if model is not None:
            saved["model"] = _to_cpu(model.state_dict())
        meta = self.artifacts.save(kind, key, saved, meta)
        self.remove_checkpoints(scope)
        self.ledger.used(kind, key, meta, phases, reused=False)
        return meta, payload

    def dense_model(self) -> tuple[nn.Module, TrainResult]:
        """The dense model trained with the ``pretrain`` recipe (cached per seed)."""
        model = self.build()

        def produce():
            res = self.train(model, self.cfg.pretrain, phase="pretrain")
            return {"result": res.to_dict()}, None

        meta, _ = self.stage("dense", produce, ("pretrain",), sections=DENSE_SECTIONS, version=CONTEXT_VERSION,
                             model=model)
        return model, TrainResult.from_dict(meta["result"])

    def teacher(self) -> nn.Module:
        """The frozen teacher for this dataset (trained once, cached; recorded in ``teacher_info``).

        Its whole training (initial weights, data order, augmentation) follows ``teacher.seed``, not
        the run seed: every seed of a grid, and ``python -m bench teacher``, get the same teacher."""
        tc = self.cfg.teacher
        model = self.build(tc.arch, tc.seed)

        def produce():
            data = self.data
            if tc.data == "full" and self.cfg.dataset.train_limit is not None:
                if self.load_data is None:
                    raise RuntimeError("teacher.data: full needs the whole training split, and this context "
                                       "cannot load data (give RunContext a load_data)")
                data = self.load_data(dataclasses.replace(self.cfg.dataset, train_limit=None))
            res = self.train(model, tc.train, phase="teacher", seed=derived_seed(tc.seed, "teacher"), data=data)
            return {"result": res.to_dict(), "arch": tc.arch, "train_images": len(data.train_y),
                    "data_fingerprint": data.info["fingerprint"]}, None

        meta, _ = self.stage("teachers", produce, ("teacher",), sections=TEACHER_SECTIONS, version=CONTEXT_VERSION,
                             model=model)
        self.teacher_info = {"arch": tc.arch, "sha256": meta["sha256"], "path": meta["path"],
                             "top1": meta["result"]["top1_final"], "top1_best": meta["result"]["top1_best"],
                             "data": tc.data, "train_images": meta.get("train_images"),
                             "data_fingerprint": meta.get("data_fingerprint"),
                             "git_commit": meta.get("git_commit"), "device": meta.get("device")}
        model.eval().requires_grad_(False)
        return model

    # ------------------------------------------------------------------ the common tail
    def prune_and_retrain(self, model: nn.Module, scores: list[torch.Tensor], objective=None) -> Outcome:
        """One-shot global pruning by ``scores`` to the target sparsity, then retraining with a fresh
        optimizer and the masks fixed (the shape every one-shot method shares)."""
        masks = self.masks(model)
        with self.phase("prune"):
            self.prune_global(masks, model, scores)
        result = self.train(model, self.cfg.retrain, phase="retrain", objective=objective, masks=masks)
        return Outcome(model=model, result=result, masks=masks)
