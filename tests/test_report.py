"""Reporting layer: tables, figures and the report rendered from hand-made result fixtures.

Fixture values (tests/fixtures/report/runs, written by make_runs.py), top-1 at the best epoch (the default
is the final epoch; tests that check these values ask for best explicitly):

cifar10 / resnet18           0.5 (50.00% prunable, 49.96% overall)   0.985 (98.50% / 98.41%)
  dense (sp 0)               95.00, 95.20 -> 95.10 +- 0.14 (n=2)
  magnitude                  94.0, 94.2, 94.4 -> 94.20 +- 0.20       88.0, 88.6 -> 88.30 +- 0.42
  random                     90.00                                   (not run)
  tgp                        (not run)                               89.90
  tgp-kd                     94.5, 94.7, 94.9 -> 94.70 +- 0.20       90.50; seed 1 FAILED (carries 10.00)
cifar100 / resnet18, cpu     dense 77.00; magnitude 70, 71 at 0.9; tgp 72.25 at 0.9

std is the sample std (ddof = 1). Final-epoch values make magnitude best at 0.985 (91.00 vs 90.00).
cifar10 and cifar100 are OLD records (targets over each method's own prunable set, no budget);
tinyimagenet holds NEW-format records (targets on the overall measure, an off-target colt, an
unreachable egp at 0.98, budgets, top-5; final epoch, see make_runs.py):

tinyimagenet / resnet18      0.9                                     0.98
  magnitude                  55.20 +- 0.28                           44.30 +- 0.42
  tgp-kd                     56.10 +- 0.14                           46.10 +- 0.14 (best)
  colt                       57.20 +- 0.28 at 90.42% (off target)    (not run)
  egp                        56.70 +- 0.28 (best)                    unreachable (max 97.91%)
"""
from __future__ import annotations

import csv
import io
import json
import re
import shutil
from pathlib import Path

import pytest

from bench import cli as bench_cli
from bench.report import cli
from bench.report.aggregate import mean_std, select
from bench.report.references import (ReferenceFileError, Reference, load_reference_file, load_references,
                                     make_reference, match_target)
from bench.report.style import METHOD_STYLES, order_methods, style_for
from bench.report.tables import (accuracy_latex, accuracy_markdown, build_accuracy_table, build_dataset_tables,
                                 build_latency_table, latency_latex, latency_markdown, write_tables)
from bench.store import load_runs

FIX = Path(__file__).parent / "fixtures" / "report"
REF = FIX / "reference"
REPO_REF = Path(__file__).resolve().parents[1] / "results" / "reference"
H100, A100 = "NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-40GB"


@pytest.fixture(scope="module")
def runs():
    return load_runs(FIX)


@pytest.fixture(scope="module")
def refs():
    return load_references(REF)


@pytest.fixture(scope="module")
def c10(runs, refs):
    return build_accuracy_table(runs, "cifar10", accuracy="best", references=refs)


def md_row(md: str, first: str) -> list[str]:
    """The cells of the first Markdown table row whose first cell is ``first``."""
    for line in md.splitlines():
        if line.startswith(f"| {first} |"):
            return [c.strip() for c in line.strip().strip("|").split(" | ")]
    raise AssertionError(f"no row starting with {first!r} in:\n{md}")


def md_rows(md: str, first: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip().strip("|").split(" | ")]
            for line in md.splitlines() if line.startswith(f"| {first} |")]


def results_copy(tmp_path: Path) -> Path:
    dst = tmp_path / "results"
    shutil.copytree(FIX / "runs", dst / "runs")
    return dst


# --------------------------------------------------------------------------- fixtures and statistics

def test_fixture_records_load(runs):
    assert len(runs) == 33
    assert sum(r["status"] == "failed" for r in runs) == 1
    assert sum(r["status"] == "unreachable" for r in runs) == 2
    assert {r["dataset"] for r in runs} == {"cifar10", "cifar100", "tinyimagenet"}


def test_mean_std_is_sample_std():
    m, s, n = mean_std([94.0, 94.2, 94.4])
    assert (round(m, 10), round(s, 10), n) == (94.2, 0.2, 3)
    assert mean_std([90.5]) == (90.5, None, 1)
    assert mean_std([]) == (None, None, 0)


# --------------------------------------------------------------------------- accuracy table

def test_accuracy_markdown_cells(c10):
    md = accuracy_markdown(c10)
    header = md_row(md, "prunable %")
    assert header == ["prunable %", "overall %", "magnitude", "random", "tgp", "tgp-kd"]
    assert md_row(md, "50.00") == ["50.00", "49.96", "94.20 ± 0.20 (n=3)", "90.00", "—", "**94.70** ± 0.20 (n=3)"]
    assert md_row(md, "98.50") == ["98.50", "98.41", "88.30 ± 0.42 (n=2)", "—", "89.90", "**90.50**†"]


def test_dense_reference_row(c10, runs):
    md = accuracy_markdown(c10)
    assert md_row(md, "dense")[:3] == ["dense", "0.00", "95.10 ± 0.14 (n=2)"]
    assert "Dense reference: 95.10 ± 0.14 (n=2)." in md
    md100 = accuracy_markdown(build_accuracy_table(runs, "cifar100", accuracy="best"))
    assert md_row(md100, "dense")[:3] == ["dense", "0.00", "77.00"]       # n = 1: no std, no n
    assert md_row(md100, "90.00") == ["90.00", "89.55", "70.50 ± 0.71 (n=2)", "**72.25**"]


def test_caption_states_accuracy_and_switches(runs, refs, c10):
    assert "best epoch (the maximum test accuracy" in accuracy_markdown(c10)
    final = build_accuracy_table(runs, "cifar10", accuracy="final", references=refs)
    md = accuracy_markdown(final)
    assert "Top-1 test accuracy (%), final epoch" in md and "best epoch" not in md.split("\n\n")[1]
    # final epoch: magnitude is best at 98.5, tgp-kd at 50
    assert md_row(md, "98.50") == ["98.50", "98.41", "**91.00** ± 0.14 (n=2)", "—", "89.00", "90.00†"]
    assert md_row(md, "50.00")[5] == "**94.20** ± 0.20 (n=3)"
    assert md_row(md, "dense")[2] == "94.90 ± 0.14 (n=2)"


def test_bold_only_on_the_best_per_row(c10):
    assert c10.best == {("tgp-kd", 0.5), ("tgp-kd", 0.985)}
    md = accuracy_markdown(c10)
    for first in ("50.00", "98.50"):
        assert sum("**" in cell for cell in md_row(md, first)) == 1


def test_bold_ties_and_single_value_rows():
    recs = [dict(status="ok", dataset="d", model="m", method=meth, target_sparsity=0.9, seed=0, top1_best=v,
                 top1_final=v, run_id=f"{i:016x}") for i, (meth, v) in enumerate([("a", 80.001), ("b", 79.999)])]
    recs.append(dict(status="ok", dataset="d", model="m", method="a", target_sparsity=0.5, seed=0, top1_best=85.0,
                     top1_final=85.0, run_id="f" * 16))
    t = build_accuracy_table(recs, "d")
    assert t.best == {("a", 0.9), ("b", 0.9)}      # equal at the shown precision (80.00): both bold
    md = accuracy_markdown(t)
    assert md_row(md, "50.00")[2:] == ["85.00", "—"]  # a single value in a row is not bolded


