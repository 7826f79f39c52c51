"""Pruning at initialisation (baselines/pai.py): the ProsPr meta-gradient against finite
differences, SNIP, the untouched initial network, EPSD's losses, and the nine SD grid methods end
to end on the tiny config."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from baselines import pai
from baselines import selfdistill as sd
from bench import registry
from bench.config import Config, from_dict
from bench.grid import expand_grid
from bench.data import load_dataset
from bench.masks import Masks
from bench.models import build_model
from bench.runner import run_grid
from bench.store import load_runs

from conftest import quiet
from tiny import TINY

SD_METHODS = ["cskd", "pskd", "dlb", "cskd-simple", "cskd-epsd", "pskd-simple", "pskd-epsd", "dlb-simple", "dlb-epsd"]


def test_prospr_meta_gradient_matches_finite_differences():
    """d(loss after 3 unrolled SGD steps)/d(mask) on a two-layer network, in float64, against
    central differences for every mask entry (first-order shortcuts miss the second-order terms)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).double()
    x, y = torch.randn(8, 4, dtype=torch.float64), torch.randint(0, 3, (8,))

    def step_loss(forward):
        return F.cross_entropy(forward(x), y)

    steps, lr = 3, 0.5
    got = pai.meta_gradient(net, "conv+linear", step_loss, steps, lr)
    names = ["0.weight", "2.weight"]
    eps = 1e-6
    for name, g in zip(names, got):
        fd = torch.zeros_like(g)
        for i in range(g.numel()):
            vals = []
            for sign in (1, -1):
                masks = {n: torch.ones_like(p) for n, p in net.named_parameters() if n in names}
                masks[name].view(-1)[i] += sign * eps
                with torch.enable_grad():
                    vals.append(pai.unrolled_loss(net, masks, step_loss, steps, lr).item())
            fd.view(-1)[i] = (vals[0] - vals[1]) / (2 * eps)
        assert torch.allclose(g, fd, rtol=1e-5, atol=1e-9), name
    # The unrolled steps matter: the meta-gradient is not the gradient at initialisation.
    at_init = pai.meta_gradient(net, "conv+linear", step_loss, 0, lr)
    assert not torch.allclose(got[0], at_init[0], rtol=1e-2)


@pytest.fixture(scope="module")
def tiny():
    cfg = from_dict(Config, TINY)
    data = load_dataset(cfg.dataset, "/nonexistent", "cpu")
    batch = next(data.train_batches(32, cfg.dataset.augment, torch.Generator().manual_seed(0)))
    return cfg, data, batch


def test_snip_is_abs_weight_times_gradient_at_init(tiny):
    _, data, batch = tiny
    torch.manual_seed(0)
    model = build_model("resnet_small", data.num_classes)
    scores = pai.meta_scores(model, "conv+linear", pai.cross_entropy_loss(batch), 0, 0.1)
    F.cross_entropy(model.train()(batch.x), batch.y).backward()
    params = Masks(model, "conv+linear").params
    assert len(scores) == len(params)
    for s, p in zip(scores, params):
        assert torch.allclose(s, (p.detach() * p.grad).abs(), rtol=1e-5, atol=1e-10)


def _scoring_losses(cfg, data, batch):
    """{name: a fresh step loss}: Simple's cross-entropy and each SD method's EPSD loss."""
    gen = torch.Generator().manual_seed(1)
    aug = cfg.dataset.augment
    return {"simple": lambda: pai.cross_entropy_loss(batch),
            "cskd": lambda: sd.CSKD(data, aug, cfg.cskd, 0).scoring_loss(batch, gen),
            "pskd": lambda: sd.PSKD(data, cfg.pskd).scoring_loss(batch, gen, alpha=0.8),
            "dlb": lambda: sd.DLB(data, aug, cfg.dlb, 0).scoring_loss(batch, gen)}


def test_scoring_leaves_the_initial_network_untouched_and_epsd_differs_from_simple(tiny):
    cfg, data, batch = tiny
    torch.manual_seed(0)
    model = build_model("resnet_small", data.num_classes)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    scores = {}
    for name, make in _scoring_losses(cfg, data, batch).items():
        scores[name] = torch.cat([s.flatten() for s in pai.meta_scores(model, "conv+linear", make(), 3, 0.1)])
        after = model.state_dict()
        assert all(torch.equal(before[k], after[k]) for k in before), name
    for name in ("cskd", "pskd", "dlb"):
        rel = (scores[name] - scores["simple"]).abs().sum() / scores["simple"].abs().sum()
        assert rel > 1e-3, name
    # Without the copy the same computation would have moved BatchNorm's running statistics.
    pai.meta_gradient(model, "conv+linear", pai.cross_entropy_loss(batch), 3, 0.1)
    assert not torch.equal(before["bn1.running_mean"], model.state_dict()["bn1.running_mean"])


