"""What several test files share: a silent log, the repository root, the grid's run ids in-process,
and the real-data folder (../shared/data, kept beside the clone by the project's CI only)."""
from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MATERIALIZE = REPO.parent / "shared" / "data" / "materialize.py"
NO_REAL_DATA = (f"real-data test: needs {MATERIALIZE} (the project's CI keeps ../shared beside the clone; "
                "a clean clone has no real data, so this is skipped)")


def quiet(_):
    """A ``log`` callback that prints nothing."""


def run_ids(config, overrides=(), dev_type="cpu") -> dict[str, str]:
    """{method label: run id} of every cell of a config file, as ``bench run --dry-run`` lists them,
    without a subprocess (one id per label: the tests that use it have one sparsity and seed)."""
    from bench.config import load_config
    from bench.grid import expand_grid
    return {s.method.display: s.run_id for s in expand_grid(load_config(config, list(overrides)), dev_type)}


@pytest.fixture(scope="session")
def materialize() -> Path:
    """The script that writes real CIFAR / Tiny ImageNet slices; skips with the reason without it."""
    if not MATERIALIZE.is_file():
        pytest.skip(NO_REAL_DATA)
    return MATERIALIZE
