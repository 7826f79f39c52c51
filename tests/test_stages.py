"""Stage identity (bench/stages.py): derived from the declared config parts, never from hand-listed fields."""
import dataclasses

import pytest
import torch

from baselines import colt, egp
from bench import context
from bench.config import Config, from_dict
from bench.context import Artifacts, RunContext
from bench.data import load_dataset
from bench.methods import magnitude_ft, tgp
from bench.stages import in_stages, part

from tiny import TINY

# Every stage the code declares: (kind, sections, version).
DECLARED = [("dense", context.DENSE_SECTIONS, context.CONTEXT_VERSION),
            ("teachers", context.TEACHER_SECTIONS, context.CONTEXT_VERSION),
            ("tgp-finetune", tgp.finetune_sections(True), tgp.VERSION),
            ("ce-finetune", tgp.finetune_sections(False), magnitude_ft.CE_FINETUNE_VERSION),
            ("colt-round", colt.CHAIN, colt.VERSION),
            ("egp-dense", egp.DENSE, egp.VERSION),
            ("egp-round", egp.CHAIN, egp.VERSION)]


def changed(value):
    """A different value of the same kind (validity does not matter: only the key is computed)."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if isinstance(value, str):
        return value + "-x"
    if isinstance(value, list):
        return value + [1]
    if value is None:
        return 7
    raise TypeError(f"no change defined for {value!r}")


def leaves(obj, path):
    """(dotted path, parent, field) of every leaf field under ``obj``, marked ones included."""
    if not dataclasses.is_dataclass(obj):
        yield path, None, None
        return
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            yield from leaves(value, f"{path}.{f.name}")
        else:
            yield f"{path}.{f.name}", obj, f


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    cfg = from_dict(Config, TINY)
    data = load_dataset(cfg.dataset, tmp_path_factory.mktemp("d"), "cpu")
    return RunContext(cfg, data, torch.device("cpu"), Artifacts("/nonexistent"), lambda _: None)


def key(ctx, cfg, kind, sections, version, **extra):
    from bench.stages import stage_ident

    return ctx.stage_key(kind, stage_ident(cfg, sections, version, **extra))


@pytest.mark.parametrize("kind,sections,version", DECLARED, ids=[d[0] for d in DECLARED])
def test_every_field_of_a_declared_section_changes_the_stage_key(ctx, kind, sections, version):
    base = key(ctx, ctx.cfg, kind, sections, version)
    assert key(ctx, ctx.cfg, kind, sections, version + 1) != base          # the version is always in it
    assert key(ctx, ctx.cfg, kind, sections, version, round=3) != base
    checked = 0
    for path in sections:
        obj, _ = part(ctx.cfg, path)
        fields = list(leaves(obj, path)) if dataclasses.is_dataclass(obj) else [(path, None, None)]
        for leaf, parent, f in fields:
            cfg = _with(ctx.cfg, leaf)
            moved = key(ctx, cfg, kind, sections, version) != base
            assert moved == (f is None or in_stages(f)), f"{kind}: {leaf} {'not ' if not moved else ''}in the key"
            checked += 1
    assert checked >= len(sections)


def _with(cfg, dotted):
    """A deep copy of ``cfg`` with the field at ``dotted`` changed."""
    import copy

    cfg = copy.deepcopy(cfg)
    *parents, name = dotted.split(".")
    if not parents:                          # a top-level value (seed)
        setattr(cfg, name, changed(getattr(cfg, name)))
        return cfg
    obj = cfg
    for p in parents:
        obj = getattr(obj, p)
    setattr(obj, name, changed(getattr(obj, name)))
    return cfg


def test_an_undeclared_section_leaves_the_key_alone(ctx):
    sections = tgp.finetune_sections(False)
    base = key(ctx, ctx.cfg, "ce-finetune", sections, 1)
    for dotted in ("retrain.epochs", "retrain.lr", "prune.sparsity", "teacher.arch", "kd.alpha", "colt.rate",
                   "runtime.eval_batch_size"):
        assert key(ctx, _with(ctx.cfg, dotted), "ce-finetune", sections, 1) == base, dotted


def test_stopping_rules_stay_out_of_the_round_keys(ctx):
    # Marked fields (NOT_IN_STAGES) are exactly the chains' stopping rules.
    marked = {f"{s}.{f.name}" for s in ("colt", "egp") for f in dataclasses.fields(getattr(ctx.cfg, s))
              if not in_stages(f)}
    assert marked == {"colt.max_rounds", "colt.exact_final_round", "egp.max_iterations", "egp.exact_final_round"}


def test_a_stage_must_declare_its_sections(ctx):
    with pytest.raises(ValueError, match="declare"):
        key(ctx, ctx.cfg, "x", (), 1)
