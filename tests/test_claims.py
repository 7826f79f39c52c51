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

from bench import cli as bench_cli
from bench.report import claims as C
from bench.report import claims_file as F
from bench.report import claims_render as R
from bench.report import stats as S
from bench.report.references import Reference, load_references, make_reference

REPO_REF = Path(__file__).resolve().parents[1] / "results" / "reference"
KNOWN = {"tgp", "tgp-kd", "magnitude", "magnitude-ft", "dense", "colt"}


def rec(method, target, seed, top1, *, dataset="cifar10", minutes=None, device="cpu", config=None, overall=None,
        prunable_set="conv", exact=True, label=None, measure=None, realised=None, status="ok", max_sparsity=None,
        epochs=26.0, teacher=None, layer_density=None):
    """A minimal run record; ``minutes`` become one retrain phase on ``device``. Old format (target over the
    method's own ``prunable_set``, ``sparsity_exact``) unless ``measure`` is given: then the new format, the
    target on that measure, ``realised`` where it landed (on target within 0.05 points), and ``status``
    ``unreachable`` (with ``max_sparsity``, no accuracy) available. ``epochs``: the student budget (None: no
    budget recorded); ``teacher``: the teacher's top-1 (a 25-epoch teacher on 5,000 images)."""
    r = {"status": status, "dataset": dataset, "model": "resnet18", "method": label or method, "method_name": method,
         "target_sparsity": target, "seed": seed, "run_id": f"{label or method}-{target}-{seed}",
         "ended_at": "2025-01-01T00:00:00+00:00", "device_name": device, "prunable_set": prunable_set,
         "config": config or {}}
    if measure is None:
        r["sparsity_exact"] = exact
    else:
        r["sparsity_measure"] = measure
    if status == "unreachable":
        return dict(r, max_sparsity=max_sparsity, reason=f"{prunable_set} pruned whole reaches {max_sparsity}")
    real = target if realised is None else realised
    r.update({"top1_final": top1, "top1_best": top1 + 1,
              "sparsity": {"prunable": real, "conv": real, "overall": real if overall is None else overall}})
    if measure is not None:
        r.update({"sparsity_realised": real, "sparsity_on_target": abs(real - target) <= 0.0005,
                  "off_target_reason": None if abs(real - target) <= 0.0005 else "exact_final_round: false"})
    if minutes is not None:
        r["phases"] = {"retrain": {"seconds": 60.0 * minutes, "reused": False, "group": "retrain", "device": device}}
    if epochs is not None:
        r["budget"] = {"student_epochs": epochs, "student_images": int(5000 * epochs),
                       "teacher_epochs": 25 if teacher is not None else 0,
                       "teacher_images": 125000 if teacher is not None else 0, "basis": "equal",
                       "reference_student_epochs": 26.0, "ratio": epochs / 26.0}
    if teacher is not None:
        r["teacher"] = {"top1": teacher}
    if layer_density is not None:
        r["layer_density"] = layer_density
    return r


def pairs(a, b, diffs, target=0.9, base=50.0, **kw):
    """Records of ``a`` and ``b`` at ``target`` whose differences a - b, seed by seed, are ``diffs``."""
    return [r for s, d in enumerate(diffs) for r in (rec(a, target, s, base + d, **kw), rec(b, target, s, base, **kw))]


def claim(**kw):
    raw = {"id": "c", "statement": "a beats b.", "a": "tgp", "b": "magnitude", "direction": "greater",
           "datasets": ["cifar10"], **kw}
    return F.make_claim(raw, "test")


def rows_of(cl, runs, refs=(), known=KNOWN, **kw):
    return C.evaluate([cl], runs, refs, known=known, **kw)


# --------------------------------------------------------------------------- statistics

@pytest.mark.parametrize("n, q", [(2, 12.706205), (3, 4.302653), (4, 3.182446), (11, 2.228139)])
def test_t_interval_uses_the_tables_quantile(n, q):
    diffs = [float(i) for i in range(n)]                 # mean (n-1)/2, sample std known
    st = S.paired_stats(diffs)
    sd = math.sqrt(sum((d - st.mean) ** 2 for d in diffs) / (n - 1))
    assert st.high - st.mean == pytest.approx(q * sd / math.sqrt(n), abs=1e-5)


