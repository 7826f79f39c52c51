"""Config validation, overrides, grid expansion and pinned run ids."""
import pytest

from bench import registry
from bench.config import Config, ConfigError, from_dict, load_config
from bench.grid import expand_grid

# A config written out here (not a shipped preset) so the pins only move when the schema,
# a default, or the identity rule changes, which must be a deliberate act.
PINNED = {
    "name": "pin",
    "seed": 7,
    "dataset": {"name": "synthetic"},
    "model": {"arch": "resnet_small"},
    "grid": {"methods": ["dense", "magnitude", "tgp", "tgp-kd"], "sparsities": [0.5, 0.985], "seeds": [7]},
}
# Moved once, deliberately: the target's measure (then grid.sparsity_measure, now prune.measure) entered every pruning run's
# identity (a target of 0.5 overall and 0.5 of the conv weights are different networks), and the
# teacher section gained `data` (run or full training split), in the identity of the teacher's users.
PINNED_IDS = {
    ('dense', 0.0): 'c585cd1a02539ed6',
    ('magnitude', 0.5): '06b5e6c44074a051',
    ('magnitude', 0.985): '7cb36601ed314d6f',
    ('tgp', 0.5): '5d74ce71d00ea1e6',        # the controls pair with these: they must not move
    ('tgp', 0.985): 'bdd85fea6de42634',
    ('tgp-kd', 0.5): '020cf1fb3595d5f6',
    ('tgp-kd', 0.985): 'e67e646ef67e49f1',
}


def grid_ids(data, dev="cpu"):
    cfg = from_dict(Config, data)
    return {(r.method.display, r.sparsity): r.run_id for r in expand_grid(cfg, dev)}


def test_pinned_run_ids():
    assert grid_ids(PINNED) == PINNED_IDS


def test_run_id_ignores_cosmetic_fields_and_unused_sections():
    base = grid_ids(PINNED)
    renamed = dict(PINNED, name="other name", runtime={"device": "cpu", "eval_batch_size": 7})
    assert grid_ids(renamed) == base
    # The KD section does not touch dense or magnitude runs, only the proposed method.
    kd = dict(PINNED, kd={"temperature": 5.0})
    changed = grid_ids(kd)
    assert changed[("dense", 0.0)] == base[("dense", 0.0)]
    assert changed[("magnitude", 0.5)] == base[("magnitude", 0.5)]
    assert changed[("tgp-kd", 0.5)] != base[("tgp-kd", 0.5)]


@pytest.mark.slow
def test_grid_expansion_counts_and_dense_once_per_seed():
    cfg = load_config("smoke")
    runs = expand_grid(cfg)
    n_seeds, n_sp = len(cfg.grid.seeds), len(cfg.grid.sparsities)
    pruning = sum(registry.get(m.name).PRUNES for m in cfg.grid.methods)
    assert len(runs) == n_seeds * (len(cfg.grid.methods) - pruning) + n_seeds * n_sp * pruning
    assert len({r.run_id for r in runs}) == len(runs)
    assert all(r.sparsity == 0 for r in runs if r.method.name == "dense")


def test_method_entry_with_label_and_overrides():
    data = dict(PINNED, grid={"methods": ["tgp", {"name": "tgp", "label": "tgp-beta0.9", "set": {"tgp.beta": 0.9}}],
                              "sparsities": [0.9], "seeds": [0]})
    runs = expand_grid(from_dict(Config, data))
    by_label = {r.method.display: r for r in runs}
    assert by_label["tgp-beta0.9"].config.tgp.beta == 0.9
    assert by_label["tgp"].config.tgp.beta == 0.99
    assert by_label["tgp"].run_id != by_label["tgp-beta0.9"].run_id


@pytest.mark.parametrize("override, fragment", [
    ("retrain.epochz=3", "unknown config key 'retrain.epochz'"),
    ("retrain.epochs=0", "'retrain.epochs' has value 0"),
    ("prune.sparsity=1.0", "'prune.sparsity' has value 1.0; allowed: a number in [0, 1)"),
    ("prune.sparsity=-0.1", "'prune.sparsity'"),
    ("retrain.lr=fast", "'retrain.lr' has value 'fast'; allowed: a number"),
    ("retrain.epochs=2.5", "'retrain.epochs' has value 2.5; allowed: an integer"),
    ("model.arch=vgg99", "'model.arch' has value 'vgg99'; allowed: one of"),
    ("grid.sparsities=[0.5, 1.2]", "'grid.sparsities'"),
    ("grid.methods=[dense, nosuchmethod]", "unknown method 'nosuchmethod'"),
    ("kd.alpha=1.5", "'kd.alpha'"),
    ("retrain", "not of the form key.path=value"),
])
def test_bad_values_name_key_value_and_allowed(override, fragment):
    with pytest.raises(ConfigError) as e:
        cfg = load_config("smoke", [override])
        expand_grid(cfg)
    assert fragment in str(e.value)


