"""Every mistake a user can make gets one clear line: a non-zero exit, a message naming the problem,
no traceback, and nothing in the results folder changed."""
import hashlib
import os
import pickle
import shutil
from pathlib import Path

import pytest

from bench.cli import main

from conftest import run_ids
from tiny import TINY, write_config

GRID = {"methods": ["dense", "magnitude"], "sparsities": [0.5], "seeds": [0]}


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """A results folder with finished runs and cached checkpoints, made once."""
    root = tmp_path_factory.mktemp("template")
    cfg = write_config(root / "tiny.yaml", grid=GRID)
    assert main(["run", str(cfg), "--results", str(root / "results"), "--data-dir", str(root)]) == 0
    return root


@pytest.fixture
def env(template, tmp_path):
    shutil.copytree(template / "results", tmp_path / "results")
    cfg = write_config(tmp_path / "tiny.yaml", grid=GRID)
    return tmp_path, cfg


def snapshot(results: Path) -> dict:
    """Every file of the results folder but the per-cell logs (logs/): those record each attempt,
    one stopped by a damaged cache file too, with its traceback (docs/cluster.md)."""
    if not results.exists():
        return {}
    return {str(p.relative_to(results)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(results.rglob("*")) if p.is_file() and p.relative_to(results).parts[0] != "logs"}


def yaml_file(tmp, text):
    p = tmp / "bad.yaml"
    p.write_text(text)
    return str(p)


def cifar_dir(tmp, corrupt: bytes | None = None):
    d = tmp / "data" / "cifar-10-batches-py"
    d.mkdir(parents=True)
    for f in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]:
        (d / f).write_bytes(corrupt if corrupt is not None else pickle.dumps({"data": [], "labels": []}))
    return str(tmp / "data")


def tiny_dir(tmp):
    d = tmp / "data" / "tiny-imagenet-200"
    (d / "val").mkdir(parents=True)
    (d / "wnids.txt").write_text("n01\nn02\n")
    (d / "val" / "val_annotations.txt").write_text("")
    return str(tmp / "data")


def corrupt_cache(results: Path, kind: str) -> None:
    (pt,) = (results / "cache" / kind).glob("*.pt")
    pt.write_bytes(pt.read_bytes()[:-20] + b"x" * 20)


def run(tmp, cfg, *extra, data=None):
    return ["run", str(cfg), "--results", str(tmp / "results"), "--data-dir", str(data or tmp), *extra]