def test_holm_on_a_known_p_vector():
    # Holm (1979): sorted p x (m - rank), running maximum, capped at 1; returned in the input order
    got = S.holm([0.01, 0.04, 0.03, 0.005])
    assert got == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert S.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0]) and S.holm([]) == []
    # every adjusted value is at least the raw one and at most Bonferroni's
    ps = [0.001, 0.2, 0.02, 0.013, 0.6]
    for p, h in zip(ps, S.holm(ps)):
        assert p <= h <= min(1.0, len(ps) * p)


def test_the_p_value_is_the_two_sided_paired_t_test():
    st = S.paired_stats([2.0, 3.0, 4.0])
    assert st.p == pytest.approx(0.0351, abs=1e-4)          # t = 5.196, df = 2
    assert S.paired_stats([1.0, 1.0, 1.0]).p == 0.0 and S.paired_stats([0.0, 0.0]).p == 1.0


@pytest.mark.parametrize("diffs, direction, mean, low, high, verdict", [
    ([2, 3, 4], "greater", 3.0, 0.51586, 5.48414, ("holds", "")),
    ([-2, -3, -4], "greater", -3.0, -5.48414, -0.51586, ("contradicted", "")),
    ([-2, -3, -4], "less", -3.0, -5.48414, -0.51586, ("holds", "")),
    ([1, 2, 3], "greater", 2.0, -0.48414, 4.48414, ("inconclusive", "interval contains 0")),
    ([5, 6], "greater", 5.5, -0.85310, 11.85310, ("inconclusive", "n < 3")),
])
def test_paired_statistics_and_verdicts(diffs, direction, mean, low, high, verdict):
    st = S.paired_stats(diffs)
    assert (st.n, st.mean) == (len(diffs), pytest.approx(mean))
    assert (st.low, st.high) == (pytest.approx(low, abs=1e-4), pytest.approx(high, abs=1e-4))
    assert C.verdict(st, direction) == verdict


def test_one_pair_has_no_interval_and_is_inconclusive():
    st = S.paired_stats([4.0])
    assert (st.n, st.mean, st.low, st.high) == (1, 4.0, None, None)
    assert C.verdict(st, "greater") == ("inconclusive", "n < 3")


# --------------------------------------------------------------------------- claims on records

def test_each_verdict_from_paired_records():
    runs = (pairs("tgp", "magnitude", [2.9, 3, 3.1], 0.5) + pairs("tgp", "magnitude", [-2.9, -3, -3.1], 0.9)
            + pairs("tgp", "magnitude", [1, 2, 3], 0.95) + pairs("tgp", "magnitude", [5, 6], 0.98))
    rows = rows_of(claim(), runs)
    got = {r.target: (r.stats.n, round(r.stats.mean, 6), r.verdict_text) for r in rows}
    assert got == {0.5: (3, 3.0, "holds"), 0.9: (3, -3.0, "contradicted"),
                   0.95: (3, 2.0, "inconclusive (interval contains 0)"), 0.98: (2, 5.5, "inconclusive (n < 3)")}
    # the family: the three rows with n >= 3; Holm multiplies the smallest p by 3
    assert [r.p_holm is not None for r in rows] == [True, True, True, False]
    assert rows[0].p_holm == pytest.approx(min(1, 3 * rows[0].stats.p))


def test_holm_turns_a_raw_95_percent_verdict_into_inconclusive_in_a_family():
    # [2, 3, 4]: p = 0.0351 alone (holds); three such tests in one file: 3 x 0.0351 > 0.05
    alone = rows_of(claim(), pairs("tgp", "magnitude", [2, 3, 4]))
    assert alone[0].verdict_text == "holds" and alone[0].p_holm == pytest.approx(alone[0].stats.p)
    three = rows_of(claim(), pairs("tgp", "magnitude", [2, 3, 4], 0.5) + pairs("tgp", "magnitude", [2, 3, 4], 0.9)
                    + pairs("tgp", "magnitude", [2, 3, 4], 0.95))
    assert [r.verdict for r in three] == [("inconclusive", "Holm-adjusted p = 0.105")] * 3
    assert all(r.stats.low > 0 for r in three)             # the raw interval alone would have said holds
    assert [r.seeds for r in three][0] == [0, 1, 2]


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
    cells = R._row_cells(row)
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


