"""What a method may read of the config: the sections it declares, checked while it runs.

A run's identity (its run id, and so whether the runner skips it as done or resumes it) is hashed from
the config sections its method declares (``SECTIONS``, bench/grid.py), and a cached stage's key from
the sections the stage declares (``RunContext.stage``). A method that read a section it did not
declare would give two configs that differ there one run id: the runner would skip the second as done,
or resume the wrong checkpoint. So the method's context hands it the config through ``Guarded``: a
view that lets through the declared sections (dotted paths: a section, a sub-section such as
``tgp.finetune``, a field such as ``prune.layers``) and the ones every run's identity holds anyway, and
raises ``UndeclaredSection`` naming the section for any other read. A stage narrows the view to the
stage's own sections while it makes its artifact. Torch-free.
"""
from __future__ import annotations

from typing import Any, Iterable

# Read by every run without being a method's declaration: the device and precision settings (their
# result-changing part is the runtime identity every run id holds), the grid section (its measure is in
# every pruning run's identity), the config's name, and the SLURM settings (never in an identity).
ALWAYS = frozenset({"runtime", "grid", "name", "slurm"})


class UndeclaredSection(RuntimeError):
    """A method (or one of its stages) read a config section it does not declare."""


def covers(allowed: Iterable[str], path: str) -> bool:
    """Whether the declared paths ``allowed`` include ``path`` (itself or a section above it)."""
    return any(path == a or path.startswith(a + ".") for a in allowed)


class Guarded:
    """A read-only view of a config (or a part of one) that lets through only the declared paths."""

    __slots__ = ("_raw", "_allowed", "_owner", "_prefix")

    def __init__(self, raw: Any, allowed: Iterable[str], owner: str, prefix: str = ""):
        object.__setattr__(self, "_raw", raw)
        object.__setattr__(self, "_allowed", frozenset(allowed))
        object.__setattr__(self, "_owner", owner)
        object.__setattr__(self, "_prefix", prefix)

    def __getattr__(self, name: str) -> Any:
        path = self._prefix + name
        value = getattr(self._raw, name)
        if name.startswith("__") or (not self._prefix and name in ALWAYS) or covers(self._allowed, path):
            return value
        if any(a.startswith(path + ".") for a in self._allowed):
            return Guarded(value, self._allowed, self._owner, path + ".")
        raise UndeclaredSection(
            f"{self._owner} reads config '{path}' but does not declare it (declared: "
            f"{', '.join(sorted(self._allowed)) or 'nothing'}); add it to the SECTIONS of the method (or the "
            f"sections of the stage), so that the run id and the cache keys change with it")

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"the config is read-only inside a run ({self._owner} set '{self._prefix}{name}')")

    def __repr__(self) -> str:
        return f"Guarded({self._owner}: {', '.join(sorted(self._allowed))})"


def raw(cfg: Any) -> Any:
    """The config under a ``Guarded`` view (for hashing the identities it declares)."""
    return object.__getattribute__(cfg, "_raw") if isinstance(cfg, Guarded) else cfg


def narrowed(cfg: Any, allowed: Iterable[str], owner: str) -> Any:
    """A view of ``cfg`` (guarded or not) that lets through only ``allowed``."""
    return Guarded(raw(cfg), allowed, owner)
