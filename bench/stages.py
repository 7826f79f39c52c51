"""What a cached stage's identity is made of (``RunContext.stage``; also the plan's sharing key).

A stage declares the parts of the config its result depends on, by dotted path: a section
(``pretrain``), a sub-section (``egp.dense``), a single field (``prune.layers``) or a top-level value
(``seed``). Its identity is the whole content of each declared part plus the owner's ``VERSION``
(open_lth's ``Desc``: the identity is derived from the hyper-parameters, never listed by hand), so
a field added to a declared section enters every key that section is in. A field that cannot change
what a stage makes (a chain's stopping rule) says so itself, on its definition:
``field(default=..., metadata=NOT_IN_STAGES)``; tests/test_stages.py changes every other field of
every declared part and checks the key changes. Torch-free: ``bench/plan.py`` keys shared work with it.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from .config import to_dict
from .declared import raw

NOT_IN_STAGES = {"stage": False}       # field metadata: left out of every stage identity


def in_stages(f: dataclasses.Field) -> bool:
    return f.metadata.get("stage", True)


def _declared(obj: Any, value: Any) -> Any:
    """``value`` (``obj`` as a plain mapping) without the fields marked ``NOT_IN_STAGES``, at any depth
    (and, as in every identity, without ``ADDED_LATER`` fields at their defaults: ``identity_value``)."""
    if dataclasses.is_dataclass(obj) and isinstance(value, dict):
        fields = {f.name: f for f in dataclasses.fields(obj)}
        return {k: _declared(getattr(obj, k), v) for k, v in value.items()
                if k not in fields or (in_stages(fields[k]) and not _omitted(fields[k], v))}
    return value


def _omitted(f: dataclasses.Field, value: Any) -> bool:
    """Whether ``value`` of field ``f`` stays out of identities: an ``ADDED_LATER`` field at its default."""
    if f.metadata.get("identity") != "omit-at-default":
        return False
    if f.default is not dataclasses.MISSING:
        return value == f.default
    return f.default_factory is not dataclasses.MISSING and value == to_dict(f.default_factory())


def identity_value(obj: Any, value: Any) -> Any:
    """``value`` (``obj`` as a plain mapping) without the ``ADDED_LATER`` fields that hold their default, at
    any depth: what a run id or a stage key hashes, so that an option added later leaves the identities
    of every record made before it as they were."""
    if dataclasses.is_dataclass(obj) and isinstance(value, dict):
        fields = {f.name: f for f in dataclasses.fields(obj)}
        return {k: identity_value(getattr(obj, k), v) for k, v in value.items()
                if not (k in fields and _omitted(fields[k], v))}
    return value


def part(cfg, path: str) -> tuple[Any, Any]:
    """(object, plain value) of the config part at dotted ``path``."""
    cfg = raw(cfg)
    obj, value = cfg, to_dict(cfg)
    for name in path.split("."):
        obj, value = getattr(obj, name), value[name]
    return obj, value


def stage_ident(cfg, sections: tuple[str, ...], version: int, **extra) -> dict:
    """The identity of a stage that depends on ``sections`` of ``cfg`` (dotted paths, see above), made
    by code at ``version``; ``extra``: what else decides it (a round number, a target)."""
    if not sections:
        raise ValueError("a cached stage must declare the config sections it depends on")
    config = {path: _declared(*part(cfg, path)) for path in sections}
    return {"version": version, "config": config, **extra}