def test_old_records_on_different_sets_are_not_paired():
    """Old records: each target was over the method's own prunable set; targets over different sets are not
    like for like, so no pair is formed and the row says why (the old 'targets over different prunable sets'
    note is gone with the pairing it warned about)."""
    runs = [r for s, d in enumerate([2, 3, 4]) for r in
            (rec("tgp-kd", 0.9, s, 60 + d), rec("cskd-simple", 0.9, s, 60, prunable_set="conv+linear"))]
    (row,) = rows_of(claim(a="tgp-kd", b="cskd-simple"), runs, known=KNOWN | {"cskd-simple"})
    assert (row.target, row.verdict_text, row.stats.n) == (0.9, "no data", 0)
    assert row.notes == ["no pair: targets on different measures (tgp-kd: conv, cskd-simple: conv+linear; old "
                         "accounting) (3 seeds)"]
    # old records off target (sparsity_exact: false) are not paired either
    runs = [r for s, d in enumerate([2, 3, 4]) for r in (rec("tgp-kd", 0.9, s, 60 + d), rec("colt", 0.9, s, 60, exact=False))]
    (row,) = rows_of(claim(a="tgp-kd", b="colt"), runs)
    assert row.verdict_text == "no data" and row.notes == ["no pair: colt off target (realised 90.00% conv) (3 seeds)"]


def test_pairs_only_ok_on_target_runs_and_says_why_not():
    ov = dict(measure="overall")
    runs = []
    for s in range(3):
        runs += [rec("tgp-kd", 0.9, s, 60 + s, **ov), rec("tgp-kd", 0.98, s, 50 + s, **ov)]
        # colt at 0.9: seed 1 overshoots; at 0.98 every seed does
        runs += [rec("colt", 0.9, s, 58, realised=0.9042 if s == 1 else 0.9, **ov),
                 rec("colt", 0.98, s, 48, realised=0.9821, **ov)]
        runs += [rec("egp", 0.9, s, 57, prunable_set="conv-noshortcut", **ov),
                 rec("egp", 0.98, s, None, status="unreachable", max_sparsity=0.9791, prunable_set="conv-noshortcut",
                     **ov)]
    colt = {r.target: r for r in rows_of(claim(a="tgp-kd", b="colt"), runs)}
    assert (colt[0.9].seeds, colt[0.9].diffs) == ([0, 2], [2.0, 4.0])
    assert colt[0.9].notes == ["1 pair(s) not formed: colt off target (realised 90.42% overall)"]
    assert (colt[0.98].verdict_text, colt[0.98].notes) == (
        "no data", ["no pair: colt off target (realised 98.21% overall) (3 seeds)"])
    egp = {r.target: r for r in rows_of(claim(a="tgp-kd", b="egp"), runs, known=KNOWN | {"egp"})}
    assert egp[0.9].diffs == [3.0, 4.0, 5.0] and egp[0.9].verdict_text == "holds"
    assert (egp[0.98].verdict_text, egp[0.98].notes) == (
        "no data", ["no pair: egp unreachable at 98.00% overall (max 97.91%) (3 seeds)"])
    md = R.claims_markdown(list(egp.values()), [])
    assert "| c | cifar10 | resnet18 | 98.00% | tgp-kd − egp, top-1 (pp) | > 0 |  |  |  |  |  |  | no data | no pair: " \
           "egp unreachable at 98.00% overall (max 97.91%) (3 seeds) |" in md


def test_sd_sides_fall_back_to_the_matched_label_and_say_so():
    sd = {"method": "cskd-simple", "labels": ["cskd-simple", "cskd-simple-matched"]}
    known = KNOWN | {"cskd-simple"}
    ov = dict(measure="overall", prunable_set="conv+linear")
    runs = [r for s, d in enumerate([2, 3, 4]) for r in
            (rec("tgp-kd", 0.9, s, 60 + d, measure="overall"), rec("cskd-simple", 0.9, s, 60, label="cskd-simple-matched", **ov))]
    (row,) = rows_of(claim(a="tgp-kd", b=sd), runs, known=known)
    assert row.diffs == [2.0, 3.0, 4.0] and row.notes == ["b runs: cskd-simple-matched (3 pairs)"]
    # the official-budget runs win where present; no note then
    runs += [rec("cskd-simple", 0.9, s, 61, **ov) for s in range(3)]
    (row,) = rows_of(claim(a="tgp-kd", b=sd), runs, known=known)
    assert row.diffs == [1.0, 2.0, 3.0] and row.notes == []


