"""Claims as data and their verdicts (bench/report/claims.py) on hand-made records with known statistics.

Differences a - b per seed and what they must give (t(0.975, 2) = 4.302653):

  holds          [2, 3, 4]     mean 3, s 1, interval 3 +- 2.48414 = [0.51586, 5.48414]
  contradicted   [-2, -3, -4]  mean -3, interval [-5.48414, -0.51586]
  crosses zero   [1, 2, 3]     mean 2, interval [-0.48414, 4.48414]
  n < 3          [5, 6]        mean 5.5, interval 5.5 +- 12.7062 * 0.5 = [-0.8531, 11.8531]
"""
import csv
import io
import math
from pathlib import Path

import pytest

from bench.report import claims as C
from bench.report.references import Reference, load_references, make_reference

REPO_REF = Path(__file__).resolve().parents[1] / "results" / "reference"
KNOWN = {"tgp", "tgp-kd", "magnitude", "magnitude-ft", "dense", "colt"}


def rec(method, target, seed, top1, *, dataset="cifar10", minutes=None, device="cpu", config=None, overall=None,
        prunable_set="conv", exact=True, label=None):
    """A minimal ok run record; ``minutes`` become one retrain phase on ``device``."""
    r = {"status": "ok", "dataset": dataset, "model": "resnet18", "method": label or method, "method_name": method,
         "target_sparsity": target, "seed": seed, "top1_final": top1, "top1_best": top1 + 1,
         "run_id": f"{label or method}-{target}-{seed}", "ended_at": "2025-01-01T00:00:00+00:00",
         "device_name": device, "prunable_set": prunable_set, "sparsity_exact": exact,
         "sparsity": {"prunable": target, "conv": target, "overall": target if overall is None else overall},
         "config": config or {}}
    if minutes is not None:
        r["phases"] = {"retrain": {"seconds": 60.0 * minutes, "reused": False, "group": "retrain", "device": device}}
    return r


def pairs(a, b, diffs, target=0.9, base=50.0, **kw):
    """Records of ``a`` and ``b`` at ``target`` whose differences a - b, seed by seed, are ``diffs``."""
    return [r for s, d in enumerate(diffs) for r in (rec(a, target, s, base + d, **kw), rec(b, target, s, base, **kw))]


def claim(**kw):
    raw = {"id": "c", "statement": "a beats b.", "a": "tgp", "b": "magnitude", "direction": "greater",
           "datasets": ["cifar10"], **kw}
    return C.make_claim(raw, "test")


def rows_of(cl, runs, refs=(), **kw):
    return C.evaluate([cl], runs, refs, known=KNOWN, **kw)


# --------------------------------------------------------------------------- statistics

@pytest.mark.parametrize("df, q", [(1, 12.706205), (2, 4.302653), (3, 3.182446), (4, 2.776445), (10, 2.228139),
                                   (30, 2.042272)])
def test_t_quantile_matches_the_tables(df, q):
    assert C.t_quantile(0.975, df) == pytest.approx(q, abs=1e-5)
    assert C.t_quantile(0.025, df) == pytest.approx(-q, abs=1e-5)


@pytest.mark.parametrize("diffs, direction, mean, low, high, verdict", [
    ([2, 3, 4], "greater", 3.0, 0.51586, 5.48414, ("holds", "")),
    ([-2, -3, -4], "greater", -3.0, -5.48414, -0.51586, ("contradicted", "")),
    ([-2, -3, -4], "less", -3.0, -5.48414, -0.51586, ("holds", "")),
    ([1, 2, 3], "greater", 2.0, -0.48414, 4.48414, ("inconclusive", "interval contains 0")),
    ([5, 6], "greater", 5.5, -0.85310, 11.85310, ("inconclusive", "n < 3")),
])
def test_paired_statistics_and_verdicts(diffs, direction, mean, low, high, verdict):
    st = C.paired_stats(diffs)
    assert (st.n, st.mean) == (len(diffs), pytest.approx(mean))
    assert (st.low, st.high) == (pytest.approx(low, abs=1e-4), pytest.approx(high, abs=1e-4))
    assert C.verdict(st, direction) == verdict


def test_one_pair_has_no_interval_and_is_inconclusive():
    st = C.paired_stats([4.0])
    assert (st.n, st.mean, st.low, st.high) == (1, 4.0, None, None)
    assert C.verdict(st, "greater") == ("inconclusive", "n < 3")


# --------------------------------------------------------------------------- claims on records

