"""gmp (bench/methods/gmp.py): gradual magnitude pruning, written with the engine's hooks only."""
import pytest
import torch

from bench.config import Config, from_dict
from bench.methods import gmp
from bench.runner import run_grid
from bench.store import load_runs

from tiny import TINY


def quiet(_):
    pass


def test_the_schedule_is_zhu_and_guptas_cubic():
    cfg = gmp.GMPConfig(begin=0.0, end=0.5, every_steps=10)
    steps = gmp.updates(cfg, 100)
    assert steps == [1, 11, 21, 31, 41]
    shares = [gmp.fraction(t, steps, 0.0, 0.9) for t in steps]
    assert shares[0] == 0.0 and shares[-1] == 1.0 and shares == sorted(shares)
    # s_t = s_f + (s_i - s_f)(1 - (t - t0)/(n dt))^3, here at t = t0 + n dt / 2
    assert gmp.fraction(21, steps, 0.2, 0.8) == pytest.approx((0.8 + (0.2 - 0.8) * 0.5 ** 3) / 0.8)
    assert gmp.updates(gmp.GMPConfig(begin=0.5, end=0.5), 8) == [4]        # one update: straight to s_f


@pytest.mark.parametrize("scope", ["global", "layerwise"])
def test_gmp_lands_on_target_and_pruned_weights_stay_zero(tmp_path, monkeypatch, scope):
    seen = []
    after = gmp.Schedule.after_step

    def spy(self, loop, step):                  # after every step: pruned weights are zero
        after(self, loop, step)
        seen.append(all(bool((p[m == 0] == 0).all()) for p, m in zip(self.masks.params, self.masks.masks)))

    monkeypatch.setattr(gmp.Schedule, "after_step", spy)
    data = {**TINY, "retrain": {**TINY["retrain"], "epochs": 2}, "gmp": {"every_steps": 2, "scope": scope},
            "grid": {"methods": ["gmp"], "sparsities": [0.5, 0.9], "seeds": [0]}}
    assert run_grid(from_dict(Config, data), tmp_path, tmp_path, log=quiet)["ok"] == 2
    assert seen and all(seen)
    for r in load_runs(tmp_path):
        assert r["status"] == "ok" and r["sparsity_on_target"], r["sparsity_realised"]
        assert abs(r["sparsity_realised"] - r["target_sparsity"]) <= 0.0005
        assert len(r["extra"]["gmp_updates"]) >= 2 and r["phases"]["retrain"]["group"] == "retrain"
        assert r["budget"]["phases"]["pretrain"]["reused"] in (True, False)


def test_gmp_from_init_trains_only_the_pretrain_recipe(tmp_path):
    data = {**TINY, "gmp": {"start": "init", "every_steps": 3},
            "grid": {"methods": ["gmp"], "sparsities": [0.9], "seeds": [0]}}
    assert run_grid(from_dict(Config, data), tmp_path, tmp_path, log=quiet)["ok"] == 1
    (r,) = load_runs(tmp_path)
    assert r["sparsity_on_target"] and set(r["budget"]["phases"]) == {"pretrain"}


def test_every_hook_runs_in_order_with_the_call_step(tmp_path):
    """A method's callback (callbacks.Callback, the loop's own protocol): epoch_start, then per step
    before/after forward, after backward, after step (``step`` counts across epochs), then epoch_end with
    the epoch's history row, each given the loop first."""
    from bench.context import Artifacts, RunContext
    from bench.data import load_dataset

    cfg = from_dict(Config, TINY)
    data = load_dataset(cfg.dataset, tmp_path, "cpu")
    ctx = RunContext(cfg, data, torch.device("cpu"), Artifacts(tmp_path / "cache"), quiet)
    calls = []

    class Recorder:
        def epoch_start(self, loop, epoch):
            calls.append(("epoch_start", epoch))

        def before_forward(self, loop, step, batch):
            calls.append(("before_forward", step))

        def after_forward(self, loop, step, loss, logits):
            assert loss.requires_grad and logits.shape[0] == 64
            calls.append(("after_forward", step))

        def after_backward(self, loop, step):
            calls.append(("after_backward", step))

        def after_step(self, loop, step):
            calls.append(("after_step", step))

        def epoch_end(self, loop, epoch):
            calls.append(("epoch_end", epoch, loop.history[-1]["epoch"]))

    recipe = cfg.retrain.__class__(**{**cfg.retrain.__dict__, "epochs": 2})
    ctx.train(ctx.build(), recipe, phase="retrain", hooks=[Recorder()])
    per_epoch = data.steps_per_epoch(64, recipe.drop_last)
    want = []
    for e in range(2):
        want.append(("epoch_start", e))
        for s in range(e * per_epoch, (e + 1) * per_epoch):
            want += [(n, s) for n in ("before_forward", "after_forward", "after_backward", "after_step")]
        want.append(("epoch_end", e, e + 1))
    assert calls == want