def test_a_method_that_does_not_prune_makes_dense_a_column_of_the_zero_row():
    """dense-kd (or an SD reference) has a 0% cell: dense is then its own column, never a value printed
    under dense-kd's name."""
    def rec(i, meth, sp, v):
        return dict(status="ok", dataset="d", model="m", method=meth, target_sparsity=sp, seed=0, top1_best=v,
                    top1_final=v, run_id=f"{i:016x}")
    recs = [rec(0, "dense", 0.0, 60.0), rec(1, "dense-kd", 0.0, 61.0), rec(2, "tgp", 0.9, 58.0)]
    t = build_accuracy_table(recs, "d")
    md = accuracy_markdown(t)
    header = [c.strip() for c in md.split("\n| prunable % |")[1].split("\n")[0].strip("|").split(" | ")]
    assert header == ["overall %", "dense", "dense-kd", "tgp"]
    assert md_row(md, "0.00")[2:] == ["60.00", "**61.00**", "—"]
    assert not md_rows(md, "dense")
    assert "Dense reference: 60.00." in md
    assert "dense-kd" in accuracy_latex(t) and "60.00" in accuracy_latex(t)


def test_missing_cells_are_dashes_never_zero(c10):
    md = accuracy_markdown(c10)
    assert md_row(md, "50.00")[4] == "—"     # tgp not run at 0.5
    assert md_row(md, "98.50")[3] == "—"     # random not run at 0.985
    rows = list(csv.DictReader(io.StringIO(build_dataset_tables([], "x").csv_accuracy())))
    assert rows == []
    tabs = build_dataset_tables(load_runs(FIX), "cifar10")
    rows = {(r["method"], r["target_sparsity"]): r for r in csv.DictReader(io.StringIO(tabs.csv_accuracy()))}
    missing = rows[("random", "0.985000")]
    assert (missing["n"], missing["mean"], missing["std"], missing["display"]) == ("0", "", "", "—")


def test_failed_runs_listed_and_not_averaged(c10):
    cell = c10.cell("tgp-kd", 0.985)
    assert (cell.n, cell.mean, len(cell.failed)) == (1, 90.5, 1)   # the failed run's 10.00 is not in
    md = accuracy_markdown(c10)
    assert "Failed runs: 1 (counted here, never averaged in)." in md
    assert ("- tgp-kd, sparsity 98.50%, seed 1, run 000000000000000e, NVIDIA H100 80GB HBM3: "
            "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB") in md
    assert "10.00" not in md


def test_csv_numbers(runs, refs):
    tabs = build_dataset_tables(runs, "cifar10", "best", refs)
    rows = {(r["method"], r["target_sparsity"]): r for r in csv.DictReader(io.StringIO(tabs.csv_accuracy()))}
    mag = rows[("magnitude", "0.500000")]
    assert (float(mag["mean"]), float(mag["std"]), mag["n"], mag["seeds"]) == (94.2, 0.2, "3", "0;1;2")
    assert float(rows[("magnitude", "0.985000")]["std"]) == pytest.approx(0.424264, abs=1e-6)
    assert float(rows[("magnitude", "0.985000")]["sparsity_overall"]) == pytest.approx(0.984125, abs=1e-6)
    kd = rows[("tgp-kd", "0.985000")]
    assert (kd["n"], kd["mean"], kd["std"], kd["best"], kd["n_failed"]) == ("1", "90.500000", "", "true", "1")
    dense = rows[("dense", "0.000000")]
    assert (dense["mean"], dense["n"]) == ("95.100000", "2")
    assert [r["best"] for r in rows.values()].count("true") == 2


def test_paper_values_and_difference(c10):
    md = accuracy_markdown(c10)
    tgpkd, tgp = [r for r in md_rows(md, "tgp-kd") + md_rows(md, "tgp") if r[3] == "98.41 (overall)"]
    assert tgpkd[4:9] == ["98.50", "90.79", "best", "90.50†", "-0.29"]
    assert tgp[4:9] == ["98.50", "90.79", "best", "89.90", "-0.89"]
    # conv sparsity given (50.50) and we ran 50.00: no match, shown with dashes
    unmatched = [r for r in md_rows(md, "tgp-kd") if r[3] == "50.46 (overall)"][0]
    assert unmatched[4:10] == ["—", "96.08", "best", "—", "—", "no run at a matching sparsity"]
    # only an overall sparsity (49.95): nearest measured overall within 0.1 pp (49.96)
    mag = [r for r in md_rows(md, "magnitude") if r[3] == "49.95 (overall)"][0]
    assert mag[4:9] == ["50.00", "93.50", "unknown", "94.20 ± 0.20 (n=3)", "+0.70"]
    assert md_row(md, "egp")[9] == "not run"


def test_paper_csv(runs, refs):
    rows = list(csv.DictReader(io.StringIO(build_dataset_tables(runs, "cifar100", "best", refs).csv_paper())))
    assert len(rows) == 1
    r = rows[0]
    assert (r["method"], r["paper_value"], r["ours_mean"], r["diff"], r["matched_target"]) == \
        ("tgp", "71.0000", "72.250000", "1.250000", "0.900000")
    rows = list(csv.DictReader(io.StringIO(build_dataset_tables(runs, "cifar10", "best", refs).csv_paper())))
    diffs = {(r["metric"], r["method"], r["sparsity_reported"]): r["diff"] for r in rows}
    assert diffs[("top1", "tgp-kd", "98.4100")] == "-0.290000"
    assert diffs[("top1", "tgp-kd", "50.4600")] == ""
    colt = [r for r in rows if r["method"] == "colt"][0]
    assert (colt["paper_value"], colt["paper_ratio"], colt["note"]) == ("276.0000", "9.920920", "not run")


def test_paper_inline_and_transpose(c10):
    md = accuracy_markdown(c10, transpose=True, paper="inline")
    facts = ["student epochs", "teacher epochs", "× reference budget", "prunable set", "head kept %", "augmentation"]
    assert md_row(md, "method") == ["method", "50.00 (49.96 overall)", "98.50 (98.41 overall)"] + facts
    # old records: no budget, no layer densities of the head, no augmentation recorded
    assert md_row(md, "dense")[:5] == ["dense", "95.10 ± 0.14 (n=2)", "", "—", "—"]
    assert md_row(md, "tgp-kd")[:5] == ["tgp-kd", "**94.70** ± 0.20 (n=3)", "**90.50**†; paper 90.79 (-0.29)", "—", "—"]
    assert md_row(md, "magnitude")[:5] == ["magnitude", "94.20 ± 0.20 (n=3); paper 93.50 (+0.70)",
                                           "88.30 ± 0.42 (n=2)", "—", "—"]
    assert md_row(md, "random")[:5] == ["random", "90.00", "—", "—", "—"]


def test_superseded_duplicates_are_not_averaged(runs):
    recs = [dict(r) for r in runs if r["dataset"] == "cifar10"]
    old = next(r for r in recs if r["method"] == "random")
    new = dict(old, run_id="ffffffffffffffff", ended_at="2030-01-01T00:00:00Z", top1_best=91.0)
    t = build_accuracy_table(recs + [new], "cifar10", accuracy="best")
    assert (t.cell("random", 0.5).n, t.cell("random", 0.5).mean) == (1, 91.0)
    md = accuracy_markdown(t)
    assert "Superseded runs: 1" in md and old["run_id"] in md