def test_egp_shortcut_stands_in_only_where_egp_is_unreachable():
    egp = {"method": "egp", "labels": ["egp", "egp-shortcut"], "fallback": "unreachable"}
    known = KNOWN | {"egp"}
    ov = dict(measure="overall")
    runs = []
    for s in range(3):
        runs += [rec("tgp-kd", t, s, 60 + s, **ov) for t in (0.9, 0.98, 0.9841)]
        runs += [rec("egp", t, s, 55, label="egp-shortcut", **ov) for t in (0.9, 0.98, 0.9841)]
        runs += [rec("egp", 0.9841, s, None, status="unreachable", max_sparsity=0.9831, **ov),   # egp cannot reach it
                 rec("egp", 0.98, s, 57, realised=0.9812, **ov)]                              # egp off target
    rows = {r.target: r for r in rows_of(claim(a="tgp-kd", b=egp), runs, known=known)}
    assert rows[0.9841].diffs == [5.0, 6.0, 7.0]
    assert rows[0.9841].notes == ["b runs: egp-shortcut (3 pairs; egp unreachable there)"]
    # off target is not unreachable: the variant does not replace it, the row says why there is no pair
    assert rows[0.98].notes == ["no pair: egp off target (realised 98.12% overall) (3 seeds)"]
    # egp not run at 0.9: nothing is unreachable there, the variant alone does not stand for egp
    assert 0.9 not in rows
    bad = {"id": "x", "statement": "s", "a": "tgp", "b": dict(egp, fallback="always"), "direction": "greater",
           "datasets": ["d"]}
    with pytest.raises(F.ClaimError, match="'fallback' is 'always'; allowed: absent, unreachable"):
        F.make_claim(bad, "f.yaml: claim 1")


def test_ranges_are_read_on_the_overall_measure_with_the_tolerance():
    """The engine lands 0.9 overall at 0.8999987: in a 'min 90' range. A grid that targets 0.977 overall is at
    the paper's latency point (97.7%, range 97.6-97.8); a grid on another measure is read on the measured overall
    sparsity of side a's runs."""
    runs = pairs("tgp", "magnitude", [1, 1, 1], 0.9, measure="overall", realised=0.8999987)
    (row,) = rows_of(claim(sparsity={"min": 90, "definition": "overall"}), runs)
    assert row.target == 0.9 and row.stats.n == 3
    conv = pairs("tgp", "magnitude", [1, 1, 1], 0.9, measure="conv", overall=0.8942)
    (row,) = rows_of(claim(sparsity={"min": 90, "definition": "overall"}), conv)
    assert row.target is None and row.verdict_text == "no data"
    conv = pairs("tgp", "magnitude", [1, 1, 1], 0.9, measure="conv", overall=0.8999987)   # within the tolerance
    assert [r.target for r in rows_of(claim(sparsity={"min": 90, "definition": "overall"}), conv)] == [0.9]
    claims = {c.id: c for c in F.load_claims(REPO_REF / "claims.yaml")}
    lat = claims["cheaper-than-colt-cifar10"]
    at = lambda t: [rec(m, t, s, 90, measure="overall", minutes=mins) for s in range(3)  # noqa: E731
                    for m, mins in (("tgp-kd", 10), ("colt", 100))]
    assert [r.target for r in C.evaluate([lat], at(0.977), known=KNOWN)] == [0.977]
    assert [r.target for r in C.evaluate([lat], at(0.98), known=KNOWN)] == [None]