def test_each_verdict_from_paired_records():
    runs = (pairs("tgp", "magnitude", [2, 3, 4], 0.5) + pairs("tgp", "magnitude", [-2, -3, -4], 0.9)
            + pairs("tgp", "magnitude", [1, 2, 3], 0.95) + pairs("tgp", "magnitude", [5, 6], 0.98))
    rows = rows_of(claim(), runs)
    got = {r.target: (r.stats.n, round(r.stats.mean, 6), r.verdict_text) for r in rows}
    assert got == {0.5: (3, 3.0, "holds"), 0.9: (3, -3.0, "contradicted"),
                   0.95: (3, 2.0, "inconclusive (interval contains 0)"), 0.98: (2, 5.5, "inconclusive (n < 3)")}
    assert [r.seeds for r in rows][0] == [0, 1, 2]


def test_pairs_share_the_seed_and_unpaired_runs_do_not_count():
    runs = pairs("tgp", "magnitude", [2, 3, 4]) + [rec("tgp", 0.9, 7, 99.0), rec("magnitude", 0.9, 8, 0.0)]
    (row,) = rows_of(claim(), runs)
    assert row.seeds == [0, 1, 2] and row.stats.mean == pytest.approx(3.0)


def test_sparsity_range_on_the_target_and_on_a_measured_definition():
    runs = pairs("tgp", "magnitude", [1, 1, 1], 0.5) + pairs("tgp", "magnitude", [2, 2, 2], 0.985, overall=0.9841)
    high = rows_of(claim(sparsity={"min": 90, "definition": "target"}), runs)
    assert [r.target for r in high] == [0.985]
    above98 = rows_of(claim(sparsity={"min": 98, "definition": "overall"}), runs)
    assert [r.target for r in above98] == [0.985]
    above99 = rows_of(claim(sparsity={"min": 99, "definition": "overall"}), runs)
    assert [(r.target, r.verdict_text) for r in above99] == [(None, "no data")]


def test_final_epoch_by_default_best_on_request():
    runs = pairs("tgp", "magnitude", [2, 3, 4])
    (final,) = rows_of(claim(), runs)
    (best,) = rows_of(claim(), runs, accuracy="best")     # rec() puts best = final + 1 on both sides
    assert final.diffs == best.diffs == [2.0, 3.0, 4.0]


def test_latency_claim_pairs_minutes_on_one_device_as_a_log_ratio():
    cl = claim(metric="minutes", a="tgp-kd", b="colt", direction="less", paper_ratio=0.1008)
    runs = []
    for seed, (ma, mb) in enumerate([(10, 100), (11, 100), (9, 110)]):
        runs += [rec("tgp-kd", 0.977, seed, 90, minutes=ma), rec("colt", 0.977, seed, 90, minutes=mb)]
    runs += [rec("tgp-kd", 0.977, 3, 90, minutes=10, device="gpu"), rec("colt", 0.977, 3, 90, minutes=100)]
    (row,) = rows_of(cl, runs)
    expected = [math.log(10 / 100), math.log(11 / 100), math.log(9 / 110)]
    assert row.diffs == pytest.approx(expected) and row.device == "cpu"
    assert row.verdict_text == "holds" and "1 pair(s) dropped: on different devices" in row.notes
    cells = C._row_cells(row)
    assert cells[5] == "< 1× (paper 0.10×)"
    assert cells[6] == f"{math.exp(sum(expected) / 3):.2f}×"


def test_not_testable_yet_and_no_data_rows_are_kept():
    runs = pairs("tgp", "magnitude", [2, 3, 4])
    (untestable,) = rows_of(claim(b="cskd-simple", datasets=["cifar10", "cifar100"]), runs)
    assert (untestable.dataset, untestable.verdict_text) == ("cifar10, cifar100", "not testable yet")
    assert untestable.notes == ["not in the harness: cskd-simple"]
    rows = rows_of(claim(b="magnitude-ft", datasets=["cifar10", "cifar100"]), runs)
    assert [(r.dataset, r.verdict_text, r.notes) for r in rows] == [
        ("cifar10", "no data", ["no runs of magnitude-ft"]),
        ("cifar100", "no data", ["no run records of this dataset"])]


def test_all_datasets_and_the_dataset_filter():
    runs = pairs("tgp", "magnitude", [2, 3, 4]) + pairs("tgp", "magnitude", [1, 1, 1], dataset="synthetic")
    assert [r.dataset for r in rows_of(claim(datasets="all"), runs)] == ["cifar10", "synthetic"]
    assert [r.dataset for r in rows_of(claim(datasets="all"), runs, datasets=["synthetic"])] == ["synthetic"]
    assert rows_of(claim(datasets=["cifar100"], b="cskd-simple"), runs, datasets=["synthetic"]) == []