def test_models_are_never_mixed(runs):
    recs = [dict(r) for r in runs if r["dataset"] == "cifar100"]
    recs += [dict(r, model="resnet_small", run_id="e" * 15 + str(i), top1_best=50.0) for i, r in enumerate(recs)]
    tabs = build_dataset_tables(recs, "cifar100", "best")
    assert [t.model for t in tabs.accuracy] == ["resnet18", "resnet_small"]
    md = tabs.markdown()
    assert "CIFAR-100, resnet18: top-1" in md and "CIFAR-100, resnet_small: top-1" in md
    assert md_rows(md, "90.00")[0][2] == "70.50 ± 0.71 (n=2)" and md_rows(md, "90.00")[1][2] == "**50.00** ± 0.00 (n=2)"


def test_latex_booktabs(c10):
    tex = accuracy_latex(c10)
    for token in (r"\toprule", r"\midrule", r"\bottomrule", r"\begin{tabular}{llrrrr}",
                  r"\textbf{94.70} $\pm$ 0.20 ($n{=}3$)", r"\multicolumn{4}{c}{95.10 $\pm$ 0.14 ($n{=}2$)}",
                  r"prunable \% & overall \%", r"\caption{CIFAR-10, resnet18: top-1 accuracy (\%), best epoch (selected on the test set), old accounting.",
                  "selected on the test set: optimistic", r"\midrule" + "\n" + r"student epochs &  & --- & --- & --- & --- \\"):
        assert token in tex, token
    assert r"98.50 & 98.41 & 88.30 $\pm$ 0.42 ($n{=}2$) & --- & 89.90 & \textbf{90.50}$^\dagger$ \\" in tex
    assert "—" not in tex and "±" not in tex and "†" not in tex and "n > 1" not in tex
    tex_t = accuracy_latex(c10, transpose=True)
    assert (r"method & 50.00 (49.96 overall) & 98.50 (98.41 overall) & student epochs & teacher epochs & "
            r"$\times$ reference budget & prunable set & head kept \% & augmentation \\") in tex_t
    assert r"dense & \multicolumn{2}{c}{95.10 $\pm$ 0.14 ($n{=}2$)} & --- & --- & --- &" in tex_t
    assert r"tgp-kd & \textbf{94.70} $\pm$ 0.20 ($n{=}3$) & \textbf{90.50}$^\dagger$ & --- & --- & --- &" in tex_t


# --------------------------------------------------------------------------- latency table

def test_latency_table(runs, refs):
    lt = build_latency_table(runs, "cifar10", references=refs)
    assert lt.ref_method == "tgp-kd"
    md = latency_markdown(lt)
    rows = {(r[0], r[1]): r for r in md_rows(md, H100) + md_rows(md, A100)}
    # GPU, method, runs, pretrain, teacher, score+prune, retrain, other, per run (pretrain + score+prune +
    # retrain + other), per run + teacher, grid GPU-min (runs x per run + teacher), x tgp-kd (per run + teacher),
    # x tgp-kd (no teacher). Old records (no group, no device): groups inferred from the phase names.
    # H100 tgp-kd: 10 + 4.6 + 25 = 39.6, + 30 = 69.6; magnitude: 10 + 0.2 + 20 = 30.2 (no teacher):
    # 30.2 / 69.6 = 0.43, 30.2 / 39.6 = 0.76.
    assert rows[(H100, "tgp-kd")][2:] == ["3", "10.00", "30.00", "4.60", "25.00", "n/a", "39.60", "69.60", "208.80",
                                          "1.00×", "1.00×"]
    assert rows[(H100, "magnitude")][2:] == ["4", "10.00", "n/a", "0.20", "20.00", "n/a", "30.20", "30.20", "120.80",
                                             "0.43×", "0.76×"]
    # A100 tgp-kd: 15 + 5.9 + 35 = 55.9, + 40 = 95.9; magnitude 15 + 0.3 + 30 = 45.3
    assert rows[(A100, "magnitude")][2:] == ["1", "15.00", "n/a", "0.30", "30.00", "n/a", "45.30", "45.30", "45.30",
                                             "0.47×", "0.81×"]
    assert rows[(A100, "tgp-kd")][8:] == ["55.90", "95.90", "95.90", "1.00×", "1.00×"]
    # dense: its pretraining is its whole run
    assert rows[(H100, "dense")][8:] == ["10.00", "10.00", "20.00", "0.14×", "0.25×"]
    assert "‡" not in md and "counted in other" not in md and "Evaluation (group eval) is excluded" in md
    assert "Failed runs excluded: 1." in md
    assert "counted at what it cost when it was made" in md
    colt = md_row(md, "colt")
    assert colt[4:6] == ["276.00", "9.92×"] and colt[9] == "not run"
    kd = [r for r in md_rows(md, "tgp-kd") if r[6] == H100][0]
    assert kd[4:9] == ["27.82", "1.00×", H100, "69.60", "1.00×"]       # ours: per run + teacher


def test_latency_ratio_reference_is_a_parameter(runs):
    lt = build_latency_table(runs, "cifar10", ref_method="magnitude")
    h100 = {r.method: r for r in lt.rows if r.device == H100}
    assert h100["tgp-kd"].ratio == pytest.approx(69.6 / 30.2)
    assert h100["tgp-kd"].ratio_student == pytest.approx(39.6 / 30.2)
    lt = build_latency_table(runs, "cifar100")
    assert lt.ref_method == "tgp"    # no tgp-kd run: falls back to tgp


# --------------------------------------------------------------------------- files, bytes, CLI

def test_write_tables_identical_bytes(tmp_path, runs):
    outs = []
    for name in ("a", "b"):
        paths = write_tables(FIX, reference_dir=REF, tables_dir=tmp_path / name, runs=runs)
        outs.append({p.name: p.read_bytes() for p in paths})
    assert outs[0] == outs[1]
    assert sorted(outs[0]) == sorted(f"{ds}{suffix}" for ds in ("cifar10", "cifar100", "tinyimagenet")
                                     for suffix in (".md", ".tex", ".csv", "_paper.csv", "_latency.csv"))


@pytest.mark.slow
def test_figures_identical_bytes(tmp_path, runs, refs):
    from bench.report.figures import write_figures

    outs = []
    for name in ("a", "b"):
        paths = write_figures(FIX, tmp_path / name, "cifar10", reference_dir=REF, runs=runs)
        outs.append({p.name: p.read_bytes() for p in paths})
    assert outs[0] == outs[1]
    assert sorted(outs[0]) == sorted(f"cifar10_{k}.{f}" for k in ("accuracy", "density", "latency")
                                     for f in ("png", "pdf"))
    pdf = outs[0]["cifar10_accuracy.pdf"]
    assert b"/FontFile2" in pdf and b"/Subtype /Type1" not in pdf     # TrueType (Type 42), embedded
    assert b"CreationDate" not in pdf and b"Producer" not in pdf
    assert outs[0]["cifar10_accuracy.png"].startswith(b"\x89PNG") and b"Software" not in outs[0]["cifar10_accuracy.png"]


def test_density_sparsity_choice(runs):
    from bench.report.figures import density_targets, plot_density

    assert density_targets(runs, "cifar10") == [0.5, 0.985]
    assert plot_density(runs, "cifar10", sparsity=50) is not None      # percent accepted
    with pytest.raises(ValueError, match="present: 0.5, 0.985"):
        plot_density(runs, "cifar10", sparsity=0.9)