def test_unknown_top_level_key_in_yaml(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("dataset: {name: synthetic}\ntrian: {epochs: 3}\n")
    with pytest.raises(ConfigError, match="unknown config key 'trian'; allowed keys: name, seed, dataset"):
        load_config(p)


def test_yaml_is_read_safely(tmp_path):
    p = tmp_path / "evil.yaml"
    p.write_text("name: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(p)


def test_missing_config_file_lists_presets():
    with pytest.raises(ConfigError, match="shipped presets: .*smoke"):
        load_config("no-such-config")


@pytest.mark.slow
def test_overrides_apply_and_presets_load():
    cfg = load_config("cifar10-paper", ["retrain.epochs=3", "kd.temperature=4"])
    assert cfg.retrain.epochs == 3 and cfg.kd.temperature == 4.0
    for name in ("smoke", "cifar10-fast", "cifar10-paper", "cifar100-fast", "cifar100-paper",
                 "tinyimagenet-fast", "tinyimagenet-paper"):
        assert expand_grid(load_config(name))
    assert load_config("tinyimagenet-paper").kd.temperature == 5.0


def test_config_docs_match_the_code():
    """docs/config.md lists every section and key from the dataclasses; regenerate it with
    python -m bench config --docs docs/config.md."""
    from pathlib import Path

    from bench.configdoc import generated_block, render

    text = (Path(__file__).resolve().parents[1] / "docs" / "config.md").read_text()
    assert generated_block(text) == render(), "docs/config.md is stale: python -m bench config --docs docs/config.md"


def test_method_owned_sections_are_validated_overridable_and_hashed():
    cfg = load_config("smoke", ["tgp.beta=0.9"])
    assert cfg.tgp.beta == 0.9
    with pytest.raises(ConfigError, match="'tgp.beta' has value 1.5"):
        load_config("smoke", ["tgp.beta=1.5"])
    with pytest.raises(ConfigError, match="unknown config key 'tgp.betta'"):
        load_config("smoke", ["tgp.betta=0.5"])


@pytest.mark.parametrize("preset", ["smoke", "smoke-real"])
def test_the_smoke_presets_run_every_registered_method(preset):
    """CI's end-to-end check covers every method: a new method file must join the smoke grids."""
    from bench import registry

    cfg = load_config(preset)
    assert {registry.variants().get(m.name, (m.name,))[0] for m in cfg.grid.methods} == set(registry.methods())


def test_options_added_later_keep_every_id_at_their_default_and_change_it_when_set():
    """tgp.accumulate, kd.gamma_logits and kd.gamma_value (ADDED_LATER): at their defaults the run ids and
    the fine-tune's stage key are the pinned ones; set, they change the proposed method's run id."""
    from bench.methods.tgp import finetune_sections
    from bench.stages import stage_ident
    from bench.grid import hash_identity

    explicit = dict(PINNED, tgp={**PINNED.get("tgp", {}), "accumulate": "ema"},
                    kd={**PINNED.get("kd", {}), "gamma_logits": "raw", "gamma_value": 0.5})
    assert grid_ids(explicit) == PINNED_IDS
    base_key = hash_identity(stage_ident(from_dict(Config, PINNED), finetune_sections(True), 1))
    for section, key, value in (("tgp", "accumulate", "sum"), ("kd", "gamma_logits", "as-used"),
                                ("kd", "gamma_value", 0.3)):
        data = dict(PINNED, **{section: {**PINNED.get(section, {}), key: value}})
        ids = grid_ids(data)
        assert ids[("tgp-kd", 0.5)] != PINNED_IDS[("tgp-kd", 0.5)], key
        assert ids[("magnitude", 0.5)] == PINNED_IDS[("magnitude", 0.5)], key
        assert hash_identity(stage_ident(from_dict(Config, data), finetune_sections(True), 1)) != base_key, key