def test_epsd_step_losses_follow_their_inner_step_state(tiny):
    """Step 0 of PS-KD's and DLB's scoring losses is plain CE; later steps distil from the
    previous step's (detached) predictions. CS-KD's partners stay the same for every step."""
    cfg, data, batch = tiny
    torch.manual_seed(0)
    model = build_model("resnet_small", data.num_classes).train()
    losses = _scoring_losses(cfg, data, batch)
    with torch.no_grad():
        ce = F.cross_entropy(model(batch.x), batch.y).item()
        for name in ("pskd", "dlb"):
            step = losses[name]()
            assert step(model).item() == pytest.approx(ce, rel=1e-5), name
            assert step(model).item() != pytest.approx(ce, rel=1e-3), name
        step = losses["cskd"]()
        assert step(model).item() == pytest.approx(step(model).item(), rel=1e-6)


def test_pskd_alpha_schedule_switch(tiny):
    cfg, data, _ = tiny
    from bench.context import Artifacts, RunContext
    for mode, want in (("alpha_T", 0.8), ("schedule", 0.8 / TINY["retrain"]["epochs"])):
        c = from_dict(Config, {**TINY, "epsd": {"pskd_alpha": mode}})
        ctx = RunContext(c, data, torch.device("cpu"), Artifacts("/nonexistent"), quiet)
        assert pai.pskd_alpha(ctx) == pytest.approx(want)


def test_budget_and_scoring_switches_enter_the_run_identity():
    base = {**TINY, "grid": {"methods": ["cskd-simple", "cskd"], "sparsities": [0.9], "seeds": [0]}}

    def ids(**extra):
        return {r.method.name: r.run_id for r in expand_grid(from_dict(Config, {**base, **extra}), "cpu")}

    plain = ids()
    official = ids(budget={"basis": "official"})
    assert all(official[m] != plain[m] for m in plain)
    protocol = ids(sd={"protocol": "official"})
    assert all(protocol[m] != plain[m] and protocol[m] != official[m] for m in plain)
    snip = ids(pai={"criterion": "snip"})
    assert snip["cskd-simple"] != plain["cskd-simple"] and snip["cskd"] == plain["cskd"]


@pytest.mark.slow
def test_all_nine_sd_methods_run_hit_their_sparsity_and_keep_pruned_weights_zero(tmp_path):
    cfg = from_dict(Config, {**TINY, "pai": {"batch_size": 32},
                             "grid": {"methods": SD_METHODS, "sparsities": [0.9], "seeds": [0]}})
    counts = run_grid(cfg, tmp_path, tmp_path, log=quiet)
    recs = {r["method_name"]: r for r in load_runs(tmp_path)}
    assert counts["ok"] == 9, {m: r.get("error") for m, r in recs.items() if r["status"] != "ok"}
    for name, r in recs.items():
        assert r["extra"]["budget_basis"] == "retrain-matched" and r["history"][0]["epoch"] == 1
        if name in ("cskd", "pskd", "dlb"):
            assert r["sparsity_prunable"] == 0 and r["phases"]["train"]["group"] == "pretrain"
            continue
        # The runner fails a run whose mask misses the target or whose masked weights revived;
        # check the record anyway: exactly round(0.9 * N) zeros, all of them in the convs (the grid's
        # set: the head stays dense, as every other row's).
        assert r["prunable_set"] == "conv" and r["sparsity_on_target"] is True
        assert r["layer_density"]["linear.weight"] == 1.0
        assert round(r["sparsity"]["overall"] * r["overall_weights"]) == round(0.9 * r["overall_weights"])
        assert r["phases"]["score"]["group"] == "score+prune" and r["phases"]["train"]["group"] == "retrain"
        assert r["extra"]["pai_scoring"] == ("EPSD (reimpl.)" if name.endswith("epsd") else "Simple")


def test_presets_run_the_sd_rows_at_equal_budgets_and_label_the_other_protocols():
    from bench.config import load_config

    for preset in ("cifar10-paper", "cifar100-paper", "tinyimagenet-paper", "cifar10-fast", "cifar10-cpu", "smoke"):
        specs = [s for s in expand_grid(load_config(preset), "cpu") if s.method.name in SD_METHODS]
        assert specs and all(s.config.budget.basis == "equal" and s.config.sd.protocol == "harness"
                             and s.method.display == s.method.name for s in specs), preset
    # The other protocol and the retrain-matched basis in one grid: their own labels, their own runs.
    cfg = from_dict(Config, {**TINY, "budget": {"basis": "equal"},
                             "grid": {"methods": ["cskd-simple", {"name": "cskd-simple", "set": {"sd.protocol": "official"}},
                                                  {"name": "cskd-simple", "set": {"budget.basis": "retrain-matched"}}],
                                      "sparsities": [0.9], "seeds": [0]}})
    specs = expand_grid(cfg, "cpu")
    assert sorted(s.method.display for s in specs) == ["cskd-simple", "cskd-simple-matched", "cskd-simple-official"]
    assert len({s.run_id for s in specs}) == 3