def test_sides_select_by_label_and_config():
    t3 = {"method": "tgp-kd", "labels": ["tgp-kd-T3", "tgp-kd"], "config": {"kd.temperature": 3}}
    t5 = {"method": "tgp-kd", "labels": ["tgp-kd-T5", "tgp-kd"], "config": {"kd.temperature": 5}}
    kd = lambda t: {"kd": {"temperature": float(t)}}  # noqa: E731
    runs = []
    for seed, d in enumerate([1, 2, 3]):
        runs += [rec("tgp-kd", 0.9, seed, 60 + d, config=kd(3)),                        # the plain label at T=3
                 rec("tgp-kd", 0.9, seed, 60, config=kd(5), label="tgp-kd-T5")]
    (row,) = rows_of(claim(a=t3, b=t5), runs)
    assert row.diffs == [1.0, 2.0, 3.0] and row.claim.compared() == "tgp-kd (temperature=3) − tgp-kd (temperature=5), top-1 (pp)"
    (reverse,) = rows_of(claim(a=t5, b=t3), runs)
    assert reverse.diffs == [-1.0, -2.0, -3.0]


def test_notes_flag_different_prunable_sets_and_inexact_sparsity():
    runs = [r for s, d in enumerate([2, 3, 4]) for r in
            (rec("tgp-kd", 0.9, s, 60 + d), rec("colt", 0.9, s, 60, prunable_set="conv+linear", exact=False))]
    (row,) = rows_of(claim(a="tgp-kd", b="colt"), runs)
    assert "targets over different prunable sets (conv, conv+linear)" in row.notes
    assert "§ colt's realised sparsity differs from the target" in row.notes


def test_published_number_stands_in_for_a_method_without_runs():
    refs = [make_reference({"dataset": "cifar10", "method": "egp", "sparsity": 90, "sparsity_definition": "conv",
                            "top1": 50.0, "source": "EGP paper"}, "r1"),
            make_reference({"dataset": "cifar10", "method": "egp", "sparsity": 98, "sparsity_definition": "conv-relu",
                            "top1": 40.0, "source": "EGP paper"}, "r2"),
            make_reference({"dataset": "cifar10", "method": "egp", "sparsity_definition": "unknown",
                            "top1": 45.0, "source": "EGP paper"}, "r3")]
    runs = [rec("tgp-kd", 0.9, s, 50.0 + d) for s, d in enumerate([2, 3, 4])]
    rows = rows_of(claim(a="tgp-kd", b="egp"), runs, refs)
    assert rows[0].basis == "published (EGP paper)" and rows[0].diffs == [2.0, 3.0, 4.0]
    assert rows[0].verdict_text == "holds"
    assert [r.verdict_text for r in rows[1:]] == ["no data", "no data"]
    assert "not compared, counted over 'conv-relu'" in rows[1].notes[0]
    assert "not compared, the source states no sparsity" in rows[2].notes[0]


# --------------------------------------------------------------------------- the claims file, outputs

def test_shipped_claims_cover_the_papers_statements_and_the_harness_questions():
    claims = {c.id: c for c in C.load_claims(REPO_REF / "claims.yaml")}
    sd = {"cskd-simple", "cskd-epsd", "pskd-simple", "pskd-epsd", "dlb-simple", "dlb-epsd"}
    assert {c.b.method for c in claims.values() if c.a.method == "tgp-kd" and c.direction == "greater"} >= sd | {"egp", "tgp"}
    assert all(claims[f"beats-{m}"].sparsity_min == 90 for m in sd)
    egp = claims["trails-egp-above-98-cifar10"]
    assert (egp.direction, egp.datasets, egp.sparsity_min, egp.sparsity_definition) == ("less", ("cifar10",), 98, "overall")
    assert claims["cheaper-than-colt-cifar10"].metric == "minutes"
    assert claims["cheaper-than-colt-cifar100"].sparsity_definition == "unstated"
    assert {claims["temperature-3-on-cifar"].a.config, claims["temperature-5-on-tinyimagenet"].b.config} == {
        (("kd.temperature", 3),)}
    harness = {c.b.method for c in claims.values() if c.evidence == "harness"}
    assert harness == {"magnitude-ft", "grad-ce", "magnitude", "random-layerwise", "tgp-rewind", "dense"}
    assert all(c.quote for c in claims.values() if c.evidence != "harness")
    # claims.yaml sits beside the reference files without being read as one
    assert all(r.origin.split(":")[0].endswith(("paper.yaml", "baselines.csv")) for r in load_references(REPO_REF))