def test_cost_convention_tgp_kd_against_colt_by_hand():
    """tgp-kd reuses a dense model (10 min when it was made, one per seed) and a teacher (20 min, shared by the
    seeds); COLT trains its own dense partition models (round00) and prunes in rounds. By hand, per seed s:

      tgp-kd  per run = pretrain 10 + score+prune (2 + 0.5 + 0.5) + retrain (10, 11, 9) = 23, 24, 22
              per run + teacher = 43, 44, 42
      colt    per run = round00 20 + round01..05 5 x 10 + final (10, 12, 8) = 80, 82, 78 (no teacher)

    The claim tests (per run + teacher) of tgp-kd / per run of COLT: 43/80, 44/82, 42/78; the note gives the
    ratio without the teacher: 23/80, 24/82, 22/78 (geometric mean 0.29). Grid total: each dense model and the
    teacher once: 3 x 10 + 20 + (3 + 10) + (3 + 11) + (3 + 9) + 80 + 82 + 78 = 329 GPU-minutes; run by run
    3 x 10 + 3 x 20 + 39 + 240 = 369."""
    from bench.report.aggregate import grid_totals
    from bench.report.latency_table import build_latency_table, latency_markdown

    def ph(seconds, group, reused=False):
        return {"seconds": seconds, "group": group, "reused": reused, "device": "GPU"}

    runs = []
    for s, (kd_retrain, colt_final) in enumerate([(600, 600), (660, 720), (540, 480)]):
        kd = rec("tgp-kd", 0.977, s, 90.0, measure="overall", realised=0.97699, device="GPU")
        kd["phases"] = {"pretrain": ph(600, "pretrain", True), "teacher": ph(1200, "teacher", True),
                        "finetune": ph(120, "score+prune"), "score": ph(30, "score+prune"), "prune": ph(30, "score+prune"),
                        "retrain": ph(kd_retrain, "retrain"), "eval": ph(60, "eval")}
        kd["artifacts"] = [{"kind": "dense", "key": f"d{s}", "phases": ["pretrain"], "reused": True},
                           {"kind": "teachers", "key": "t", "phases": ["teacher"], "reused": True}]
        colt = rec("colt", 0.977, s, 89.0, measure="overall", realised=0.97702, device="GPU")
        colt["phases"] = {"round00": ph(1200, "score+prune"), "final": ph(colt_final, "retrain"), "eval": ph(60, "eval"),
                          **{f"round0{i}": ph(600, "score+prune") for i in range(1, 6)}}
        colt["artifacts"] = []
        runs += [kd, colt]
    lt = build_latency_table(runs, "cifar10")
    rows = {r.method: r for r in lt.rows}
    kd, colt = rows["tgp-kd"], rows["colt"]
    assert (kd.pretrain, kd.teacher, kd.score_prune, kd.retrain) == pytest.approx((10, 20, 3, 10))
    assert (kd.per_run, kd.per_run_teacher) == pytest.approx((23, 43))
    assert (colt.pretrain, colt.teacher, colt.per_run, colt.per_run_teacher) == (None, None, pytest.approx(80),
                                                                                 pytest.approx(80))
    assert (colt.ratio, colt.ratio_student) == (pytest.approx(80 / 43), pytest.approx(80 / 23))
    md = latency_markdown(lt)
    assert "| GPU | tgp-kd | 3 | 10.00 | 20.00 | 3.00 | 10.00 | n/a | 23.00 | 43.00 | 129.00 | 1.00× | 1.00× |" in md
    assert "| GPU | colt | 3 | n/a | n/a | 70.00 | 10.00 | n/a | 80.00 | 80.00 | 240.00 | 1.86× | 3.48× |" in md
    (total,) = grid_totals(runs)
    assert (total.minutes, total.per_run_sum) == (pytest.approx(329), pytest.approx(369))
    claims = {c.id: c for c in F.load_claims(REPO_REF / "claims.yaml")}
    (row,) = C.evaluate([claims["cheaper-than-colt-cifar10"]], runs, known=KNOWN)
    assert row.target == 0.977 and row.device == "GPU"
    assert row.diffs == pytest.approx([math.log(43 / 80), math.log(44 / 82), math.log(42 / 78)])
    assert row.verdict_text == "holds"
    student = math.exp((math.log(23 / 80) + math.log(24 / 82) + math.log(22 / 78)) / 3)
    assert f"{student:.2f}" == "0.29"
    assert "without the teacher: 0.29× (per run / per run, geometric mean over 3 pairs)" in row.notes
    cells = R._row_cells(row)
    assert cells[4] == "tgp-kd / colt, minutes per run + teacher"
    assert cells[6] == f"{math.exp(sum(row.diffs) / 3):.2f}×" == "0.54×"


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
    claims = {c.id: c for c in F.load_claims(REPO_REF / "claims.yaml")}
    sd = {"cskd-simple", "cskd-epsd", "pskd-simple", "pskd-epsd", "dlb-simple", "dlb-epsd"}
    assert {c.b.method for c in claims.values() if c.a.method == "tgp-kd" and c.direction == "greater"} >= sd | {"egp", "tgp"}
    assert all(claims[f"beats-{m}"].sparsity_min == 90 for m in sd)
    # ranges on the overall measure; SD sides: the official-budget label, else the matched variant
    assert all(claims[f"beats-{m}"].sparsity_definition == "overall" for m in sd | {"egp-high"})
    assert all(claims[f"beats-{m}"].b.labels == (m, f"{m}-matched") and claims[f"beats-{m}"].b.fallback == "absent"
               for m in sd)
    egp = claims["trails-egp-above-98-cifar10"]
    assert (egp.direction, egp.datasets, egp.sparsity_min, egp.sparsity_definition) == ("less", ("cifar10",), 98, "overall")
    assert egp.b == claims["beats-egp-high"].b and (egp.b.labels, egp.b.fallback) == (("egp", "egp-shortcut"),
                                                                                     "unreachable")
    lat = claims["cheaper-than-colt-cifar10"]
    assert (lat.sparsity_min, lat.sparsity_max, lat.sparsity_definition) == (97.6, 97.8, "overall")
    assert "per run + teacher" in lat.note
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
    with pytest.raises(F.ClaimError) as e:
        F.make_claim(raw, "f.yaml: claim 1")
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


