"""No silent no-ops in the report commands, figures under the results folder, claims on the terminal,
the status hint for records of another device, --version and a clean --help."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from bench.cli import main

FIX = Path(__file__).parent / "fixtures" / "report"
REF = FIX / "reference"


def results_copy(tmp_path: Path, name: str = "results") -> Path:
    dst = tmp_path / name
    shutil.copytree(FIX / "runs", dst / "runs")
    return dst


def tree(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


@pytest.mark.parametrize("command", ["table", "plot", "claims", "report"])
def test_a_folder_without_records_is_an_error_and_nothing_is_created(tmp_path, capsys, command):
    results_copy(tmp_path / "results", "grid-a")               # records elsewhere: named in the message
    before = tree(tmp_path)
    assert main([command, "--results", str(tmp_path / "results")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"error: no run records under {tmp_path / 'results' / 'runs'}; folders with records: "
                   f"{tmp_path / 'results' / 'grid-a'} (give one as --results DIR)")
    assert main([command, "--results", str(tmp_path / "typo")]) == 2          # a typo: no folder created
    assert capsys.readouterr().err.startswith(f"error: results folder {tmp_path / 'typo'} does not exist")
    assert tree(tmp_path) == before
    (tmp_path / "empty" / "runs").mkdir(parents=True)
    before = tree(tmp_path)
    assert main([command, "--results", str(tmp_path / "empty")]) == 2
    assert "error: no run records under" in capsys.readouterr().err
    assert tree(tmp_path) == before


def test_a_dataset_without_records_is_named_with_those_that_have_some(tmp_path, capsys):
    res = results_copy(tmp_path)
    assert main(["plot", "--results", str(res), "--dataset", "imagenet"]) == 2
    assert capsys.readouterr().err.strip() == (f"error: no run records for dataset 'imagenet' under {res / 'runs'}; "
                                               "datasets with records: cifar10, cifar100, tinyimagenet")
    assert not (res / "plots").exists()


@pytest.mark.slow
def test_table_and_plot_render_every_dataset_and_figures_go_under_the_results_folder(tmp_path, monkeypatch, capsys):
    res = results_copy(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main(["table", "--results", str(res), "--format", "md", "--reference", str(REF)]) == 0
    assert tree(res / "tables") == ["cifar10.md", "cifar100.md", "tinyimagenet.md"]
    assert main(["plot", "--results", str(res), "--format", "png", "--reference", str(REF)]) == 0
    assert {p.split("_")[0] for p in tree(res / "plots")} == {"cifar10", "cifar100", "tinyimagenet"}
    assert not (tmp_path / "plots").exists()                                  # never the current directory
    assert main(["plot", "--results", str(res), "--format", "png", "--dataset", "cifar100",
                 "--plots", str(tmp_path / "elsewhere"), "--reference", str(REF)]) == 0
    assert tree(tmp_path / "elsewhere") == ["cifar100_accuracy.png", "cifar100_density.png", "cifar100_latency.png"]


def pairs(a, b, diffs, target=0.9):
    out = []
    for seed, d in enumerate(diffs):
        for method, top1 in ((a, 60.0 + d), (b, 60.0)):
            out.append({"run_id": f"{method}-{seed}-{target}", "status": "ok", "dataset": "cifar10", "model": "m",
                        "method": method, "target_sparsity": target, "seed": seed, "top1_final": top1,
                        "top1_best": top1, "sparsity_overall": target, "device_name": "cpu",
                        "budget": {"student_epochs": 26.0, "teacher_epochs": 0}})
    return out


def test_claims_print_their_verdicts_and_write_the_forest_plot_under_the_results_folder(tmp_path, capsys):
    res = tmp_path / "results"
    for r in pairs("tgp", "magnitude", [2, 3, 4]) + pairs("tgp-kd", "tgp", [-2, -3, -4], 0.98):
        p = res / "runs" / r["dataset"] / f"{r['run_id']}.json"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(r))
    assert main(["claims", "--results", str(res), "--format", "png"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("The paper's claims on paired runs") and "95% Student-t interval" in " ".join(out[:6])
    assert "Holm-adjusted p under 0.05" in " ".join(out[:6])
    summary = next(x for x in out if x.startswith("verdicts: "))
    counts = dict((v, int(n)) for n, v in re.findall(r"(\d+) ([a-z ]+?)(?:,|$)", summary[len("verdicts: "):]))
    assert counts["holds"] == 1 and counts["untestable here"] == 1
    i = out.index("harness-tgp-vs-magnitude: tgp − magnitude, top-1 (pp), claimed > 0")
    assert re.match(r"  cifar10 +90\.00% +\+3\.00 \[\+0\.52, \+5\.48\] +3 +0\.035 +1\.00× holds$", out[i + 1]), out
    # no teacher recorded: the KD claim is not a test here, and the reason is printed under its row
    j = out.index("retrain-with-kd: tgp-kd − tgp, top-1 (pp), claimed > 0")
    assert out[j + 1].startswith("  cifar10") and out[j + 1].endswith("untestable here") and "teacher" in out[j + 2]
    # the rows without pairs are one line that points to claims.md, not a line each
    assert sum("row(s) without pairs" in x for x in out) == 1 and not any(x.startswith("  ") and x.endswith("no data") for x in out)
    assert (res / "plots" / "claims.png").is_file() and (res / "tables" / "claims.md").is_file()


def test_claims_piped_fit_80_columns_and_follow_a_wider_terminal():
    from bench.cli import registered_methods
    from bench.report.claims import evaluate_claims
    from bench.report.claims_render import terminal_text

    _, rows = evaluate_claims(FIX, reference_dir=REF, known=registered_methods())
    narrow = terminal_text(rows, Path("r/tables/claims.md"), 80)
    assert max(map(len, narrow.splitlines())) <= 80
    wide = terminal_text(rows, Path("r/tables/claims.md"), 160)
    assert max(map(len, wide.splitlines())) > 80 and len(wide.splitlines()) < len(narrow.splitlines())


def test_status_names_records_made_on_another_device_and_how_to_see_them(tmp_path, capsys):
    from bench.config import load_config
    from bench.grid import expand_grid
    from bench.store import atomic_write_json, run_path
    from tiny import write_config

    cfg_path = write_config(tmp_path / "tiny.yaml")
    res = tmp_path / "r"
    # The same grid run on a GPU: run ids include the device type and precision (cuda, bf16).
    for s in expand_grid(load_config(str(cfg_path), ["runtime.device=cuda"]), "cuda"):
        atomic_write_json(run_path(res, s.dataset, s.method.display, s.sparsity, s.seed, s.run_id),
                          {"run_id": s.run_id, "status": "ok", "dataset": s.dataset, "method": s.method.display,
                           "target_sparsity": s.sparsity, "seed": s.seed, "top1_final": 50.0, "device_type": "cuda",
                           "precision": "bf16", "device_name": "NVIDIA H100"})
    assert main(["status", str(cfg_path), "--results", str(res)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "5 pending"
    cmd = f"python -m bench status {cfg_path} --results {res} --set runtime.device=cuda"
    assert out.splitlines()[-1] == ("5 stored record(s) of these datasets were made on cuda/bf16, not cpu/fp32 as "
                                    f"this grid runs here: 5 are cells of this grid there, shown by: {cmd}")
    # ... and that command shows them
    assert main(cmd.split()[3:]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "5 done" and "made on" not in out


def test_version_and_help(capsys):
    from bench.provenance import code_fingerprint
    from bench.config import HARNESS_VERSION

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    out = capsys.readouterr().out.strip()
    assert re.match(rf"prune-kd-bench {HARNESS_VERSION}\.\d+\.\d+ \(its major number is the harness version records "
                    rf"carry\), git ", out), out
    assert out.endswith(f", code fingerprint {code_fingerprint()}")
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert "--version" in text and "`" not in text


def test_report_modules_import_no_method_code_and_no_torch():
    """report/ renders stored results only: importing every one of its modules loads neither torch nor a
    method (the claims' method names come from the command layer)."""
    import subprocess
    import sys

    code = ("import importlib, pkgutil, sys\nimport bench.report as R\n"
            "for m in pkgutil.iter_modules(R.__path__): importlib.import_module('bench.report.' + m.name)\n"
            "bad = sorted(m for m in sys.modules if m == 'torch' or m.startswith(('bench.methods', 'baselines',"
            " 'bench.config', 'bench.engine', 'bench.context')))\nprint(bad)")
    out = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1], capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == "[]"
