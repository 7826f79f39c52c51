"""The controls that isolate what the teacher adds (bench/methods/{magnitude_ft,grad_ce,
random_layerwise,tgp_rewind,dense_kd,tgp_magnitude_alloc,magnitude_tgp_alloc}.py): each one's defining property, on the tiny config."""
import pytest
import torch

from bench import cli as bench_cli
from bench import registry
from bench.config import Config, from_dict
from bench.grid import expand_grid
from bench.context import Artifacts, RunContext
from bench.data import load_dataset
from bench.losses import CrossEntropy, Distillation
from bench.masks import sparsity_stats
from bench.models import build_model
from bench.runner import run_grid
from bench.store import load_runs

from conftest import quiet
from tiny import TINY


def spec_for(method, sparsity=0.9, seed=0):
    cfg = from_dict(Config, {**TINY, "grid": {"methods": [method], "sparsities": [sparsity], "seeds": [seed]}})
    return expand_grid(cfg, "cpu")[0]


class Trainings:
    """Spy on RunContext.train: every training phase with its recipe, objective, masks, the model's state
    when the phase starts, and the optimizer steps it took."""

    def __init__(self, monkeypatch):
        self.calls, self.current = [], None
        real_train = RunContext.train
        real_step = torch.optim.SGD.step

        def train(ctx, model, recipe, *, phase, **kw):
            self.calls.append({"phase": phase, "recipe": recipe, "objective": kw.get("objective"),
                               "masks": kw.get("masks"), "seed": kw.get("seed"), "steps": 0,
                               "state": {k: v.detach().clone() for k, v in model.state_dict().items()}})
            self.current = self.calls[-1]
            try:
                return real_train(ctx, model, recipe, phase=phase, **kw)
            finally:
                self.current["end"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
                self.current = None

        def step(opt, *a, **kw):
            if self.current is not None:
                self.current["steps"] += 1
            return real_step(opt, *a, **kw)

        monkeypatch.setattr(RunContext, "train", train)
        monkeypatch.setattr(torch.optim.SGD, "step", step)

    def phase(self, name):
        (call,) = [c for c in self.calls if c["phase"] == name]
        return call

    def clear(self):
        self.calls.clear()


def run_method(name, cache, sparsity=0.9, seed=0):
    spec = spec_for(name, sparsity, seed)
    data = load_dataset(spec.config.dataset, cache, "cpu")
    ctx = RunContext(spec.config, data, torch.device("cpu"), Artifacts(cache / "cache"), quiet)
    return ctx, registry.get(name).run(ctx)


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """A cache shared by the tests that run tgp (its teacher and fine-tune are made once)."""
    return tmp_path_factory.mktemp("shared")


def init_state(cfg):
    torch.manual_seed(cfg.seed)
    return build_model(cfg.model.arch, cfg.dataset.synthetic.num_classes).state_dict()


@pytest.mark.slow
def test_magnitude_ft_fine_tunes_like_tgp_without_the_teacher(tmp_path, monkeypatch):
    spy = Trainings(monkeypatch)
    run_method("tgp", tmp_path / "a")                # separate caches: both fine-tunes really train
    tgp_ft = spy.phase("finetune")
    spy.clear()
    _, out = run_method("magnitude-ft", tmp_path / "b")
    ce_ft = spy.phase("finetune")
    assert tgp_ft["steps"] == ce_ft["steps"] > 0
    assert tgp_ft["recipe"] == ce_ft["recipe"] == spec_for("tgp").config.tgp.finetune
    assert tgp_ft["seed"] == ce_ft["seed"]                      # same data order (both derive it from the phase)
    assert isinstance(tgp_ft["objective"], Distillation) and type(ce_ft["objective"]) is CrossEntropy
    # Both start from the same dense model (the same pre-training, made once in each cache).
    assert all(torch.equal(tgp_ft["state"][k], ce_ft["state"][k]) for k in tgp_ft["state"])
    # Global magnitude of the fine-tuned weights: every kept weight is at least as large as every pruned one.
    tuned = ce_ft["end"]
    kept = torch.cat([tuned[n][m > 0].abs() for n, m in zip(out.masks.names, out.masks.masks)])
    pruned = torch.cat([tuned[n][m == 0].abs() for n, m in zip(out.masks.names, out.masks.masks)])
    assert kept.min() >= pruned.max() and sparsity_stats(out.model)["sparsity_overall"] == pytest.approx(0.9, abs=1e-5)


def test_grad_ce_ranks_by_the_importance_of_the_shared_cross_entropy_fine_tune(tmp_path, monkeypatch):
    from bench.masks import Masks
    from bench.methods.magnitude_ft import ce_finetune

    spy = Trainings(monkeypatch)
    _, mag = run_method("magnitude-ft", tmp_path)
    assert [c["phase"] for c in spy.calls] == ["pretrain", "finetune", "retrain"]
    spy.clear()
    ctx, out = run_method("grad-ce", tmp_path)
    assert [c["phase"] for c in spy.calls] == ["retrain"]        # dense model and fine-tune reused
    model, scores = ce_finetune(ctx)                             # the cached student and its EMA importance
    expected = Masks(model)
    expected.prune_count(scores, ctx.target(expected, model).global_count(expected, scores))
    assert all(torch.equal(a, b) for a, b in zip(out.masks.masks, expected.masks))
    assert not all(torch.equal(a, b) for a, b in zip(out.masks.masks, mag.masks.masks))   # not magnitude


def test_random_layerwise_keeps_tgps_per_layer_counts_and_starting_network(shared, monkeypatch):
    spy = Trainings(monkeypatch)
    _, tgp_out = run_method("tgp", shared)
    tgp_start = spy.phase("retrain")["state"]
    spy.clear()
    ctx, out = run_method("random-layerwise", shared)
    start = spy.phase("retrain")["state"]
    assert [c["phase"] for c in spy.calls] == ["retrain"]       # tgp's fine-tuned student, from the cache
    counts = out.masks.pruned_per_layer()
    assert counts == tgp_out.masks.pruned_per_layer()
    assert sum(counts.values()) == round(0.9 * sparsity_stats(out.model)["overall_weights"])   # 90% overall
    assert len({n for n, k in counts.items() if k > 0}) > 1
    # Same per-layer counts, different weights: the choice inside each layer is not tgp's.
    same = sum(int((a == b).all()) for a, b in zip(out.masks.masks, tgp_out.masks.masks))
    assert same < len(out.masks.masks)
    # Both retrain the same fine-tuned student: where both masks keep a weight, it starts equal.
    for name, m_rand, m_tgp in zip(out.masks.names, out.masks.masks, tgp_out.masks.masks):
        both = (m_rand > 0) & (m_tgp > 0)
        assert torch.equal(start[name][both], tgp_start[name][both])
    for k in start:                                               # BN, linear: the student's, unpruned
        if k not in out.masks.names:
            assert torch.equal(start[k], tgp_start[k]), k
    assert ctx.extra["pairs_with"]["method"] == "tgp"


def _kept_by_rank(scores, counts, names):
    """Per tensor: True where a weight is among the (numel - pruned) highest scores (ties by position)."""
    out = []
    for name, s in zip(names, scores):
        flat = s.flatten()
        keep = torch.zeros_like(flat, dtype=torch.bool)
        order = torch.argsort(flat, descending=True, stable=True)
        keep[order[:flat.numel() - counts[name]]] = True
        out.append(keep.view_as(s))
    return out


@pytest.mark.parametrize("method", ["tgp-magnitude-alloc", "magnitude-tgp-alloc"])
def test_the_hybrids_swap_the_layer_allocation_and_the_choice_inside_layers(shared, monkeypatch, method):
    from bench.methods import tgp
    from bench.methods.random_layerwise import global_mask

    spy = Trainings(monkeypatch)
    _, tgp_out = run_method("tgp", shared)
    tgp_start = spy.phase("retrain")["state"]
    spy.clear()
    ctx, out = run_method(method, shared)
    assert [c["phase"] for c in spy.calls] == ["retrain"]       # tgp's fine-tuned student, from the cache
    start = spy.phase("retrain")["state"]                       # the same student: where both keep a weight,
    for name, m, m_tgp in zip(out.masks.names, out.masks.masks, tgp_out.masks.masks):   # it starts equal
        both = (m > 0) & (m_tgp > 0)
        assert torch.equal(start[name][both], tgp_start[name][both]), name
    model, scores, _ = tgp.teacher_guided_scores(ctx)
    magnitude = [p.detach().abs() for p in ctx.masks(model).params]
    magnitude_counts = global_mask(ctx, model, magnitude).pruned_per_layer()
    tgp_counts = tgp_out.masks.pruned_per_layer()
    assert magnitude_counts != tgp_counts                        # the two allocations differ on this student
    counts = out.masks.pruned_per_layer()
    inside = scores if method == "tgp-magnitude-alloc" else magnitude
    assert counts == (magnitude_counts if method == "tgp-magnitude-alloc" else tgp_counts)
    expected = _kept_by_rank(inside, counts, out.masks.names)
    assert all(torch.equal(m > 0, e) for m, e in zip(out.masks.masks, expected))
    assert sum(counts.values()) == round(0.9 * sparsity_stats(out.model)["overall_weights"])   # 90% overall
    assert ctx.extra["pairs_with"]["method"] == "tgp"


def test_tgp_rewind_is_tgps_mask_on_the_initial_weights(shared, monkeypatch):
    spy = Trainings(monkeypatch)
    _, tgp_out = run_method("tgp", shared)
    spy.clear()
    ctx, out = run_method("tgp-rewind", shared)
    cfg = ctx.cfg
    assert [(c["phase"], c["recipe"]) for c in spy.calls] == [("sparse-pretrain", cfg.pretrain),
                                                            ("retrain", cfg.retrain)]
    first = spy.phase("sparse-pretrain")
    assert first["steps"] > 0 and first["seed"] == ctx.seed_for("pretrain")   # the dense model's data order
    assert first["masks"] is spy.phase("retrain")["masks"] is out.masks
    assert [torch.equal(a, b) for a, b in zip(out.masks.masks, tgp_out.masks.masks)] == [True] * len(out.masks.masks)
    init, rewound = init_state(cfg), first["state"]
    for name, m in zip(out.masks.names, out.masks.masks):
        kept = m > 0
        assert torch.equal(rewound[name][kept], init[name][kept]), name     # unpruned: the initial values
        assert torch.count_nonzero(rewound[name][~kept]) == 0, name
    for k in init:
        if k not in out.masks.names:
            assert torch.equal(rewound[k], init[k]), k                        # BN, linear: rewound too


def test_dense_kd_trains_the_initial_student_with_the_joint_objective(tmp_path, monkeypatch):
    spy = Trainings(monkeypatch)
    ctx, out = run_method("dense-kd", tmp_path)
    cfg = ctx.cfg
    assert [c["phase"] for c in spy.calls] == ["teacher", "pretrain"]
    call = spy.phase("pretrain")
    obj = call["objective"]
    assert isinstance(obj, Distillation) and obj.kd == cfg.kd and 0 < obj.kd.alpha < 1
    assert obj.gamma == ctx.extra["kd_gamma"] and 0 < obj.gamma <= 1
    assert call["recipe"] == cfg.pretrain and call["masks"] is None and call["steps"] > 0
    init = init_state(cfg)
    assert all(torch.equal(call["state"][k], init[k]) for k in init)
    assert out.masks is None and ctx.extra["pairs_with"]["method"] == "dense"


@pytest.mark.slow
def test_controls_in_a_grid_pair_with_the_runs_they_control(tmp_path):
    """The five controls, tgp and dense in one tiny grid; each record names the run it pairs with, and
    `bench claims` renders on the result."""
    names = ["dense", "tgp", "magnitude-ft", "grad-ce", "random-layerwise", "tgp-rewind", "dense-kd"]
    cfg = from_dict(Config, {**TINY, "grid": {"methods": names, "sparsities": [0.9], "seeds": [0]}})
    assert {k: v for k, v in run_grid(cfg, tmp_path, tmp_path, log=quiet).items() if k in ("ok", "failed", "skipped")} == {"ok": 7, "failed": 0, "skipped": 0}
    recs = {r["method"]: r for r in load_runs(tmp_path)}
    for name in names[2:]:
        pair = recs[name]["extra"]["pairs_with"]
        partner = recs[pair["method"]]
        assert pair["run_id"] == partner["run_id"] and pair["seed"] == partner["seed"] == 0
        assert pair["target_sparsity"] == partner["target_sparsity"]
    assert recs["dense-kd"]["extra"]["pairs_with"]["method"] == "dense"
    assert bench_cli.main(["claims", "--results", str(tmp_path), "--plots", str(tmp_path / "plots")]) == 0
    md = (tmp_path / "tables" / "claims.md").read_text()
    assert "| harness-tgp-vs-magnitude-ft | synthetic |" in md and "inconclusive (n < 3)" in md
    assert (tmp_path / "plots" / "claims.png").is_file()