@pytest.mark.slow
def test_cli_writes_table_csv_and_deterministic_forest_plot(tmp_path):
    import json

    res = tmp_path / "results"
    runs = pairs("tgp", "magnitude", [2, 3, 4]) + pairs("tgp-kd", "tgp", [-2, -3, -4], 0.98)
    for r in runs:
        p = res / "runs" / r["dataset"] / f"{r['run_id']}.json"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(r))
    outs = []
    for name in ("a", "b"):
        assert bench_cli.main(["claims", "--results", str(res), "--plots", str(tmp_path / name)]) == 0
        outs.append({p.name: p.read_bytes() for p in (tmp_path / name).iterdir()})
    assert outs[0] == outs[1] and sorted(outs[0]) == ["claims.pdf", "claims.png"]
    md = (res / "tables" / "claims.md").read_text()
    assert "| harness-tgp-vs-magnitude | cifar10 | resnet18 | 90.00% | tgp − magnitude, top-1 (pp) | > 0 | +3.00 | " \
           "[+0.52, +5.48] | 3 | 0.035 | 0.035 | 1.00× | holds | a tgp: 26.00 student epochs, no teacher; " \
           "b magnitude: 26.00 student epochs, no teacher |" in md
    # a KD claim without a teacher to check: not a test (left out of the family of one)
    assert "| retrain-with-kd | cifar10 | resnet18 | 98.00% | tgp-kd − tgp, top-1 (pp) | > 0 | -3.00 | " \
           "[-5.48, -0.52] | 3 |  |  | 1.00× | untestable here (no teacher and dense records" in md
    assert "| beats-cskd-simple |" in md and "Verdict: **holds** when n ≥ 3" in md and "Family: 1 tests" in md
    rows = list(csv.DictReader(io.StringIO((res / "tables" / "claims.csv").read_text())))
    row = next(r for r in rows if r["claim"] == "harness-tgp-vs-magnitude")
    assert (row["n"], row["mean"], row["ci_low"], row["interval"], row["diffs"], row["p_holm"], row["budget_ratio"]) == (
        "3", "3.000000", "0.515862", "t", "2.000000;3.000000;4.000000", "0.035099", "1.000000")
    assert bench_cli.main(["claims", "--results", str(res), "--claims", str(tmp_path / "none.yaml")]) == 2


