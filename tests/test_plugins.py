"""A method outside the package, registered with --plugin, runs beside the built-in methods and shows in
the tables; the file and the commands are the ones docs/adding-a-method.md gives. Plug-ins register into
the process-wide registry, so every command here runs in a fresh process."""
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tiny import write_config

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "adding-a-method.md"


def bench(*args, cwd):
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=cwd, capture_output=True, text=True,
                          env={"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})


def doc_blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", DOC.read_text(), re.S)


def doc_commands() -> list[list[str]]:
    """The documented `python -m bench ...` commands of the plug-in section, as argument lists."""
    lines = [ln for b in doc_blocks("bash") for ln in b.splitlines() if "--plugin" in ln or " table " in ln]
    return [shlex.split(ln)[3:] for ln in lines]


def test_every_built_in_module_registers_a_method_or_says_it_is_a_helper():
    import importlib
    import pkgutil

    from bench import registry

    by_module = {}
    for name in registry.methods():
        by_module.setdefault(registry.origin(name), []).append(name)
    assert sorted(by_module["baselines.selfdistill_rows"]) == sorted(
        f"{sd}{suffix}" for sd in ("cskd", "pskd", "dlb") for suffix in ("", "-simple", "-epsd"))
    for pkg in registry.BUILTIN_PACKAGES:
        for info in pkgutil.iter_modules(importlib.import_module(pkg).__path__):
            mod = importlib.import_module(f"{pkg}.{info.name}")
            assert by_module.get(mod.__name__) or mod.__doc__.startswith("Helper library"), mod.__name__
            assert not hasattr(mod, "NAME") or by_module[mod.__name__] == [mod.NAME]


@pytest.fixture
def plugin(tmp_path):
    (source,) = [b for b in doc_blocks("python") if b.startswith("# normmag.py")]
    path = tmp_path / "elsewhere" / "normmag.py"
    path.parent.mkdir()
    path.write_text(source)
    return path


def test_the_documented_plugin_runs_beside_the_built_in_methods(plugin, tmp_path):
    run, table = doc_commands()
    assert run[:2] == ["run", "smoke"] and table[0] == "table"
    # The documented command on the tiny grid (seconds, not the smoke preset's minutes).
    cfg = write_config(tmp_path / "tiny.yaml", grid={"methods": ["dense"], "sparsities": [0.5], "seeds": [0]})
    run = ["run", str(cfg), *run[2:]]
    run[run.index("--plugin") + 1] = str(plugin)
    results = tmp_path / run[run.index("--results") + 1]
    run[run.index("--results") + 1] = str(results)
    out = bench(*run, "--data-dir", str(tmp_path), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    records = [json.loads(p.read_text()) for p in results.glob("runs/*/*.json")]
    assert sorted(r["method"] for r in records) == ["dense", "magnitude", "normmag"]
    assert all(r["status"] == "ok" for r in records)
    (mine,) = [r for r in records if r["method"] == "normmag"]
    assert mine["identity"]["normmag"] == {"power": 1.0} and abs(mine["sparsity_realised"] - 0.5) <= 0.0005
    assert mine["provenance"]["plugins"][0]["path"] == str(plugin.resolve())
    assert str(plugin) in mine["provenance"]["argv"]

    out = bench(*table[:-1], str(results), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    text = "\n".join(p.read_text() for p in (results / "tables").glob("*.md"))
    assert "| target overall % | measured overall % | magnitude | normmag |" in text     # its accuracy column
    assert re.search(r"^\| 50\.00 \| 50\.00 \| [^|]+ \| \**\d+\.\d+\**? \|$", text, re.M), text
    assert "| cpu | normmag | 1 |" in text                                                 # its latency row


def test_the_plugin_section_is_a_config_section(plugin, tmp_path):
    out = bench("config", "smoke", "--plugin", str(plugin), "--set", "normmag.power=0.5", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "normmag:\n  power: 0.5\n" in out.stdout
    out = bench("config", "smoke", "--plugin", str(plugin), "--set", "normmag.power=-1", cwd=tmp_path)
    assert out.returncode == 2 and "'normmag.power' has value -1" in out.stderr


@pytest.mark.parametrize("source, fragment", [
    (None, "plug-in file '{path}' not found"),
    ("X = 1\n", "registers no method and no dataset"),
    ("def (:\n", "is not valid Python (line 1"),
    ("from bench.registry import register_method\n\n@register_method\nclass M:\n    NAME = 'magnitude'\n"
     "    VERSION, PRUNES, SECTIONS = 1, True, ()\n    run = staticmethod(lambda ctx: None)\n",
     "method name 'magnitude' from"),
    ("from dataclasses import dataclass\nfrom bench.registry import register_section\n\n"
     "@register_section('kd')\n@dataclass\nclass K:\n    x: int = 1\n", "config section 'kd'"),
])
def test_a_bad_plugin_file_is_one_line_and_exit_code_2(tmp_path, source, fragment):
    path = tmp_path / "mine.py"
    if source is not None:
        path.write_text(source)
    out = bench("estimate", "smoke", "--plugin", str(path), cwd=tmp_path)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.startswith("plug-in error: ") and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert fragment.format(path=path) in out.stderr


def test_a_dataset_from_a_plugin_file_runs_and_is_titled_in_the_table(tmp_path):
    """docs/adding-a-dataset.md's file, a few generated images in its layout, a small grid with --plugin:
    the records and the table name the dataset by its title and class count (the table command without
    the plug-in: the records carry them)."""
    from PIL import Image

    (source,) = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "adding-a-dataset.md").read_text(), re.S)
    plugin = tmp_path / "shapes.py"
    plugin.write_text(source)
    data = tmp_path / "data" / "shapes"
    for split, n in (("train", 20), ("test", 10)):
        for c, colour in enumerate(((220, 40, 40), (40, 200, 40), (40, 40, 220))):
            (data / split / f"class{c}").mkdir(parents=True)
            for i in range(n):
                im = Image.new("RGB", (16, 16), tuple(max(0, v - 7 * i) for v in colour))
                im.save(data / split / f"class{c}" / f"{i}.png")
    cfg = write_config(tmp_path / "tiny.yaml", dataset={"name": "shapes"}, runtime={"device": "cpu", "eval_batch_size": 64},
                       grid={"methods": ["dense", "magnitude"], "sparsities": [0.5], "seeds": [0]})
    out = bench("run", str(cfg), "--plugin", str(plugin), "--data-dir", str(tmp_path / "data"),
                "--results", str(tmp_path / "r"), cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr
    records = [json.loads(p.read_text()) for p in (tmp_path / "r").glob("runs/shapes/*.json")]
    assert len(records) == 2 and all(r["status"] == "ok" for r in records)
    assert records[0]["data"]["title"] == "Shapes (3 classes, generated)" and records[0]["data"]["num_classes"] == 3
    assert records[0]["data"]["official"] is False
    out = bench("table", "--results", str(tmp_path / "r"), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    md = (tmp_path / "r" / "tables" / "shapes.md").read_text()
    assert md.startswith("# Shapes (3 classes, generated)") and "60 train / 30 test images of 3 classes" in md
    # without the file, the dataset is unknown: one line naming the way in
    out = bench("run", str(cfg), "--data-dir", str(tmp_path / "data"), "--results", str(tmp_path / "r2"), cwd=tmp_path)
    assert out.returncode == 2 and "docs/adding-a-dataset.md" in out.stderr


def test_a_worker_carries_its_plugins_to_another_process(plugin, tmp_path):
    """--executor local/slurm pickle a Worker: the config goes as plain data with the plug-in files, and the
    other process loads them before it rebuilds the config."""
    dump = f"""
import pickle, sys
from bench import registry
from bench.cluster import Worker
from bench.config import load_config
registry.load_plugin({str(plugin)!r})
cfg = load_config('smoke', ['normmag.power=0.25', 'grid.methods=[normmag]'])
sys.stdout.buffer.write(pickle.dumps(Worker(cfg, 'results', 'data')))
"""
    load = """
import pickle, sys
from bench import registry
w = pickle.loads(sys.stdin.buffer.read())
print(w.cfg.normmag.power, registry.get('normmag').NAME, [m.name for m in w.cfg.grid.methods])
"""
    env = {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    data = subprocess.run([sys.executable, "-c", dump], cwd=tmp_path, capture_output=True, env=env, check=True).stdout
    out = subprocess.run([sys.executable, "-c", load], cwd=tmp_path, input=data, capture_output=True, env=env)
    assert out.returncode == 0, out.stderr.decode()
    assert out.stdout.decode().split() == ["0.25", "normmag", "['normmag']"]