@pytest.mark.slow
def test_cli_table_plot_and_errors(tmp_path, capsys):
    res = results_copy(tmp_path)
    assert bench_cli.main(["table", "--results", str(res), "--dataset", "cifar10", "--format", "csv",
                     "--reference", str(REF)]) == 0
    assert sorted(p.name for p in (res / "tables").iterdir()) == ["cifar10.csv", "cifar10_latency.csv",
                                                                  "cifar10_paper.csv"]
    rows = {(r["method"], r["target_sparsity"]): r for r in csv.DictReader((res / "tables" / "cifar10.csv").open())}
    assert rows[("magnitude", "0.985000")]["accuracy"] == "final"
    assert rows[("magnitude", "0.985000")]["mean"] == "91.000000"       # final epoch (best would be 88.30)
    # No --accuracy: final-epoch numbers, and the caption says so.
    assert bench_cli.main(["table", "--results", str(res), "--dataset", "cifar10", "--format", "md",
                     "--reference", str(REF)]) == 0
    md = (res / "tables" / "cifar10.md").read_text()
    assert "top-1 accuracy (%), final epoch, old accounting\n" in md
    assert "Top-1 test accuracy (%), final epoch (test accuracy after" in md
    assert md_row(md, "98.50")[2] == "**91.00** ± 0.14 (n=2)" and "best epoch" not in md
    assert bench_cli.main(["table", "--results", str(res), "--dataset", "cifar100", "--format", "md", "--accuracy",
                     "final", "--transpose", "--reference", str(REF)]) == 0
    md = (res / "tables" / "cifar100.md").read_text()
    assert "final epoch" in md and md_row(md, "tgp")[1] == "**71.00**"
    assert bench_cli.main(["plot", "--results", str(res), "--plots", str(tmp_path / "plots"), "--dataset", "cifar100",
                     "--format", "png", "--reference", str(REF)]) == 0
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == [
        "cifar100_accuracy.png", "cifar100_density.png", "cifar100_latency.png"]
    assert bench_cli.main(["table", "--results", str(res), "--dataset", "imagenet"]) == 2
    assert "no run records for dataset 'imagenet'" in capsys.readouterr().err


def test_cli_register_adds_subcommands():
    import argparse

    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command"), method_names=list)
    args = parser.parse_args(["plot", "--sparsity", "98.5"])
    assert (args.results, args.plots, args.sparsity, args.accuracy) == (Path("results"), None, 0.985, "final")
    assert cli.plots_dir(args) == Path("results") / "plots"             # the results folder's own plots/
    args = parser.parse_args(["table"])
    assert (args.format, args.dataset, args.transpose, args.paper) == ("all", None, False, "block")


@pytest.mark.slow
def test_report(tmp_path):
    from bench.report.report import write_report

    res = results_copy(tmp_path)
    shutil.copytree(REF, res / "reference")          # <results>/reference is used when present
    out = write_report(res, tmp_path / "plots", known=bench_cli.registered_methods())
    assert out == res / "REPORT.md"
    assert (tmp_path / "plots" / "cifar100_latency.pdf").is_file()
    text = out.read_text()
    first = out.read_bytes()
    for s in ("## Environment", f"| device | {A100} (2), {H100} (27), cpu (4) |", "| torch | 2.5.1+cu124 (33) |",
              "| git commit | 0123456789ab (33) |", "## CIFAR-10 (cifar10)", "## CIFAR-100 (cifar100)",
              "| precision, device type | bf16, cuda (12), fp32, cuda (1) |", "| method version | colt v2 (2), dense v1 (1), "
              "egp v1 (2), magnitude v1 (4), tgp-kd v1 (4) |", "## Tiny-ImageNet (tinyimagenet)",
              "- § colt: off target: realised 90.42% overall", "- ¶ egp at 98.00%: unreachable",
              "- ‡ NVIDIA H100 80GB HBM3, tgp-kd, teacher: this cell excludes 1 phase(s)",
              "| 98.50 | 98.41 | **91.00** ± 0.14 (n=2) | — | 89.00 | 90.00† |",
              "Accuracy: top-1 test accuracy at the final epoch.", "; top-1 at the final epoch.*",
              "![Accuracy vs realised sparsity", "(../plots/cifar10_accuracy.png)", "[PDF](../plots/cifar10_density.pdf)",
              "Paper-reported numbers: 7 rows from `extra.csv`, `paper.yaml` in `reference/`."):
        assert s in text, s
    for link in [line.split("](")[1].split(")")[0] for line in text.splitlines() if line.startswith("![")]:
        assert (out.parent / link).is_file(), link
    assert (res / "tables" / "cifar10.md").is_file()
    # Rerendering gives the same page (png only the second time, to keep the test fast: no PDF links).
    again = write_report(res, tmp_path / "plots", figure_formats=("png",), known=bench_cli.registered_methods()).read_bytes()
    assert again == re.sub(rb" \[PDF\]\([^)]*\)", b"", first)


def test_report_without_runs(tmp_path):
    from bench.report.report import write_report

    text = write_report(tmp_path / "empty", tmp_path / "plots", reference_dir=REPO_REF, known=()).read_text()
    assert "No run records" in text and "cifar10 (" in text


# --------------------------------------------------------------------------- reference files

def test_shipped_reference_numbers():
    refs = load_references(REPO_REF)
    top1 = {(r.dataset, r.sparsity): r for r in refs if r.top1 is not None}
    assert {k: (v.top1, v.sparsity_conv) for k, v in top1.items()} == {
        ("cifar10", 50.46): (96.08, 50.5), ("cifar10", 98.41): (90.79, 98.5),
        ("cifar100", 50.75): (81.01, 51.0), ("cifar100", 98.01): (67.06, 98.5),
        ("tinyimagenet", 50.02): (59.29, 50.5), ("tinyimagenet", 97.56): (50.64, 98.5)}
    assert all(r.sparsity_definition == "overall" and r.labels == ("tgp-kd", "tgp") for r in top1.values())
    minutes = {(r.dataset, r.method): r.minutes for r in refs if r.minutes is not None}
    assert minutes == {("cifar10", "tgp-kd"): 27.82, ("cifar10", "colt"): 276, ("cifar100", "tgp-kd"): 19.76,
                       ("cifar100", "colt"): 355, ("tinyimagenet", "tgp-kd"): 42.43, ("tinyimagenet", "colt"): 1756}


def test_reference_csv_format(tmp_path):
    p = tmp_path / "more.csv"
    p.write_text("# comment\ndataset,method,sparsity,sparsity_definition,top1,source,compare_to\n"
                 "cifar10,egp,98.0,conv-relu,91.5,EGP paper,egp;egp-kd\n")
    (r,) = load_reference_file(p)
    assert (r.method, r.top1, r.labels, r.sparsity_conv, r.sparsity_overall) == ("egp", 91.5, ("egp", "egp-kd"), None, None)
    assert "more.csv: line 3" in r.origin


@pytest.mark.parametrize("row, message", [
    (dict(method="m", sparsity=90, sparsity_definition="conv", source="s", top1=1), "missing required column(s) dataset"),
    (dict(dataset="d", method="m", sparsity=90, sparsity_definition="conv", source="s", top1=1, topl=2),
     "unknown column(s) topl"),
    (dict(dataset="d", method="m", sparsity=0.9, sparsity_definition="conv", source="s", top1=1), "looks like a fraction"),
    (dict(dataset="d", method="m", sparsity=90, sparsity_definition="weights", source="s", top1=1),
     "'sparsity_definition' is 'weights'; allowed: overall, conv"),
    (dict(dataset="d", method="m", sparsity=90, sparsity_definition="conv", source="s"), "a row needs a value"),
    (dict(dataset="d", method="m", sparsity=90, sparsity_definition="conv", source="s", top1="high"),
     "column 'top1' must be a number"),
    (dict(dataset="d", method="m", sparsity=90, sparsity_definition="overall", sparsity_overall=91, source="s",
          top1=1), "differs from 'sparsity'"),
])
def test_reference_validation_errors(row, message):
    with pytest.raises(ReferenceFileError, match=None) as e:
        make_reference(row, "f.yaml: row 1")
    assert message in str(e.value) and str(e.value).startswith("f.yaml: row 1: ")


