"""Method registry: every module in ``bench.methods`` and ``baselines`` that defines ``NAME``.

A method module defines:

* ``NAME``: its grid name;
* ``PRUNES``: False gives one run per dataset and seed, at sparsity 0;
* ``SECTIONS``: the config sections its result depends on (hashed into the run id);
* ``VERSION``: an integer in its run identity; bump it when a fix changes the method's results;
* ``run(ctx) -> Outcome``;

and optionally:

* ``CONFIG = {"section": Dataclass}``: config sections it owns (validated, ``--set``-able, listed
  in docs/config.md), which any method may then list in ``SECTIONS``;
* ``label_suffix(cfg) -> str``: the suffix of an unlabelled grid entry's label for this run's
  config (a variant of the method, e.g. ``-matched`` for an SD row at the matched budget).

A run's realised sparsity (on ``grid.sparsity_measure``) must be within ``masks.TOLERANCE`` of its
target, unless the method's ``Outcome.off_target`` says why not.

Adding a method is adding a file; see docs/adding-a-method.md.
"""
from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

_PACKAGES = ("bench.methods", "baselines")
_REQUIRED = ("NAME", "PRUNES", "SECTIONS", "VERSION", "run")
_registry: dict[str, ModuleType] | None = None


def registry() -> dict[str, ModuleType]:
    global _registry
    if _registry is None:
        from ..config import register_section

        found: dict[str, ModuleType] = {}
        for pkg_name in _PACKAGES:
            pkg = importlib.import_module(pkg_name)
            for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
                mod = importlib.import_module(f"{pkg_name}.{info.name}")
                name = getattr(mod, "NAME", None)
                for section, cls in getattr(mod, "CONFIG", {}).items():
                    register_section(section, cls)
                if name is None:
                    continue
                missing = [a for a in _REQUIRED if not hasattr(mod, a)]
                if missing:
                    raise RuntimeError(f"method module {mod.__name__} lacks {', '.join(missing)} "
                                       "(see docs/adding-a-method.md)")
                if name in found:
                    raise RuntimeError(f"method name {name!r} is defined twice: {found[name].__name__}, {mod.__name__}")
                found[name] = mod
        _registry = found
    return _registry


def get(name: str) -> ModuleType:
    reg = registry()
    if name not in reg:
        from ..config import ConfigError

        raise ConfigError(f"unknown method {name!r} in grid.methods; known methods: {', '.join(sorted(reg))}")
    return reg[name]
