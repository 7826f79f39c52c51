"""Run identity: what a record says about what produced it (device, precision, versions, teacher)."""
import pytest
import torch

from bench import registry
from bench.cli import main
from bench.config import Config, from_dict, load_config
from bench.grid import expand_grid
from bench.context import Artifacts, RunContext
from bench.data import load_dataset
from bench.runner import run_grid
from bench.store import load_runs

from conftest import quiet
from tiny import TINY, write_config


def ids(data, dev="cpu"):
    return {(r.method.display, r.sparsity, r.seed): r.run_id
            for r in expand_grid(from_dict(Config, data), dev)}


GRID = {**TINY, "grid": {"methods": ["dense", "magnitude", "tgp"], "sparsities": [0.5], "seeds": [0]}}


def test_effective_precision_and_device_type_enter_the_run_id():
    cpu = ids(GRID)
    assert ids({**GRID, "runtime": {"device": "cpu", "amp": "off"}}) == cpu       # off == auto on the CPU
    bf16 = ids({**GRID, "runtime": {"device": "cpu", "amp": "bf16"}})
    assert set(bf16.values()).isdisjoint(cpu.values())
    cuda = ids({**GRID, "runtime": {"device": "auto"}}, dev="cuda")             # auto -> bf16 on CUDA
    assert set(cuda.values()).isdisjoint(cpu.values())
    assert ids({**GRID, "runtime": {"device": "auto", "amp": "bf16"}}, dev="cuda") == cuda
    # Settings that do not change results stay out of the identity.
    assert ids({**GRID, "runtime": {"device": "cpu", "eval_batch_size": 3, "channels_last": "on"}}) == cpu


@pytest.mark.slow
def test_fp32_and_bf16_runs_get_different_checkpoints(tmp_path):
    keys = {}
    for amp in ("off", "bf16"):
        cfg = from_dict(Config, {**TINY, "runtime": {"device": "cpu", "amp": amp}})
        data = load_dataset(cfg.dataset, tmp_path, "cpu")
        ctx = RunContext(cfg, data, torch.device("cpu"), Artifacts(tmp_path / "cache"), quiet)
        ctx.dense_model()
        (used,) = ctx.ledger.artifacts_used
        assert not used["reused"] and used["device"] == "cpu" and used["harness_version"] >= 2
        keys[amp] = used["key"]
    assert keys["off"] != keys["bf16"]
    assert len(list((tmp_path / "cache" / "dense").glob("*.pt"))) == 2


def test_changing_a_method_version_changes_only_its_ids(monkeypatch):
    before = ids(GRID)
    monkeypatch.setattr(registry.get("magnitude"), "VERSION", 99)
    after = ids(GRID)
    for key, rid in before.items():
        assert (after[key] != rid) == (key[0] == "magnitude"), key


@pytest.mark.slow
def test_grid_seeds_share_one_teacher_and_bench_teacher_reports_it(tmp_path, capsys):
    data = {**TINY, "grid": {"methods": ["tgp"], "sparsities": [0.5], "seeds": [0, 1]}}
    assert run_grid(from_dict(Config, data), tmp_path, tmp_path, log=quiet)["ok"] == 2
    recs = load_runs(tmp_path)
    shas = {r["teacher"]["sha256"] for r in recs}
    assert len(shas) == 1
    assert len(list((tmp_path / "cache" / "teachers").glob("*.pt"))) == 1
    # Each record says where the reused teacher came from.
    for r in recs:
        kinds = {a["kind"]: a for a in r["artifacts"]}
        assert kinds["teachers"]["git_commit"] == r["provenance"]["git_commit"]
        assert r["phases"]["teacher"]["device"] == "cpu" and r["phases"]["teacher"]["group"] == "teacher"
    # `bench teacher` with a third run seed reports that same teacher without training one.
    cfg_path = write_config(tmp_path / "c.yaml", seed=5, grid=data["grid"])
    assert main(["teacher", str(cfg_path), "--results", str(tmp_path), "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "reused teachers checkpoint" in out and next(iter(shas))[:16] in out


def test_records_carry_versions_precision_and_every_sparsity_definition(tmp_path):
    run_grid(from_dict(Config, GRID), tmp_path, tmp_path, log=quiet)
    for r in load_runs(tmp_path):
        assert r["method_version"] == registry.get(r["method_name"]).VERSION
        assert r["precision"] == "fp32" and r["device_type"] == "cpu"
        assert r["identity"]["runtime"] == {"device_type": "cpu", "precision": "fp32", "deterministic": False}
        assert set(r["sparsity"]) == {"prunable", "conv", "overall", "conv+linear", "conv-noshortcut"}
        assert r["sparsity_on_target"] is True and r["sparsity_measure"] == "overall"
        for p in r["phases"].values():
            assert {"seconds", "reused", "device", "group"} <= set(p)


def test_dry_run_lists_stored_records_that_match_no_grid_cell(tmp_path, capsys):
    cfg_path = write_config(tmp_path / "c.yaml", grid={"methods": ["dense"], "seeds": [0]})
    args = ["run", str(cfg_path), "--results", str(tmp_path), "--data-dir", str(tmp_path)]
    assert main(args) == 0
    capsys.readouterr()
    assert main(args + ["--dry-run", "--verbose", "--set", "pretrain.epochs=2"]) == 0
    out = capsys.readouterr().out
    assert "1 runs on cpu: 0 done, 0 failed, 0 interrupted, 1 pending" in out
    assert "1 stored record(s)" in out and "dense__sp0__seed0__" in out


def test_plain_kd_is_hintons_formula_on_raw_logits():
    from bench.distill import KDConfig
    from bench.losses import Distillation

    torch.manual_seed(0)
    s, t = torch.randn(6, 5) * 3, torch.randn(6, 5) * 3
    obj = Distillation(torch.nn.Identity(), KDConfig(loss="kd", temperature=4.0))
    got = obj.kd_term(s, t)
    p_t = torch.softmax(t / 4, dim=1)
    expected = 16 * (p_t * (p_t.log() - torch.log_softmax(s / 4, dim=1))).sum(1).mean()
    assert torch.allclose(got, expected, atol=1e-6)
    normalised = Distillation(torch.nn.Identity(), KDConfig(loss="kd", temperature=4.0, normalize=True))
    assert not torch.allclose(normalised.kd_term(s, t), expected, atol=1e-3)
    assert KDConfig().normalize_logits is True and KDConfig(loss="kd").normalize_logits is False


def test_yaml_words_and_exponents_mean_what_a_user_means(tmp_path):
    cfg = load_config("smoke", ["runtime.amp=off", "pretrain.weight_decay=5e-4", "runtime.channels_last=on"])
    assert cfg.runtime.amp == "off" and cfg.pretrain.weight_decay == 5e-4 and cfg.runtime.channels_last == "on"
    p = tmp_path / "c.yaml"
    p.write_text("runtime: {amp: off, channels_last: on}\nretrain: {weight_decay: 1e-4, lr: 5e-2}\n")
    cfg = load_config(p)
    assert cfg.runtime.amp == "off" and cfg.retrain.weight_decay == 1e-4 and cfg.retrain.lr == 0.05
    with pytest.raises(Exception, match="'retrain.lr' has value 'fast'"):
        load_config(p, ["retrain.lr=fast"])