# (id, how to build the arguments from (tmp, cfg), what the message must contain)
CASES = [
    ("unknown-key-in-file", lambda t, c: run(t, yaml_file(t, "dataset: {name: synthetic}\ntrian: {epochs: 3}\n")),
     "unknown config key 'trian'"),
    ("unknown-key-in-set", lambda t, c: run(t, c, "--set", "retrain.epochz=3"), "unknown config key 'retrain.epochz'"),
    ("wrong-type", lambda t, c: run(t, c, "--set", "retrain.epochs=abc"), "'retrain.epochs' has value 'abc'"),
    ("float-for-int", lambda t, c: run(t, c, "--set", "retrain.epochs=2.5"), "allowed: an integer"),
    ("sparsity-out-of-range", lambda t, c: run(t, c, "--set", "prune.sparsity=1.5"), "'prune.sparsity' has value 1.5"),
    ("negative-lr", lambda t, c: run(t, c, "--set", "retrain.lr=-0.1"), "'retrain.lr' has value -0.1"),
    ("bad-literal", lambda t, c: run(t, c, "--set", "runtime.amp=fp8"), "'runtime.amp' has value 'fp8'"),
    ("yaml-syntax", lambda t, c: run(t, yaml_file(t, "dataset: {name: synthetic\n")), "is not valid YAML"),
    ("yaml-code-tag", lambda t, c: run(t, yaml_file(t, "name: !!python/object/apply:os.system ['echo x']\n")),
     "is not valid YAML"),
    ("yaml-not-a-mapping", lambda t, c: run(t, yaml_file(t, "- a\n- b\n")), "must hold a mapping"),
    ("config-missing", lambda t, c: run(t, t / "nope.yaml"), "not found"),
    ("config-is-a-folder", lambda t, c: run(t, t), "is not a file"),
    ("set-without-equals", lambda t, c: run(t, c, "--set", "retrain"), "not of the form key.path=value"),
    ("set-bad-yaml", lambda t, c: run(t, c, "--set", "grid.seeds=[0,"), "the value is not valid YAML"),
    ("set-into-a-scalar", lambda t, c: run(t, c, "--set", "seed.x=1"), "'seed' is not a section"),
    ("unknown-method", lambda t, c: run(t, c, "--set", "grid.methods=[dense, nosuch]"), "unknown method 'nosuch'"),
    ("duplicate-labels", lambda t, c: run(t, c, "--set", "grid.methods=[dense, dense]"), "lists the label"),
    ("unknown-dataset", lambda t, c: run(t, c, "--set", "dataset.name=mnist"), "'dataset.name' has value 'mnist'"),
    ("grid-sparsity", lambda t, c: run(t, c, "--set", "grid.sparsities=[0.5, 1.2]"), "'grid.sparsities'"),
    ("class-out-of-range", lambda t, c: run(t, c, "--set", "dataset.classes=[0, 99]"), "'dataset.classes'"),
    ("stale-after-too-short", lambda t, c: run(t, c, "--set", "runtime.stale_after_s=1"), "'runtime.stale_after_s'"),
    ("dataset-missing", lambda t, c: run(t, c, "--set", "dataset.name=cifar10", data=t / "empty"), "--download"),
    ("cifar-corrupt-pickle", lambda t, c: run(t, c, "--set", "dataset.name=cifar10",
                                              data=cifar_dir(t, b"not a pickle")), "cannot read CIFAR file"),
    ("tiny-bad-wnids", lambda t, c: run(t, c, "--set", "dataset.name=tinyimagenet", data=tiny_dir(t)),
     "should list 200 distinct wnids"),
    ("no-cuda", lambda t, c: run(t, c, "--set", "runtime.device=cuda"), "CUDA is not available"),
    ("bad-device", lambda t, c: run(t, c, "--set", "runtime.device=tpu"), "'runtime.device'"),
    ("results-is-a-file", lambda t, c: ["run", str(c), "--results", str(t / "tiny.yaml")], "is a file, not a folder"),
    ("corrupt-cached-model", lambda t, c: (corrupt_cache(t / "results", "dense"),
                                           run(t, c, "--set", "grid.sparsities=[0.7]"))[1], "sha256"),
    ("corrupt-epoch-checkpoint", lambda t, c: _epoch_case(t, c), "cannot be read"),
    ("table-unknown-dataset", lambda t, c: ["table", "--results", str(t / "results"), "--dataset", "imagenet"],
     "no run records for dataset 'imagenet'"),
    ("status-missing-folder", lambda t, c: ["status", "--results", str(t / "resluts")], "does not exist"),
    ("status-grid-missing-folder", lambda t, c: ["status", str(c), "--results", str(t / "resluts")], "does not exist"),
    ("collect-missing-folder", lambda t, c: ["collect", "--results", str(t / "resluts")], "does not exist"),
    ("estimate-unknown-device", lambda t, c: ["estimate", str(c), "--device", "H1000"],
     "not a device of the throughput table"),
    ("dry-run-zero-workers", lambda t, c: run(t, c, "--dry-run", "--workers", "0"), "--workers 0"),
    ("dry-run-results-is-a-file", lambda t, c: ["run", str(c), "--dry-run", "--results", str(c)],
     "is a file, not a folder"),
    ("table-tables-is-a-file", lambda t, c: ["table", "--results", str(t / "results"), "--tables", str(c)],
     "--tables"),
    ("plot-plots-is-a-file", lambda t, c: ["plot", "--results", str(t / "results"), "--plots", str(c)], "--plots"),
    ("claims-plots-is-a-file", lambda t, c: ["claims", "--results", str(t / "results"), "--plots", str(c)],
     "--plots"),
    ("report-plots-is-a-file", lambda t, c: ["report", "--results", str(t / "results"), "--plots", str(c)],
     "--plots"),
    ("table-results-is-a-file", lambda t, c: ["table", "--results", str(c)], "is a file, not a folder"),
    ("config-docs-target-is-a-folder", lambda t, c: ["config", "--docs", str(t)], "Is a directory"),
]


