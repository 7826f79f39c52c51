"""The commands a user meets: names and help, one version number, `bench list`, named variants, progress."""
import argparse
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from bench import registry
from bench.cli import build_parser, main
from bench.config import CONFIG_DIR, HARNESS_VERSION, Config, from_dict
from bench.grid import expand_grid

from tiny import TINY

ROOT = Path(__file__).resolve().parents[1]


def _options(parser: argparse.ArgumentParser, where: str = "python -m bench"):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _options(sub, f"{where} {name}")
        elif not isinstance(action, argparse._HelpAction):
            yield where, action


def test_every_option_of_every_command_has_help_text():
    parser = build_parser()
    missing = [f"{where} {'/'.join(a.option_strings) or a.dest}" for where, a in _options(parser)
               if not a.help and a.dest != "command"]
    assert not missing, missing


def test_one_version_number():
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert version.split(".")[0] == str(HARNESS_VERSION)


def test_list_prints_every_preset_and_every_method(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for preset in CONFIG_DIR.glob("*.yaml"):
        assert re.search(rf"^  {re.escape(preset.stem)} +\d+ cells  \S", out, re.M), preset.stem
    for name in registry.methods():
        assert re.search(rf"^  {re.escape(name)} ", out, re.M), name
    assert re.search(r"^  egp-shortcut +egp with egp.layers: conv$", out, re.M)


def test_list_shows_a_plug_in_method(tmp_path):
    plugin = tmp_path / "mine.py"
    plugin.write_text('"""My method: nothing at all."""\nNAME, VERSION, PRUNES, SECTIONS = "mine", 1, True, ()\n\n\n'
                      "def run(ctx):\n    raise NotImplementedError\n")
    proc = subprocess.run([sys.executable, "-m", "bench", "list", "methods", "--plugin", str(plugin)], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    line = next(x for x in proc.stdout.splitlines() if x.startswith("  mine "))
    assert "My method: nothing at all." in line and "(plug-in:" in line and " conv " in line


def test_a_named_variant_is_the_same_cell_as_its_mapping():
    def ids(entry):
        cfg = from_dict(Config, {**TINY, "grid": {"methods": [entry], "sparsities": [0.5], "seeds": [0]}})
        return [(s.method.display, s.run_id) for s in expand_grid(cfg, "cpu")]

    assert ids("egp-shortcut") == ids({"name": "egp", "label": "egp-shortcut", "set": {"egp.layers": "conv"}})
    assert ids("tgp-kd-T5") == ids({"name": "tgp-kd", "label": "tgp-kd-T5", "set": {"kd.temperature": 5}})


def test_an_unknown_name_shows_the_named_variants_and_the_mapping_form(tmp_path, capsys):
    assert main(["run", "smoke", "--dry-run", "--results", str(tmp_path), "--set", "grid.methods=[egp-short]"]) == 2
    err = capsys.readouterr().err
    assert "named variants: egp-shortcut" in err and "{name: egp, label:" in err and len(err.splitlines()) == 1
