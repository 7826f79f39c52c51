"""A method reads only the config sections it declares (bench/declared.py): a read outside them would
leave the run id and the cache keys unchanged by a setting that changes the result."""
import types

import pytest

from bench import registry
from bench.config import Config, from_dict
from bench.declared import Guarded, UndeclaredSection
from bench.grid import declared_sections, expand_grid
from bench.runner import run_grid
from bench.store import load_runs

from conftest import quiet
from tiny import TINY


def test_the_view_lets_through_declared_paths_and_names_the_first_undeclared_one():
    cfg = from_dict(Config, TINY)
    view = Guarded(cfg, ("dataset", "tgp.finetune", "prune.layers"), "method 'x'")
    assert view.dataset is cfg.dataset and view.tgp.finetune is cfg.tgp.finetune
    assert view.prune.layers == cfg.prune.layers and view.runtime is cfg.runtime      # always readable
    for read in (lambda: view.kd, lambda: view.tgp.beta, lambda: view.prune.sparsity):
        with pytest.raises(UndeclaredSection, match="does not declare it"):
            read()
    with pytest.raises(UndeclaredSection, match=r"reads config 'kd'"):
        view.kd.temperature
    with pytest.raises(AttributeError, match="read-only"):
        view.seed = 3


def _sneaky(reads_kd: bool):
    """A method that prunes by magnitude and, when ``reads_kd``, also reads kd.temperature without
    declaring kd: a kd.temperature variant would get the same run id."""
    mag = registry.get("magnitude")

    def run(ctx):
        if reads_kd:
            ctx.extra["t"] = ctx.cfg.kd.temperature
        return mag.run(ctx)

    return types.SimpleNamespace(NAME="sneaky", VERSION=1, PRUNES=True, SECTIONS=("pretrain", "retrain"), run=run)


def _stage_sneaky():
    """A method that declares kd but whose cached stage reads it without listing it in the stage."""
    def run(ctx):
        def produce():
            return {"t": ctx.cfg.kd.temperature}, None
        ctx.stage("sneaky-stage", produce, (), sections=("dataset", "seed"), version=1)
        return registry.get("magnitude").run(ctx)

    return types.SimpleNamespace(NAME="stage-sneaky", VERSION=1, PRUNES=True, SECTIONS=("pretrain", "retrain", "kd"),
                                 run=run)


@pytest.mark.parametrize("make, fragment", [
    (lambda: _sneaky(True), "method 'sneaky' reads config 'kd'"),
    (_stage_sneaky, "stage 'sneaky-stage' reads config 'kd'"),
])
def test_a_method_that_reads_an_undeclared_section_fails_its_run_naming_it(tmp_path, monkeypatch, make, fragment):
    bad = make()
    monkeypatch.setitem(registry.methods(), bad.NAME, bad)
    cfg = from_dict(Config, {**TINY, "grid": {"methods": [bad.NAME], "sparsities": [0.5], "seeds": [0]}})
    counts = run_grid(cfg, tmp_path, tmp_path, log=quiet)
    assert counts["failed"] == 1 and counts["ok"] == 0
    (rec,) = load_runs(tmp_path)
    assert rec["status"] == "failed" and rec["error"].startswith("UndeclaredSection: ") and fragment in rec["error"]
    assert len(rec["error"].splitlines()) == 1


def test_a_stage_that_depends_on_an_undeclared_section_fails(tmp_path, monkeypatch):
    def run(ctx):
        ctx.stage("wide", lambda: ({}, None), (), sections=("dataset", "kd"), version=1)

    bad = types.SimpleNamespace(NAME="wide", VERSION=1, PRUNES=False, SECTIONS=("pretrain",), run=run)
    monkeypatch.setitem(registry.methods(), "wide", bad)
    cfg = from_dict(Config, {**TINY, "grid": {"methods": ["wide"], "seeds": [0]}})
    run_grid(cfg, tmp_path, tmp_path, log=quiet)
    (rec,) = load_runs(tmp_path)
    assert "its stage 'wide' depends on kd, which the method does not declare" in rec["error"]


def test_the_honest_version_of_the_method_runs():
    ok = _sneaky(False)
    assert declared_sections(ok) == ("dataset", "model", "seed", "pretrain", "retrain", "prune")


@pytest.mark.slow
def test_every_registered_method_reads_only_what_it_declares(tmp_path):
    """Every built-in method on the tiny grid under the guard (the smoke grid runs them all too)."""
    names = sorted(registry.methods())
    cfg = from_dict(Config, {**TINY, "pai": {"batch_size": 32}, "gmp": {"every_steps": 1},
                             "colt": {"rate": 0.5, "train": {**TINY["retrain"], "drop_last": False}},
                             "egp": {"dense": {**TINY["pretrain"], "epochs": 1}, "finetune": {**TINY["retrain"]},
                                     "rate": 0.5},
                             "grid": {"methods": names + ["egp-shortcut", {"name": "gmp", "label": "gmp-init",
                                                                           "set": {"gmp.start": "init"}}],
                                      "sparsities": [0.5], "seeds": [0]}})
    run_grid(cfg, tmp_path, tmp_path, log=quiet)
    bad = {r["method"]: r.get("error") for r in load_runs(tmp_path) if r["status"] not in ("ok", "unreachable")}
    assert not bad, bad
    assert len(load_runs(tmp_path)) == len(expand_grid(cfg, "cpu"))