def _epoch_case(tmp, cfg):
    """A torn epoch checkpoint where the next magnitude run (sparsity 0.7) will look for it."""
    rid = run_ids(cfg, ["grid.sparsities=[0.7]"])["magnitude"]
    d = tmp / "results" / "cache" / "epochs" / f"run-{rid}"
    d.mkdir(parents=True)
    (d / "retrain.pt").write_bytes(b"torn")
    return run(tmp, cfg, "--set", "grid.sparsities=[0.7]")


@pytest.mark.parametrize("name, make_args, fragment", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_clear_line_and_changes_nothing(env, capsys, name, make_args, fragment):
    tmp, cfg = env
    args = make_args(tmp, cfg)
    before = snapshot(tmp / "results")
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2, (name, code, err)
    assert fragment in err, (name, err)
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 4, err
    assert snapshot(tmp / "results") == before


def test_debug_shows_the_traceback(env, capsys):
    tmp, cfg = env
    assert main(run(tmp, cfg, "--set", "runtime.device=cuda", "--debug")) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "CUDA is not available" in err


def test_dry_run_reads_the_data_files(tmp_path, capsys):
    cfg = write_config(tmp_path / "c.yaml")
    args = ["run", str(cfg), "--set", "dataset.name=cifar10", "--dry-run", "--results", str(tmp_path / "r"),
            "--data-dir", cifar_dir(tmp_path, b"garbage")]
    assert main(args) == 2
    assert "cannot read CIFAR file" in capsys.readouterr().err


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write to any folder, so an unwritable one cannot be made")
def test_unwritable_results_folder(env, capsys):
    tmp, cfg = env
    os.chmod(tmp / "results", 0o555)
    try:
        assert main(run(tmp, cfg)) == 2
        assert "is not writable" in capsys.readouterr().err
    finally:
        os.chmod(tmp / "results", 0o755)


def test_a_failed_start_creates_no_results_folder(tmp_path, capsys):
    cfg = write_config(tmp_path / "c.yaml")
    fresh = tmp_path / "fresh"
    assert main(["run", str(cfg), "--set", "dataset.name=cifar10", "--results", str(fresh),
                 "--data-dir", str(tmp_path / "empty")]) == 2
    assert not fresh.exists()


def test_a_corrupt_record_is_skipped_with_a_warning_and_a_run_moves_it_aside(env, capsys):
    tmp, cfg = env
    bad = next((tmp / "results" / "runs").glob("*/dense*.json"))
    bad.write_text('{"st')
    assert main(["status", "--results", str(tmp / "results")]) == 0
    out = capsys.readouterr()
    assert out.err.count(str(bad)) == 1 and "corrupt record" in out.err and "Traceback" not in out.err
    assert "corrupt record files" in out.out                       # counted in the summary
    assert main(["status", str(cfg), "--results", str(tmp / "results")]) == 0
    assert str(bad) in capsys.readouterr().err
    assert main(["table", "--results", str(tmp / "results")]) == 0
    assert "1 corrupt record file(s) skipped" in capsys.readouterr().err
    assert main(["collect", "--results", str(tmp / "results")]) == 0
    out = capsys.readouterr()
    assert "1 corrupt record file(s) skipped" in out.out
    assert bad.read_text() == '{"st'                                # reading never changes it
    # a run moves it aside (never deletes it) and runs its cell again
    assert main(run(tmp, cfg)) == 0
    (moved,) = (tmp / "results" / "quarantine").iterdir()
    assert moved.read_text() == '{"st' and moved.name.startswith(bad.name)
    assert bad.exists() and '"status": "ok"' in bad.read_text()
