"""The registry of methods and their config sections: the one place both are looked up.

A method is any object (a class, a module, a namespace) with

* ``NAME``: its grid name;
* ``PRUNES``: False gives one run per dataset and seed, at sparsity 0;
* ``SECTIONS``: the config sections its result depends on (hashed into the run id);
* ``VERSION``: an integer in its run identity; bump it when a fix changes the method's results;
* ``run(ctx) -> Outcome``;

and optionally ``plan(cfg) -> list[Work]`` (the cost preview), ``label_suffix(cfg) -> str`` (the
label suffix of an unlabelled grid entry, e.g. ``-matched``), ``prunable_set(cfg) -> str`` (what it
prunes, when not ``prune.layers``) and ``DESCRIPTION`` (one sentence for ``bench list``; default: the
first sentence of its docstring). It enters with ``@register_method``;
a config section it owns enters with ``@register_section("name")`` on its dataclass, and is then
validated, ``--set``-able, listed in docs/config.md and hashed into the identity of every method
that lists it in ``SECTIONS``.

Where methods come from (``load()``, once, before the first look-up):

* the built-in packages ``bench.methods`` and ``baselines``: every module there is imported; one
  that defines ``NAME`` is itself a method, one may register several (baselines/selfdistill_rows.py),
  and one that registers none is a helper library and says so in its docstring;
* installed packages: the entry-point group ``prune_kd_bench.methods`` (each entry point is a
  module to import; it registers what it defines as above);
* files named on the command line: ``--plugin path/to/my_method.py`` (``load_plugin``).

Sections load apart from methods (``load_sections()``), so that a Config loads without torch: the
built-in sections are in torch-free modules (``bench.distill``: teacher and kd; each built-in
package's ``sections.py``), imported before any method code; an installed entry point is imported
then too (it registers its sections and methods together, and may import torch). A method module
that registered a section of its own would be found only by ``load()``: tests/test_imports.py
checks that no built-in one does.

This module imports neither torch nor any method code at import time; ``bench.config`` reads its
section types from here (docs/adding-a-method.md).
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.metadata
import importlib.util
import pkgutil
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

from . import datasets as D

BUILTIN_PACKAGES = ("bench.methods", "baselines")
# torch-free modules that hold the built-in config sections (no method code)
SECTION_MODULES = ("bench.distill", "bench.methods.sections", "baselines.sections")
ENTRY_POINT_GROUP = "prune_kd_bench.methods"
REQUIRED = ("NAME", "PRUNES", "SECTIONS", "VERSION", "run")


def describe(mod) -> str:
    """One sentence on a method: its ``DESCRIPTION``, else the first sentence of its docstring."""
    text = getattr(mod, "DESCRIPTION", None) or (mod.__doc__ or "").strip()
    text = " ".join(text.split())
    cut = text.find(". ")
    return text if cut < 0 else text[:cut + 1]


def prunable_set(mod, cfg) -> str:
    """The set method ``mod`` prunes on ``cfg`` ('' for a method that does not prune)."""
    if not mod.PRUNES:
        return ""
    fn = getattr(mod, "prunable_set", None)
    return fn(cfg) if callable(fn) else cfg.prune.layers


class RegistryError(ValueError):
    """A method or section that cannot be registered (a clash, a missing attribute, a bad plug-in file)."""


_methods: dict[str, Any] = {}
_sections: dict[str, type] = {}
_origins: dict[str, str] = {}          # method or section name -> where it was registered
_reserved: set[str] = set()           # core section names (bench.config): no method may take them
_plugins: list[dict] = []             # plug-in files loaded in this process, in order: {path, sha256}
_loaded = False
_sections_loaded = False


def _origin(obj) -> str:
    """The module that defines ``obj``: a module itself, or a class's or an instance's module."""
    if isinstance(obj, ModuleType):
        return obj.__name__
    return obj.__module__ if isinstance(obj, type) else type(obj).__module__


def origin(name: str) -> str:
    """The module that registered method ``name`` (for a plug-in file: bench_plugin_<stem>_<n>)."""
    methods()
    return _origins[name]


def register_method(obj):
    """Register a method (decorator for a class; a call for a module or namespace). Returns ``obj``."""
    missing = [a for a in REQUIRED if not hasattr(obj, a)]
    if missing:
        raise RegistryError(f"method {getattr(obj, 'NAME', obj)!r} from {_origin(obj)} lacks "
                            f"{', '.join(missing)} (see docs/adding-a-method.md)")
    name = obj.NAME
    old = _methods.get(name)
    if old is not None and old is not obj:
        raise RegistryError(f"method name {name!r} from {_origin(obj)} is already taken by {_origins[name]}; "
                            "choose another NAME")
    _methods[name] = obj
    _origins[name] = _origin(obj)
    return obj


def register_section(name: str) -> Callable[[type], type]:
    """Decorator: make dataclass ``cls`` the config section ``name`` (a top-level key in YAML)."""

    def add(cls: type) -> type:
        if name in _reserved:
            raise RegistryError(f"config section {name!r} of {cls.__module__}.{cls.__name__} is a core section; "
                                "a method cannot redefine it: choose another name")
        if not dataclasses.is_dataclass(cls):
            raise RegistryError(f"config section {name!r} must be a dataclass, got {cls!r}")
        old = _sections.get(name)
        if old is not None and old is not cls:
            raise RegistryError(f"config section {name!r} is declared twice: {old.__module__}.{old.__name__} "
                                f"and {cls.__module__}.{cls.__name__}; choose another name")
        _sections[name] = cls
        _origins.setdefault(f"section:{name}", cls.__module__)
        return cls

    return add


def reserve_sections(names) -> None:
    """Core section names (called by bench.config): a method-owned section may not take them."""
    _reserved.update(names)


def _register_module(mod: ModuleType) -> None:
    if hasattr(mod, "NAME"):
        register_method(mod)


def load_sections() -> None:
    """Import the built-in section modules and the installed entry points (once); no built-in method code."""
    global _sections_loaded
    if _sections_loaded:
        return
    _sections_loaded = True
    try:
        for mod_name in SECTION_MODULES:
            importlib.import_module(mod_name)
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            loaded = ep.load()
            if isinstance(loaded, ModuleType):
                _register_module(loaded)
    except BaseException:
        _sections_loaded = False
        raise


def load() -> None:
    """Import the sections, then every module of the built-in method packages (once)."""
    global _loaded
    if _loaded:
        return
    load_sections()
    _loaded = True
    try:
        for pkg_name in BUILTIN_PACKAGES:
            pkg = importlib.import_module(pkg_name)
            for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
                _register_module(importlib.import_module(f"{pkg_name}.{info.name}"))
    except BaseException:
        _loaded = False
        raise


def load_plugin(path: str | Path) -> list[str]:
    """Import a method (or dataset) file; return the names it registered (methods, ``section:`` and
    ``dataset:`` names)."""
    load()
    p = Path(path)
    if not p.is_file():
        raise RegistryError(f"plug-in file {str(path)!r} not found; give the path of a Python file that "
                            "registers a method (docs/adding-a-method.md)")
    key = str(p.resolve())
    if any(q["path"] == key for q in _plugins):
        return []
    source = p.read_bytes()
    before = set(_methods) | {f"section:{s}" for s in _sections} | {f"dataset:{d}" for d in D.names()}
    mod_name = f"bench_plugin_{p.stem}_{len(_plugins)}"
    spec = importlib.util.spec_from_file_location(mod_name, p)
    if spec is None or spec.loader is None:
        raise RegistryError(f"plug-in file {str(path)!r} is not a Python module (.py)")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = mod
    try:
        spec.loader.exec_module(mod)
        _register_module(mod)
    except RegistryError as e:
        sys.modules.pop(mod_name, None)
        raise RegistryError(f"plug-in file {str(path)!r}: {e}") from None
    except D.DatasetRegistryError as e:
        sys.modules.pop(mod_name, None)
        raise RegistryError(f"plug-in file {str(path)!r}: {e}") from None
    except SyntaxError as e:
        sys.modules.pop(mod_name, None)
        raise RegistryError(f"plug-in file {str(path)!r} is not valid Python (line {e.lineno}: {e.msg})") from None
    added = sorted((set(_methods) | {f"section:{s}" for s in _sections} | {f"dataset:{d}" for d in D.names()})
                   - before)
    if not any(not a.startswith("section:") for a in added):
        raise RegistryError(f"plug-in file {str(path)!r} registers no method and no dataset; decorate a class "
                            "with @register_method (bench.registry; docs/adding-a-method.md) or call "
                            "register_dataset (bench.datasets; docs/adding-a-dataset.md)")
    _plugins.append({"path": key, "sha256": hashlib.sha256(source).hexdigest()})
    return added


def load_plugins(paths) -> None:
    for p in paths or ():
        load_plugin(p)


def plugins() -> list[dict]:
    """The plug-in files loaded in this process, in order: {path (absolute), sha256 (of what was run)}."""
    return [dict(q) for q in _plugins]


def methods() -> dict[str, Any]:
    """Every registered method by name (the live mapping)."""
    load()
    return _methods


def sections() -> dict[str, type]:
    """Every registered config section by name (the live mapping); imports no built-in method code."""
    load_sections()
    return _sections


def variants() -> dict[str, tuple[str, dict]]:
    """Named variants of the registered methods: {label: (method, config overrides)}, from each method's
    optional ``VARIANTS`` mapping (``{"egp-shortcut": {"egp.layers": "conv"}}``): a grid may list the
    label alone, as it lists a method."""
    out = {}
    for name, mod in methods().items():
        for label, sets in (getattr(mod, "VARIANTS", None) or {}).items():
            out[label] = (name, dict(sets))
    return out


def get(name: str):
    reg = methods()
    if name not in reg:
        var = variants()
        known = f"known methods: {', '.join(sorted(reg))}"
        if var:
            known += (f"; named variants: {', '.join(sorted(var))}; any other variant as a mapping, e.g. "
                      "{name: egp, label: my-egp, set: {egp.rate: 0.3}}")
        raise RegistryError(f"unknown method {name!r} in grid.methods; {known} (a method of your own: --plugin FILE)")
    return reg[name]
