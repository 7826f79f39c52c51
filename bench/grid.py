"""Grid expansion and run identity: a config's datasets x methods x sparsities x seeds -> runs, each
named by a hash of everything its result depends on (the method's own sections included)."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from . import registry
from .config import HARNESS_VERSION, Config, ConfigError, MethodEntry, from_dict, set_dotted, to_dict
from .runtime import device_type, runtime_identity
from .stages import identity_value, part

# Sections a run's identity always depends on; methods add their own (METHOD.SECTIONS).
COMMON_SECTIONS = ("dataset", "model", "seed")


@dataclass
class RunSpec:
    """One cell of a grid: the config of that run and how it is named."""
    config: Config
    method: MethodEntry
    run_id: str
    identity: dict = field(default_factory=dict)

    @property
    def dataset(self) -> str:
        return self.config.dataset.name

    @property
    def sparsity(self) -> float:
        return self.config.prune.sparsity

    @property
    def seed(self) -> int:
        return self.config.seed


def declared_sections(mod) -> tuple[str, ...]:
    """Every config part a run of method ``mod`` may depend on, the run id hashes, and its context lets it
    read (bench/declared.py): the common sections, the method's ``SECTIONS``, and ``prune`` if it prunes."""
    return COMMON_SECTIONS + tuple(mod.SECTIONS) + (("prune",) if mod.PRUNES else ())


def identity(cfg: Config, mod, dev_type: str) -> dict:
    """The canonical mapping hashed into the run id of method ``mod`` on ``dev_type``."""
    full = to_dict(cfg)
    ident: dict[str, Any] = {"method": mod.NAME, "version": getattr(mod, "VERSION", 1),
                             "harness": HARNESS_VERSION}
    for s in declared_sections(mod):
        ident[s] = identity_value(*part(cfg, s))
    if mod.PRUNES:       # the measure sits beside the prune section in the identity, as it always has
        ident["prune"] = {k: v for k, v in full["prune"].items() if k != "measure"}
        ident["sparsity_measure"] = cfg.prune.measure
    ident["runtime"] = runtime_identity(cfg.runtime, dev_type)
    return ident


def hash_identity(ident: dict) -> str:
    canon = json.dumps(ident, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canon.encode()).hexdigest()[:16]


def run_id(cfg: Config, method: str, dev_type: str) -> str:
    """The run id ``method`` gets on ``cfg`` (already one cell: its dataset, sparsity and seed) on ``dev_type``."""
    return hash_identity(identity(cfg, method_of(method), dev_type))


def method_of(name: str):
    """The registered method ``name``; an unknown name is a config error."""
    try:
        return registry.get(name)
    except registry.RegistryError as e:
        raise ConfigError(str(e)) from None


def _named_variant(entry: MethodEntry) -> MethodEntry:
    """``egp-shortcut`` (a method's named variant, registry.variants) as the entry it stands for:
    {name: egp, label: egp-shortcut, set: {egp.layers: conv}}; the entry's own label and sets win."""
    if entry.name in registry.methods():
        return entry
    found = registry.variants().get(entry.name)
    if found is None:
        return entry
    base, sets = found
    return MethodEntry(base, entry.label or entry.name, {**sets, **entry.set}, entry.sparsities)


def apply_sets(cfg: Config, sets: dict, where: str) -> Config:
    """A copy of ``cfg`` with dotted overrides applied (re-validated)."""
    data = to_dict(cfg)
    for k, v in sets.items():
        try:
            set_dotted(data, k, v)
        except ConfigError as e:
            raise ConfigError(f"{where}: {e}") from None
    return from_dict(Config, data)


def expand_grid(cfg: Config, dev_type: str | None = None) -> list[RunSpec]:
    """Datasets x methods x sparsities x seeds -> runs. Methods that do not prune get one run per
    dataset and seed. ``dev_type`` (cpu/cuda) is where the runs will execute: default, this machine's."""
    grid = cfg.grid
    dev_type = dev_type or device_type(cfg.runtime)
    datasets = grid.datasets or [cfg.dataset.name]
    methods = grid.methods or [MethodEntry(name="dense")]
    sparsities = grid.sparsities or [cfg.prune.sparsity]
    seeds = grid.seeds or [cfg.seed]
    runs, seen, labels = [], set(), {}
    for ds in datasets:
        for entry in methods:
            entry = _named_variant(entry)
            mod = method_of(entry.name)
            targets = entry.sparsities if entry.sparsities is not None else sparsities
            for sp in (targets if mod.PRUNES else [0.0]):
                for seed in seeds:
                    data = to_dict(cfg)
                    data["grid"] = {}
                    data["dataset"]["name"] = ds
                    data["prune"]["sparsity"] = float(sp)
                    data["seed"] = int(seed)
                    run_cfg = apply_sets(from_dict(Config, data), entry.set, f"grid method {entry.display!r}")
                    # An unlabelled variant of a method (e.g. an SD row at the matched budget) is named
                    # by the method's own rule, so that it never shares a label with the method itself.
                    suffix = getattr(mod, "label_suffix", None)
                    m = entry if entry.label or suffix is None else \
                        MethodEntry(entry.name, entry.name + suffix(run_cfg), entry.set, entry.sparsities)
                    if labels.setdefault(m.display, id(entry)) != id(entry):
                        raise ConfigError(f"config key 'grid.methods' lists the label {m.display!r} twice; give "
                                          "each entry a distinct 'label'")
                    ident = identity(run_cfg, mod, dev_type)
                    rid = hash_identity(ident)
                    if (m.display, rid) in seen:
                        continue
                    seen.add((m.display, rid))
                    runs.append(RunSpec(config=run_cfg, method=m, run_id=rid, identity=ident))
    return runs