def test_reference_yaml_errors(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("rowz: []\n")
    with pytest.raises(ReferenceFileError, match="unknown top-level key"):
        load_reference_file(p)


def test_match_target_rules():
    conv = Reference("d", "m", 98.41, "overall", "s", top1=1, sparsity_conv=98.5, sparsity_overall=98.41)
    overall = Reference("d", "m", 98.35, "overall", "s", top1=1, sparsity_overall=98.35)
    other = Reference("d", "m", 98.0, "conv-relu", "s", top1=1)
    ours = {0.5: 0.4996, 0.98: 0.9791, 0.985: 0.9841}
    assert match_target(conv, ours) == 0.985
    assert match_target(conv, {0.98: 0.9841}) is None          # conv given: no fallback to overall
    assert match_target(overall, ours) == 0.985                # nearest overall within 0.1 pp
    assert match_target(overall, {0.98: 0.9791}) is None       # 0.44 pp away
    assert match_target(other, ours) is None


# --------------------------------------------------------------------------- style

def test_method_styles_fixed_and_distinct():
    # every known label looks different from every other of its family (figures: one panel per family)
    from bench.report.style import family_of

    styles = {}
    for m, st in METHOD_STYLES.items():
        styles.setdefault(family_of(m), []).append(st)
    assert all(len(set(v)) == len(v) for v in styles.values()), styles
    assert style_for("tgp-kd") == METHOD_STYLES["tgp-kd"]
    assert style_for("my-new-method") == style_for("my-new-method")
    assert order_methods(["zeta", "tgp-kd", "alpha", "dense", "magnitude"]) == ["dense", "magnitude", "tgp-kd",
                                                                                "alpha", "zeta"]


def test_selection_splits_status(runs):
    sel = select(runs, "cifar10")
    assert (len(sel.ok), len(sel.failed), len(sel.superseded)) == (13, 1, 0)
    assert json.dumps(sel.methods) == json.dumps(["dense", "magnitude", "random", "tgp", "tgp-kd"])


# --------------------------------------------------------------------------- new record format (tinyimagenet)
# Targets on the overall measure, sparsity_on_target, an off-target COLT, an unreachable EGP, budgets,
# top-5, phases with group and device, rounds, precision (values: make_runs.py).

@pytest.fixture(scope="module")
def tin(runs):
    return build_dataset_tables(runs, "tinyimagenet")      # default accuracy: final epoch


def test_new_format_accuracy_table_at_realised_sparsity(tin):
    t = tin.accuracy[0]
    assert (t.accuracy, t.measure, t.metric, t.old_accounting) == ("final", "overall", "top1", False)
    md = accuracy_markdown(t)
    assert "## Tiny-ImageNet, resnet18: top-1 accuracy (%), final epoch, overall sparsity\n" in md
    assert "Rows: the grid's target sparsities on the overall measure" in md and "old accounting" not in md.lower()
    assert md_row(md, "target overall %") == ["target overall %", "measured overall %", "magnitude", "tgp-kd", "colt",
                                              "egp"]
    # colt is the highest at 90% but off target (realised 90.42% overall): shown with its realised sparsity and §,
    # never bold; egp, on target, is the best of the cells that compete.
    assert md_row(md, "90.00") == ["90.00", "90.00", "55.20 ± 0.28 (n=2)", "56.10 ± 0.14 (n=2)",
                                   "57.20 ± 0.28 (n=2) at 90.42%§", "**56.70** ± 0.28 (n=2)"]
    # egp cannot reach 98% overall: shown as such with its maximum, marked ¶, never bold
    assert md_row(md, "98.00") == ["98.00", "98.00", "44.30 ± 0.42 (n=2)", "**46.10** ± 0.14 (n=2)", "—",
                                   "unreachable (max 97.91%)¶"]
    assert t.best == {("egp", 0.9), ("tgp-kd", 0.98)}
    assert ("- § colt: off target: realised 90.42% overall at target 90.00% (mean over 2 runs); "
            "colt.exact_final_round: false (the official schedule): the last round overshoots the target.") in md
    assert ("- ¶ egp at 98.00%: unreachable, at most 97.91% overall (2 runs; not trained, not a failure): the "
            "prunable set 'conv-noshortcut' holds") in md
    # unreachable records are not failures
    assert "Failed runs: 0 (counted here, never averaged in)." in md and "Unreachable cells: 2 record(s)" in md
    assert (len(t.selection.failed), len(t.selection.unreachable)) == (0, 2)
    assert md_row(accuracy_markdown(t, transpose=True), "colt")[:5] == ["colt", "57.20 ± 0.28 (n=2) at 90.42%§", "—",
                                                                        "40", "0"]
    tex = accuracy_latex(t)
    assert r"57.20 $\pm$ 0.28 ($n{=}2$) at 90.42\%$^\S$" in tex and r"unreachable (max 97.91\%)$^\P$" in tex
    assert r"\P{} egp at 98.00\%: unreachable" in tex and "¶" not in tex and "§" not in tex


def test_budget_rows_and_augmentation_note(tin, runs):
    t = tin.accuracy[0]
    md = accuracy_markdown(t)
    # student epochs in full-data-epoch equivalents (COLT's half-data round 0 counts half); a range over targets
    assert md_row(md, "student epochs") == ["student epochs", "", "20", "22–24", "40", "28"]
    assert md_row(md, "teacher epochs") == ["teacher epochs", "", "0", "30", "0", "0"]
    assert "Dense reference: 60.00 (10 epochs)." in md
    assert ("- Augmentation: the grid's is crop 4, flip, rotate 15°; differs: egp (crop 4, flip, no rotation: "
            "pretrain, round01, round02, round03).") in md
    tex = accuracy_latex(t)
    assert "\\midrule\nstudent epochs &  & 20 & 22--24 & 40 & 28 \\\\" in tex
    # old records carry no budget: dashes, and the note says why
    c10 = accuracy_markdown(build_accuracy_table(runs, "cifar10"))
    assert md_row(c10, "student epochs")[2:] == ["—"] * 4
    assert "- — in the budget rows: no record of this table carries a budget (made before budgets were recorded)." in c10
    # a table where only some methods have a budget names the others
    recs = [r for r in runs if r["dataset"] == "tinyimagenet"]
    recs.append({k: v for k, v in recs[1].items() if k != "budget"} | {"method": "legacy", "run_id": "e" * 16})
    md = accuracy_markdown(build_accuracy_table(recs, "tinyimagenet"))
    assert "no budget recorded (records made before budgets were): legacy." in md


def test_accuracy_csv_columns(tin):
    rows = {(r["metric"], r["method"], r["target_sparsity"]): r for r in csv.DictReader(io.StringIO(tin.csv_accuracy()))}
    colt = rows[("top1", "colt", "0.900000")]
    assert (colt["sparsity_measure"], colt["cell_status"], colt["on_target"], colt["sparsity_realised"],
            colt["best"]) == ("overall", "off-target", "false", "0.904200", "false")
    assert (colt["student_epochs_min"], colt["student_epochs_max"], colt["teacher_epochs_max"]) == (
        "40.000000", "40.000000", "0.000000")
    assert colt["display"] == "57.20 ± 0.28 (n=2) at 90.42%§"
    egp = rows[("top1", "egp", "0.980000")]
    assert (egp["cell_status"], egp["max_sparsity"], egp["n"], egp["n_unreachable"], egp["n_failed"], egp["mean"]) == (
        "unreachable", "0.979100", "0", "2", "0", "")
    assert rows[("top1", "egp", "0.900000")]["augment"] == "crop 4, flip, no rotation"
    kd = rows[("top1", "tgp-kd", "0.980000")]
    assert (kd["cell_status"], kd["on_target"], kd["best"], kd["student_epochs_min"], kd["teacher_epochs_min"]) == (
        "ok", "true", "true", "24.000000", "30.000000")
    assert rows[("top1", "colt", "0.980000")]["cell_status"] == "not run"
    old = {(r["method"], r["target_sparsity"]): r for r in
           csv.DictReader(io.StringIO(build_dataset_tables(load_runs(FIX), "cifar10").csv_accuracy()))}
    assert old[("tgp-kd", "0.985000")]["sparsity_measure"] == "" and old[("tgp-kd", "0.985000")]["cell_status"] == "ok"
    assert old[("random", "0.985000")]["cell_status"] == "not run"
    assert old[("tgp-kd", "0.985000")]["student_epochs_min"] == ""


def test_top5_table_for_a_200_class_dataset(tin, runs):
    (top5,) = tin.top5
    assert top5.metric == "top5" and top5.paper == []
    md = accuracy_markdown(top5)
    assert "## Tiny-ImageNet, resnet18: top-5 accuracy (%), final epoch, overall sparsity" in md
    assert "Top-5 test accuracy (%)" in md
    assert md_row(md, "98.00")[2:4] == ["**69.30** ± 0.42 (n=2)", "66.10 ± 0.14 (n=2)"]   # magnitude best in top-5
    assert "top-5 accuracy" in tin.markdown() and tin.markdown().index("top-1 accuracy") < tin.markdown().index("top-5")
    assert {r["metric"] for r in csv.DictReader(io.StringIO(tin.csv_accuracy()))} == {"top1", "top5"}
    # CIFAR-10 has 10 classes: no top-5 table, although its records carry top-5
    c10 = build_dataset_tables(runs, "cifar10")
    assert c10.top5 == [None] and "top-5" not in c10.markdown()


def test_old_accounting_is_marked_and_new_tables_are_not(runs):
    c10 = build_dataset_tables(runs, "cifar10")
    assert c10.accuracy[0].old_accounting
    md = c10.markdown()
    assert "**Old accounting: targets over each method's own prunable set (records made before " \
           "grid.sparsity_measure existed).**" in md
    assert "top-1 accuracy (%), final epoch, old accounting" in md
    assert "Records: old accounting" in latency_markdown(c10.latency[0])
    assert "old accounting" not in build_dataset_tables(runs, "tinyimagenet").markdown().lower()


def test_tables_never_mix_measures(runs):
    """Old and new records of one dataset and model: one table per measure, each with its own rows."""
    old = [dict(r, dataset="tinyimagenet", run_id="o" + r["run_id"][1:]) for r in runs
           if r["dataset"] == "cifar10" and r["method"] in ("magnitude", "tgp-kd")]
    new = [r for r in runs if r["dataset"] == "tinyimagenet"]
    tabs = build_dataset_tables(old + new, "tinyimagenet")
    assert [(t.measure, t.targets) for t in tabs.accuracy] == [("overall", [0.9, 0.98]), (None, [0.5, 0.985])]
    assert [lt.measure for lt in tabs.latency] == ["overall", None]
    assert tabs.accuracy[1].cell("magnitude", 0.985).n == 2 and tabs.accuracy[0].cell("magnitude", 0.985) is None
    assert len(tabs.top5) == 2
    # the default (no measure given): the declared measure, old records left out
    assert build_accuracy_table(old + new, "tinyimagenet").measure == "overall"
    assert build_accuracy_table(old + new, "tinyimagenet", measure=None).targets == [0.5, 0.985]
    md = tabs.markdown()
    assert md.count("## Tiny-ImageNet, resnet18: top-1 accuracy") == 2


def _acc(method, target, seed, top1, **kw):
    r = dict(status="ok", dataset="d", model="m", method=method, target_sparsity=target, seed=seed, top1_final=top1,
             top1_best=top1, run_id=f"{method}-{target}-{seed}")
    r.update(kw)
    return r


def test_bold_only_on_target_and_on_the_tables_scale():
    # new records: realised 0.9004 is on target (within 0.05 points) but shown; 0.9010 is off target
    recs = [_acc("a", 0.9, 0, 80.0, sparsity_measure="overall", sparsity_realised=0.9004, sparsity_on_target=True),
            _acc("b", 0.9, 0, 81.0, sparsity_measure="overall", sparsity_realised=0.9010, sparsity_on_target=False),
            _acc("c", 0.9, 0, 79.0, sparsity_measure="overall", sparsity_realised=0.9, sparsity_on_target=True)]
    t = build_accuracy_table(recs, "d")
    md = accuracy_markdown(t)
    assert md_row(md, "90.00")[2:] == ["**80.00** at 90.04%", "81.00 at 90.10%§", "79.00"]
    # old records: sparsity_exact false is off target; bold compares only the set most runs count their target on
    old = [_acc("x", 0.9, s, 70.0, prunable_set="conv+linear") for s in (0, 1)] + \
          [_acc("y", 0.9, s, 69.0, prunable_set="conv+linear") for s in (0, 1)] + \
          [_acc("z", 0.9, s, 68.0, prunable_set="conv+linear") for s in (0, 1)] + \
          [_acc("tgp", 0.9, s, 75.0, prunable_set="conv") for s in (0, 1)] + \
          [_acc("colt", 0.9, s, 76.0, prunable_set="conv", sparsity_exact=False) for s in (0, 1)]
    t = build_accuracy_table(old, "d")
    assert (t.scale, t.best) == ("conv+linear", {("x", 0.9)})
    md = accuracy_markdown(t)
    assert "Bold also requires the cell's target to be over conv+linear, the set most runs count their target over" in md
    cells = dict(zip(md_row(md, "prunable %"), md_row(md, "90.00")))
    assert (cells["colt"], cells["tgp"], cells["x"]) == ("76.00 ± 0.00 (n=2)§", "75.00 ± 0.00 (n=2)", "**70.00** ± 0.00 (n=2)")


def test_unreachable_is_never_failed_or_bold(runs):
    tin_runs = [r for r in runs if r["dataset"] == "tinyimagenet"]
    from bench.report.aggregate import select as sel_

    s = sel_(tin_runs, "tinyimagenet")
    assert {r["method"] for r in s.unreachable} == {"egp"} and not s.failed and "egp" in s.methods
    lt = build_latency_table(tin_runs, "tinyimagenet")
    assert lt.failed == 0 and lt.unreachable == 2
    # an unreachable record and a later ok one of the same cell and seed (the config changed): the newer is kept
    old = next(r for r in tin_runs if r["status"] == "unreachable" and r["seed"] == 0)
    newer = dict(next(r for r in tin_runs if r["method"] == "tgp-kd" and r["target_sparsity"] == 0.98),
                 method="egp", seed=0, run_id="f" * 16, ended_at="2030-01-01T00:00:00Z")
    s = sel_(tin_runs + [newer], "tinyimagenet")
    assert old in s.superseded and newer in s.ok and [r["seed"] for r in s.unreachable] == [1]
    assert "Failed runs excluded: 0. Unreachable cells (not trained, no time): 2." in latency_markdown(lt)


def test_on_target_and_tolerance():
    from bench.masks import TOLERANCE as ENGINE_TOLERANCE
    from bench.report.aggregate import TOLERANCE, on_target, realised_sparsity, target_scale

    assert TOLERANCE == ENGINE_TOLERANCE
    assert on_target({"sparsity_on_target": False, "sparsity_exact": True}) is False        # the flag wins
    assert on_target({"sparsity_exact": False}) is False and on_target({}) is True          # old records
    new = {"sparsity_measure": "overall", "target_sparsity": 0.9, "sparsity": {"overall": 0.9006}}
    assert realised_sparsity(new) == 0.9006 and on_target(new) is False
    assert on_target(dict(new, sparsity={"overall": 0.9004})) is True
    assert (target_scale(new), target_scale({"prunable_set": "conv+linear"}), target_scale({})) == (
        "overall", "conv+linear", "conv")
    assert realised_sparsity({"sparsity_prunable": 0.93}) == 0.93     # old: the method's own set


def test_paper_matched_on_the_measure_of_our_targets():
    from bench.report.aggregate import match_reference

    ref = make_reference({"dataset": "d", "method": "tgp-kd", "sparsity": 98.41, "sparsity_conv": 98.5,
                          "sparsity_definition": "overall", "top1": 90.79, "source": "s"})
    # targets on the overall measure: 0.9841 is the paper's point, not 0.985 (a conv target)
    assert match_reference(ref, "overall", {0.9841: 0.9841, 0.985: 0.985}) == 0.9841
    # old records (targets on conv): the conv sparsity the source implies
    assert match_reference(ref, None, {0.9841: 0.9780, 0.985: 0.9841}) == 0.985
    recs = [_acc("tgp-kd", t, 0, 90.0, sparsity_measure="overall", sparsity_overall=t) for t in (0.9841, 0.985)]
    (pm,) = [p for p in build_accuracy_table(recs, "d", references=[ref]).paper]
    assert (pm.target, pm.note) == (0.9841, "matched on nearest overall sparsity")


def test_latency_declared_groups_and_other_device(tin):
    lt = tin.latency[0]
    md = latency_markdown(lt)
    rows = {r[1]: r for r in md_rows(md, H100)}
    # GPU, method, runs, pretrain, teacher, score+prune, retrain, other, per run, per run + teacher, grid GPU-min,
    # x tgp-kd, x tgp-kd (no teacher). tgp-kd: seed 0 at 0.9 has a teacher made on the CPU (120 min): not in this
    # H100 row (0 + 30 + 30 + 30) / 4 = 22.50; per run = 20 + 4.6 + 25 = 49.60, + teacher = 72.10.
    assert rows["tgp-kd"][2:] == ["4", "20.00", "22.50‡", "4.60", "25.00", "n/a", "49.60", "72.10‡", "288.40‡", "1.00×‡",
                                  "1.00×"]
    # other = calibrate (2 min, every run) + warmup (unknown group 'warm-up', 1 min, seed 1) = 2.50 per run
    assert rows["magnitude"][2:] == ["4", "20.00", "n/a", "0.60", "30.00", "2.50", "53.10", "53.10", "212.40", "0.74×‡",
                                     "1.07×"]
    # colt: round01 + round02 (group score+prune), final (group retrain); egp: its dense model is group pretrain
    assert rows["colt"][2:] == ["2", "20.00", "n/a", "20.00", "30.00", "n/a", "70.00", "70.00", "140.00", "0.97×‡", "1.41×"]
    assert rows["egp"][2:] == ["2", "10.00", "n/a", "15.00", "n/a", "n/a", "25.00", "25.00", "50.00", "0.35×‡", "0.50×"]
    assert rows["dense"][2:] == ["1", "20.00", "n/a", "n/a", "n/a", "n/a", "20.00", "20.00", "20.00", "0.28×‡", "0.40×"]
    assert ("- ‡ NVIDIA H100 80GB HBM3, tgp-kd, teacher: this cell excludes 1 phase(s) whose cached artifact was "
            "made on another device (teacher made on cpu); its cost on this device is unknown.") in md
    assert md.count("- ‡ ") == 1 and "120.00" not in md
    assert "Phases counted in other: calibrate, warmup (group 'warm-up')." in md
    assert "Evaluation (group eval) is excluded" in md and "dense pre-training included" in md
    tex = latency_latex(lt)
    assert r"& 22.50$^\ddagger$ &" in tex and r"\ddag{} NVIDIA H100 80GB HBM3, tgp-kd, teacher: this cell" in tex
    rows = {r["method"]: r for r in csv.DictReader(io.StringIO(tin.csv_latency()))}
    kd = rows["tgp-kd"]
    assert (kd["sparsity_measure"], kd["teacher_min"], kd["per_run_min"], kd["per_run_teacher_min"],
            kd["excluded_other_device"]) == ("overall", "22.500000", "49.600000", "72.100000", "teacher:teacher@cpu(1)")
    assert (rows["magnitude"]["other_min"], rows["magnitude"]["other_phases"]) == (
        "2.500000", "calibrate; warmup (group 'warm-up')")
    assert (rows["colt"]["ratio_to_ref"], rows["colt"]["ratio_to_ref_no_teacher"]) == ("0.970874", "1.411290")
    assert rows["colt"]["excluded_other_device"] == "" and rows["colt"]["score_prune_min"] == "20.000000"


def test_phase_groups_inferred_for_old_records():
    from bench.phases import phase_group
    from bench.report.aggregate import record_phases, run_time

    assert [phase_group(n) for n in ("pretrain", "teacher", "finetune", "score", "prune", "retrain", "eval",
                                     "mystery")] == ["pretrain", "teacher", "score+prune", "score+prune",
                                                     "score+prune", "retrain", "eval", "other"]
    assert (phase_group("round01", "score+prune"), phase_group("final", "retrain"), phase_group("x", "bogus"),
            phase_group("teacher", "other")) == ("score+prune", "retrain", "other", "other")
    old = {"device_name": H100, "phases": {"teacher": {"seconds": 60, "reused": True},
                                           "mystery": {"seconds": 120, "reused": False}, "eval": {"seconds": 6}}}
    assert {p.name: (p.group, p.device) for p in record_phases(old)} == {
        "eval": ("eval", H100), "mystery": ("other", H100), "teacher": ("teacher", H100)}
    rt = run_time(old)
    assert rt.minutes == {"pretrain": None, "teacher": 1.0, "score+prune": None, "retrain": None, "other": 2.0}
    assert (rt.per_run, rt.with_teacher) == (2.0, 3.0) and not any(rt.excluded.values())
    # A phase that was not reused ran in the run itself: counted whatever device it names.
    new = {"device_name": H100, "phases": {"teacher": {"seconds": 60, "reused": False, "device": "cpu",
                                                       "group": "teacher"}}}
    assert run_time(new).minutes["teacher"] == 1.0


def test_latency_cell_with_every_phase_from_another_device():
    recs = [dict(status="ok", dataset="d", model="m", method="tgp-kd", target_sparsity=0.9, seed=s, top1_final=1.0,
                 run_id=f"{s:016x}", device_name=H100,
                 phases={"teacher": {"seconds": 600, "reused": True, "device": "cpu", "group": "teacher"},
                         "retrain": {"seconds": 60, "reused": False, "device": H100, "group": "retrain"}})
            for s in (0, 1)]
    md = latency_markdown(build_latency_table(recs, "d"))
    assert md_row(md, H100)[3:11] == ["n/a", "—‡", "n/a", "1.00", "n/a", "1.00", "1.00‡", "2.00‡"]
    assert "this cell excludes 2 phase(s) whose cached artifact was made on another device (teacher made on cpu ×2)" in md


def test_rounds_and_unknown_fields_do_not_break(runs):
    from bench.report.figures import figure_style, plot_accuracy, plot_latency

    colt = [r for r in runs if r["method"] == "colt"]
    assert colt and all(len(r["rounds"]) == 15 for r in colt)
    odd = dict(colt[0], run_id="c" * 16, seed=7, future_field={"a": [1, 2]}, rounds=[{"round": 1}],
               phases={"round01": 30, "final": {"seconds": None, "group": "retrain", "extra": 1},
                       "probe": {"seconds": "n/a", "group": None}})
    recs = [r for r in runs if r["dataset"] == "tinyimagenet"] + [odd]
    tabs = build_dataset_tables(recs, "tinyimagenet")
    assert tabs.accuracy[0].cell("colt", 0.9).n == 3 and tabs.markdown() and tabs.latex() and tabs.csv_latency()
    with figure_style():
        assert plot_accuracy(recs, "tinyimagenet") is not None and plot_latency(recs, "tinyimagenet") is not None


# --------------------------------------------------------------------------- grid totals

def _rec(rid, method, phases, artifacts, device="GPU-A", status="ok", device_count=1):
    return {"run_id": rid, "dataset": "cifar10", "model": "resnet18", "method": method, "status": status,
            "target_sparsity": 0.5, "seed": ord(rid), "device_name": device, "device_count": device_count,
            "phases": {n: {"seconds": s * 60, "reused": reused, "group": g, "device": device}
                       for n, (s, reused, g) in phases.items()},
            "artifacts": artifacts}


def test_grid_total_counts_each_shared_artifact_once():
    from bench.report.aggregate import grid_totals
    from bench.report.latency_table import latency_markdown

    dense = {"kind": "dense", "key": "d1", "phases": ["pretrain"]}
    teacher = {"kind": "teachers", "key": "t1", "phases": ["teacher"]}
    runs = [
        # made the dense model (10 min) and retrained (5); eval is never counted
        _rec("a", "magnitude", {"pretrain": (10, False, "pretrain"), "retrain": (5, False, "retrain"),
                                "eval": (1, False, "eval")}, [{**dense, "reused": False}]),
        # reused the dense model, made the teacher (20), retrained (5)
        _rec("b", "tgp-kd", {"pretrain": (10, True, "pretrain"), "teacher": (20, False, "teacher"),
                             "retrain": (5, False, "retrain")}, [{**dense, "reused": True}, {**teacher, "reused": False}]),
        # reused both
        _rec("c", "tgp-kd", {"pretrain": (10, True, "pretrain"), "teacher": (20, True, "teacher"),
                             "retrain": (5, False, "retrain")}, [{**dense, "reused": True}, {**teacher, "reused": True}]),
        # a failed run costs nothing here; a run on another GPU model is totalled apart, on 2 GPUs
        _rec("d", "tgp-kd", {"retrain": (7, False, "retrain")}, [], status="failed"),
        _rec("e", "magnitude", {"pretrain": (3, False, "pretrain"), "retrain": (2, False, "retrain")},
             [{**dense, "key": "d2", "reused": False}], device="GPU-B", device_count=2),
        # an older record: artifacts without their phases: counted in full
        _rec("f", "magnitude", {"pretrain": (10, True, "pretrain"), "retrain": (5, False, "retrain")},
             [{"kind": "dense", "key": "d1", "reused": True}]),
    ]
    a, b = grid_totals(runs)
    assert (a.device, a.runs, a.artifacts, a.shared, a.not_deduplicated) == ("GPU-A", 4, 2, 2, 1)
    assert a.minutes == pytest.approx(10 + 20 + 5 * 3 + 15)          # dense once, teacher once, four retrains, f in full
    assert a.per_run_sum == pytest.approx(15 + 35 + 35 + 15)
    assert (b.device, b.runs, b.artifacts, b.shared) == ("GPU-B", 1, 1, 0)
    assert b.minutes == pytest.approx((3 + 2) * 2)
    md = latency_markdown(build_latency_table(runs, "cifar10"))
    assert "Grid total on GPU-A: 60.00 GPU-minutes for 4 runs" in md
    assert "summed run by run (the grid GPU-min column) it would be 100.00" in md
    assert "1 run(s) recorded before artifacts listed their phases are counted in full" in md
    assert "Grid total on GPU-B: 10.00 GPU-minutes for 1 runs" in md


def test_latency_keeps_a_cpu_and_a_gpu_run_of_the_same_cell_apart():
    """Real records: tgp-kd at 0.9, seeds 0-2, on an H100, and the same cells as if run again on the CPU
    (distinct run ids, the device fields changed). Neither device's runs may hide the other's as
    'superseded'. (The committed CPU folder targets another measure since the like-for-like rerun, so it
    no longer holds the same cells.)"""
    repo = Path(__file__).resolve().parents[1] / "results"
    gpu = [json.loads(p.read_text()) for p in (repo / "h100-small-cifar10" / "runs" / "cifar10").glob("tgp-kd__sp0.9__seed*.json")]
    cpu = [{**r, "run_id": r["run_id"][::-1], "device_type": "cpu", "device_name": "cpu", "precision": "fp32",
            "phases": {k: {**v, "device": "cpu"} for k, v in r["phases"].items()}} for r in gpu]
    runs = gpu + cpu
    assert len(runs) == 6 and len({r["run_id"] for r in runs}) == 6
    lt = build_latency_table(runs, "cifar10")
    assert sorted((row.device, row.method, row.runs) for row in lt.rows) == [
        (H100, "tgp-kd", 3), ("cpu", "tgp-kd", 3)]
    assert sorted(t.device for t in lt.totals) == [H100, "cpu"]


def test_an_interrupted_record_is_on_its_configs_measure_not_old_accounting():
    # Harnesses before this one wrote sparsity_measure only on success; the record's own config says it.
    from bench.report.aggregate import record_measure

    assert record_measure({"status": "interrupted", "config": {"grid": {"sparsity_measure": "overall"}}}) == "overall"
    assert record_measure({"status": "ok", "sparsity_measure": "conv"}) == "conv"
    assert record_measure({"status": "ok", "config": {"grid": {}}}) is None          # an old record


def test_the_caption_states_the_data_sizes_and_a_resize():
    """A table says what its runs saw: a resized Tiny ImageNet at 32 px is named as such (issue 19)."""
    from bench.report.accuracy_table import data_sizes

    tiny = {"data": {"n_train": 4000, "n_test": 2000, "image_size": 32, "resized_from": 64}}
    cifar = {"data": {"n_train": 5000, "n_test": 10000, "image_size": 32}}
    assert data_sizes([tiny, tiny, cifar, {"data": {}}]) == [
        "4,000 train / 2,000 test images at 32 px (resized from 64 px at load)",
        "5,000 train / 10,000 test images at 32 px"]