# --------------------------------------------------------------------------- fairness rules

def test_a_win_by_the_side_with_more_student_budget_is_confounded():
    strong = [2.9, 3, 3.1]
    # a (tgp-kd, 26 epochs and a teacher) beats b (8 epochs): not a verdict
    runs = [r for s, d in enumerate(strong) for r in (rec("tgp-kd", 0.9, s, 50 + d, teacher=65.0),
                                                      rec("cskd-simple", 0.9, s, 50, epochs=8.0))]
    (row,) = rows_of(claim(a="tgp-kd", b="cskd-simple"), runs, known=KNOWN | {"cskd-simple"})
    assert row.verdict[0] == "confounded" and row.budget_ratio == pytest.approx(3.25)
    assert "tgp-kd had 3.25× the student epochs of cskd-simple and a teacher" in row.verdict[1]
    # within the 2% slack the verdict stands; with less budget a's win stands too
    for eb in (25.6, 40.0):
        runs = [r for s, d in enumerate(strong) for r in (rec("tgp-kd", 0.9, s, 50 + d), rec("m", 0.9, s, 50, epochs=eb))]
        (row,) = rows_of(claim(a="tgp-kd", b="m"), runs, known=KNOWN | {"m"})
        assert row.verdict_text == "holds", eb
    # a loss by the side with more budget stands (contradicted), a loss to the side with more is confounded
    runs = [r for s, d in enumerate(strong) for r in (rec("tgp", 0.9, s, 50 - d), rec("magnitude", 0.9, s, 50, epochs=23.0))]
    assert rows_of(claim(), runs)[0].verdict_text == "contradicted"
    runs = [r for s, d in enumerate(strong) for r in (rec("tgp", 0.9, s, 50 - d, epochs=23.0), rec("magnitude", 0.9, s, 50))]
    assert rows_of(claim(), runs)[0].verdict[0] == "confounded"
    # budgets not recorded: no verdict either
    runs = [r for s, d in enumerate(strong) for r in (rec("tgp", 0.9, s, 50 + d, epochs=None), rec("magnitude", 0.9, s, 50))]
    assert rows_of(claim(), runs)[0].verdict[0] == "confounded"


def test_a_weak_teacher_makes_a_kd_claim_untestable_here():
    kd_claim = claim(a="tgp-kd", b="tgp", requires={"teacher_margin": 5})
    diffs = [2.9, 3, 3.1]

    def runs(teacher):
        return ([r for s, d in enumerate(diffs) for r in (rec("tgp-kd", 0.9, s, 50 + d, teacher=teacher),
                                                         rec("tgp", 0.9, s, 50, teacher=teacher))]
                + [rec("dense", 0.0, s, 60.0) for s in range(3)])

    (weak,) = rows_of(kd_claim, runs(62.0))
    assert weak.verdict == ("untestable here", "the teacher (62.00%) is +2.00 points above the dense student "
                                               "(60.00%), under the 5.00 this claim needs")
    assert weak.p_holm is None                     # not a test: left out of the family
    (strong,) = rows_of(kd_claim, runs(70.0))
    assert strong.verdict_text == "holds"
    with pytest.raises(F.ClaimError, match="teacher_margin"):
        claim(requires={"teacher_margin": "five"})


def test_layer_collapse_is_named_in_the_row():
    dens = {"layer4.0.conv1.weight": 0.0, "layer4.0.conv2.weight": 0.0, "layer4.0.shortcut.0.weight": 0.0023,
            "layer3.0.conv1.weight": 0.02, "linear.weight": 1.0}
    runs = [r for s, d in enumerate([2.9, 3, 3.1]) for r in (rec("tgp", 0.98, s, 40 + d, layer_density=dens),
                                                             rec("magnitude", 0.98, s, 40))]
    (row,) = rows_of(claim(), runs)
    assert ("a (tgp): layer collapse in 3 of 3 runs: layer4.0.conv1 (empty), layer4.0.conv2 (empty), "
            "layer4.0.shortcut.0 (0.23%)") in row.notes
    assert not any(n.startswith("b (") for n in row.notes)