@pytest.mark.parametrize("raw, message", [
    ({"id": "x", "statement": "s", "a": "tgp", "b": "m", "direction": "better", "datasets": ["d"]}, "'direction' is 'better'"),
    ({"id": "x", "statement": "s", "a": "tgp", "b": "m", "direction": "greater", "datasets": ["d"], "sparsity": {"min": 0.9,
      "definition": "weights"}}, "sparsity definition 'weights'"),
    ({"id": "x", "statement": "s", "a": "tgp", "direction": "greater", "datasets": ["d"]}, "missing required key(s) b"),
    ({"id": "x", "statement": "s", "a": {"labels": ["t"]}, "b": "m", "direction": "greater", "datasets": ["d"]},
     "a side is a method label or a mapping with 'method'"),
])
def test_bad_claims_name_the_claim_and_the_fix(raw, message):
    with pytest.raises(C.ClaimError) as e:
        C.make_claim(raw, "f.yaml: claim 1")
    assert message in str(e.value) and str(e.value).startswith("f.yaml: claim 1 (x")


def test_unstated_published_sparsity_is_flagged_not_compared():
    with pytest.raises(ValueError, match="'sparsity' is empty"):
        make_reference({"dataset": "d", "method": "m", "sparsity_definition": "overall", "minutes": 1, "source": "s"})
    refs = {(r.dataset, r.method): r for r in load_references(REPO_REF) if r.minutes is not None}
    assert refs[("cifar10", "tgp-kd")].sparsity == 97.7
    for ds in ("cifar100", "tinyimagenet"):
        r = refs[(ds, "colt")]
        assert (r.sparsity, r.sparsity_definition, r.sparsity_text()) == (None, "unknown", "not stated")


def test_unstated_sparsity_in_the_tables():
    from bench.report.tables import build_accuracy_table, build_latency_table

    ref = Reference("cifar10", "tgp", None, "unknown", "s", top1=90.0, minutes=5.0)
    runs = [rec("tgp", 0.9, 0, 60.0, minutes=2.0)]
    (pm,) = build_accuracy_table(runs, "cifar10", references=[ref]).paper
    assert (pm.target, pm.ours, pm.note) == (None, None, "the source states no sparsity: not compared")
    (pl,) = build_latency_table(runs, "cifar10", references=[ref]).paper
    assert pl.target is None and pl.note.startswith("the source states no sparsity")


def test_cli_writes_table_csv_and_deterministic_forest_plot(tmp_path):
    import json

    from bench.report import cli

    res = tmp_path / "results"
    runs = pairs("tgp", "magnitude", [2, 3, 4]) + pairs("tgp-kd", "tgp", [-2, -3, -4], 0.98)
    for r in runs:
        p = res / "runs" / r["dataset"] / f"{r['run_id']}.json"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(r))
    outs = []
    for name in ("a", "b"):
        assert cli.main(["claims", "--results", str(res), "--plots", str(tmp_path / name)]) == 0
        outs.append({p.name: p.read_bytes() for p in (tmp_path / name).iterdir()})
    assert outs[0] == outs[1] and sorted(outs[0]) == ["claims.pdf", "claims.png"]
    md = (res / "tables" / "claims.md").read_text()
    assert "| harness-tgp-vs-magnitude | cifar10 | resnet18 | 90.00% | tgp − magnitude, top-1 (pp) | > 0 | +3.00 | " \
           "[+0.52, +5.48] | 3 | holds |" in md
    assert "| retrain-with-kd | cifar10 | resnet18 | 98.00% | tgp-kd − tgp, top-1 (pp) | > 0 | -3.00 | " \
           "[-5.48, -0.52] | 3 | contradicted |" in md
    assert "| beats-cskd-simple |" in md and "Verdict: **holds** when n ≥ 3" in md
    rows = list(csv.DictReader(io.StringIO((res / "tables" / "claims.csv").read_text())))
    row = next(r for r in rows if r["claim"] == "harness-tgp-vs-magnitude")
    assert (row["n"], row["mean"], row["ci_low"], row["interval"], row["diffs"]) == (
        "3", "3.000000", "0.515862", "t", "2.000000;3.000000;4.000000")
    assert cli.main(["claims", "--results", str(res), "--claims", str(tmp_path / "none.yaml")]) == 2
