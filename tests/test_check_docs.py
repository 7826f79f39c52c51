"""make check-docs: the report commands quoted in the docs must reproduce the committed files.

A small repository is built in a temporary folder (this repository's code, the report fixtures as
its committed records, one doc quoting the commands); the check passes when the committed tables are
what the commands write, and fails, naming the file, when one differs or when a committed table has
no documented command.
"""
from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.cli import main
from conftest import REPO

FIX = Path(__file__).parent / "fixtures" / "report"

DOC = """# Findings

```bash
python -m bench run smoke --results results/a          # trains: the check never runs it
python -m bench table --results results/a --format md
python -m bench claims --results results/a \\
    --format png   # the forest plot: regenerated, not compared
python -m bench table [--dataset NAME] --results results/a
python -m bench table --results results/b --format md
```

Prose mentioning `python -m bench table --results results/a --format csv` is not a command block.
"""


def check_docs():
    spec = importlib.util.spec_from_file_location("check_docs", REPO / "scripts" / "check_docs.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["check_docs"] = mod             # dataclasses look their module up while it loads
    spec.loader.exec_module(mod)
    return mod


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


def make_repo(tmp_path: Path, monkeypatch) -> Path:
    repo = tmp_path / "repo"
    ignore = shutil.ignore_patterns("__pycache__")
    for d in ("bench", "baselines"):
        shutil.copytree(REPO / d, repo / d, ignore=ignore)
    shutil.copy2(REPO / "pyproject.toml", repo / "pyproject.toml")
    shutil.copytree(REPO / "results" / "reference", repo / "results" / "reference")
    (repo / "docs").mkdir()
    (repo / "docs" / "findings.md").write_text(DOC)
    (repo / "README.md").write_text("# tiny\n")
    monkeypatch.chdir(repo)                 # the committed files, made by the documented commands
    for name in ("a", "b"):
        shutil.copytree(FIX / "runs", repo / "results" / name / "runs")
        assert main(["table", "--results", f"results/{name}", "--format", "md"]) == 0
    assert main(["claims", "--results", "results/a", "--format", "png"]) == 0
    # In b: a committed table that differs from what its command writes, and one no command writes.
    table = repo / "results" / "b" / "tables" / "cifar10.md"
    table.write_text(table.read_text().replace("CIFAR-10", "CIFAR-1O", 1))
    (repo / "results" / "b" / "tables" / "extra.csv").write_text("a,b\n")
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    return repo


@pytest.mark.slow
def test_documented_commands_reproduce_the_committed_files_or_the_check_fails(tmp_path, monkeypatch):
    cd = check_docs()
    repo = make_repo(tmp_path, monkeypatch)
    commands = cd.quoted_commands(repo / "docs" / "findings.md", repo)
    assert [(c.doc, c.argv[0], c.results) for c in commands] == [
        ("docs/findings.md:5", "table", "results/a"), ("docs/findings.md:6", "claims", "results/a"),
        ("docs/findings.md:9", "table", "results/b")]
    log: list[str] = []
    assert cd.check(repo, log=log.append) == 1
    fails = [x for x in log if x.startswith("FAIL ")]
    assert len(fails) == 2, "\n".join(log)                # nothing of results/a: reproduced byte for byte
    assert fails[0].startswith("FAIL docs/findings.md:9: `python -m bench table --results results/b --format md` "
                               "writes results/b/tables/cifar10.md, which differs from the committed file:")
    assert "-# CIFAR-1O (cifar10)" in fails[0] and "+# CIFAR-10 (cifar10)" in fails[0]
    assert fails[1] == ("FAIL results/b/tables/extra.csv is committed but no command quoted in README.md or "
                        "docs/*.md writes it (quote the command that made it, or remove the file)")
    # a: 3 tables + claims.md + claims.csv; b: 3 tables; the forest plot regenerated
    assert log[-1] == ("check-docs: 3 documented command(s) run, 8 committed text file(s) compared, 1 committed "
                       "figure file(s) regenerated (not compared); 2 problem(s)")
    assert (repo / "results" / "b" / "tables" / "cifar10.md").read_text().startswith("# CIFAR-1O")   # untouched
