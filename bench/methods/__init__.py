"""Method registry: every module in ``bench.methods`` and ``baselines`` that defines ``NAME``.

A method module defines ``NAME`` (its grid name), ``PRUNES`` (False: one run per dataset and
seed, sparsity 0), ``SECTIONS`` (config sections its result depends on, hashed into the run id)
and ``run(ctx) -> Outcome``. Adding a method is adding a file; see docs/adding-a-method.md.
"""
from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

_PACKAGES = ("bench.methods", "baselines")
_registry: dict[str, ModuleType] | None = None


def registry() -> dict[str, ModuleType]:
    global _registry
    if _registry is None:
        found: dict[str, ModuleType] = {}
        for pkg_name in _PACKAGES:
            pkg = importlib.import_module(pkg_name)
            for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
                mod = importlib.import_module(f"{pkg_name}.{info.name}")
                name = getattr(mod, "NAME", None)
                if name is None:
                    continue
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
