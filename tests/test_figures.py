"""Figures at realised sparsity, one panel per method family, and the latency figure with the paper's minutes.

Hand-made records of the current format (sparsity_measure, sparsity_realised, sparsity_on_target, status
unreachable) and the report fixtures (older records: sparsity_overall, sparsity_exact).
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from matplotlib.collections import PathCollection

from bench.report.accuracy_figure import accuracy_points, plot_accuracy
from bench.report.figures import figure_style, plot_latency
from bench.report.references import Reference
from bench.report.style import METHOD_STYLES, family_of, order_methods, style_for
from bench.store import load_runs

FIX = Path(__file__).parent / "fixtures" / "report"


def rec(method, target, seed, top1, *, realised=None, on=True, status="ok", model="resnet_small", measure="overall",
        minutes=1.0, **extra):
    """A record of the current format: realised sparsity on the measure (the target unless given)."""
    real = target if realised is None else realised
    r = {"run_id": f"{abs(hash((method, target, seed))):016x}"[:16], "status": status, "dataset": "cifar10",
         "model": model, "method": method, "target_sparsity": target, "seed": seed, "device_name": "cpu",
         "ended_at": "2026-01-01T00:00:00Z"}
    if target:
        r["sparsity_measure"] = measure
    if status == "ok":
        r.update(top1_final=top1, top1_best=top1, sparsity_realised=real if target else None, sparsity_on_target=on,
                 sparsity={"overall": real, "conv": min(1.0, real * 1.005)}, sparsity_overall=real,
                 phases={"retrain": {"seconds": 60 * minutes, "group": "retrain", "reused": False},
                         "pretrain": {"seconds": 30, "group": "pretrain", "reused": True, "device": "cpu"}})
    r.update(extra)
    return r


@pytest.fixture(scope="module")
def records():
    out = []
    for s in (0, 1, 2):
        out += [rec("dense", 0.0, s, 80.0 + s), rec("tgp", 0.9, s, 70.0 + s, realised=0.9 + 0.0002 * (s - 1)),
                rec("tgp", 0.98, s, 50.0 + s), rec("tgp-kd", 0.9, s, 71.0 + s), rec("tgp-kd", 0.98, s, 51.0 + s),
                rec("tgp-kd-T5", 0.9, s, 70.5 + s), rec("grad-ce", 0.9, s, 69.0 + s),
                rec("magnitude", 0.9, s, 72.0 + s), rec("cskd-simple-matched", 0.9, s, 60.0 + s),
                rec("colt", 0.9, s, 65.0 + s, minutes=5.0),
                # colt at 0.98: one seed overshoots (off target), two land on it
                rec("colt", 0.98, s, 45.0 + s, realised=0.9812 if s == 0 else 0.98, on=s != 0,
                    off_target_reason="exact_final_round: false" if s == 0 else None),
                rec("egp", 0.98, s, None, status="unreachable", max_sparsity=0.9586, reason="its set holds too few")]
    return out


def test_points_at_realised_sparsity_on_the_records_measure(records):
    d = accuracy_points(records, "cifar10")
    assert (d.measure, d.on_measure, d.dense) == ("overall", True, pytest.approx((81.0, 1.0, 3)))
    (tgp90, tgp98) = d.points["tgp"]
    assert tgp90.sparsity == pytest.approx(0.9) and tgp90.on_target and (tgp90.mean, tgp90.n) == (71.0, 3)
    # colt at 0.98: the overshooting seed is a point of its own, off target, at its realised sparsity
    colt98 = [p for p in d.points["colt"] if p.target == 0.98]
    assert [(p.on_target, p.n, round(p.sparsity, 4)) for p in colt98] == [(True, 2, 0.98), (False, 1, 0.9812)]
    assert [(u.method, u.target, u.max_sparsity, u.measure) for u in d.unreachable] == [("egp", 0.98, 0.9586,
                                                                                         "overall")]
    assert "egp" not in d.points and "dense" not in d.points


def test_old_records_are_placed_at_their_overall_sparsity():
    """Records made before targets had a measure (targets over each method's own set, sparsity_exact)."""
    def old(method, overall, exact, seed):
        return {"run_id": f"{method}{seed}", "status": "ok", "dataset": "d", "model": "m", "method": method,
                "target_sparsity": 0.9, "seed": seed, "top1_final": 50.0, "top1_best": 50.0,
                "sparsity_prunable": 0.9 if exact else 0.912, "sparsity_overall": overall, "sparsity_exact": exact}

    d = accuracy_points([old("colt", 0.904244, False, 0), old("magnitude", 0.898, True, 0)], "d")
    assert d.measure == "overall" and not d.on_measure
    (colt,) = d.points["colt"]                       # sparsity_exact false: off target, at its realised overall
    assert not colt.on_target and colt.sparsity == pytest.approx(0.904244, abs=1e-6) and colt.target == 0.9
    (mag,) = d.points["magnitude"]
    assert mag.on_target and mag.sparsity == pytest.approx(0.898)     # overall, not the (conv) target


def test_mixed_measures_fall_back_to_overall(records):
    mixed = records + [rec("random", 0.9, 0, 40.0, realised=0.91, measure="conv")]
    d = accuracy_points(mixed, "cifar10")
    assert d.measure == "overall" and not d.on_measure
    (rnd,) = d.points["random"]
    assert rnd.sparsity == pytest.approx(0.91)        # sparsity["overall"], not the conv-realised figure


def _legend_lines(ax):
    return {t.get_text(): h for t, h in zip(ax.get_legend().get_texts(), ax.get_legend().legend_handles)}


def test_accuracy_figure_one_panel_per_family_beside_the_proposed_method(records):
    with figure_style():
        fig = plot_accuracy(records, "cifar10")
    panels = [ax for ax in fig.axes if ax.get_visible() and ax.get_title()]
    assert [ax.get_title() for ax in panels] == [f"{t} beside the proposed method" for t in (
        "reference methods", "controls", "self-distillation rows", "iterative baselines")]
    for ax in panels:
        assert {"tgp", "tgp-kd", "tgp-kd-T5"} <= set(_legend_lines(ax)) and "dense (81.00)" in _legend_lines(ax)
    controls = _legend_lines(panels[1])
    assert "grad-ce" in controls and "colt" not in controls
    looks = {m: (h.get_color(), h.get_marker(), h.get_linestyle()) for m, h in controls.items()
             if m in ("tgp", "tgp-kd", "tgp-kd-T5", "grad-ce")}
    assert len(set(looks.values())) == 4, looks      # a reader can tell them apart
    # x: remaining weights at the realised sparsity, log scale, inverted (sparsity grows to the right)
    ax = panels[0]
    assert ax.get_xscale() == "log" and ax.get_xlim()[0] > ax.get_xlim()[1]
    notes = [t.get_text().replace("\n", " ") for lg in fig.legends for t in lg.get_texts()]
    assert any("hollow, off the line" in n and "colt at 98.00%" in n for n in notes), notes
    assert any("unreachable" in n and "egp at 98.00% (at most 95.86% overall)" in n for n in notes), notes
    assert any("paper-reported: none for CIFAR-10" in n for n in notes), notes
    # the off-target colt point is a hollow marker in the iterative panel
    hollow = [ln for ln in panels[3].get_lines() if ln.get_markerfacecolor() == "white" and len(ln.get_xdata()) == 1]
    # (dodged sideways by at most a few hundredths of a decade)
    assert [pytest.approx(float(ln.get_xdata()[0]), rel=0.15) for ln in hollow] == [100 * (1 - 0.9812)]


def test_paper_points_drawn_or_the_reason_given(records):
    paper = Reference("cifar10", "tgp-kd", 98.0, "overall", "paper", top1=90.0, sparsity_overall=98.0,
                      model="resnet18")
    with figure_style():
        fig = plot_accuracy(records, "cifar10", references=[paper])
    notes = [t.get_text().replace("\n", " ") for lg in fig.legends for t in lg.get_texts()]
    assert any("not drawn: 1 of another model (resnet18; these runs: resnet_small)" in n for n in notes), notes
    assert not [c for ax in fig.axes for c in ax.collections if isinstance(c, PathCollection)]
    same = [dict(r, model="resnet18") for r in records]
    with figure_style():
        fig = plot_accuracy(same, "cifar10", references=[paper])
    panel = next(ax for ax in fig.axes if ax.get_title())
    stars = [tuple(float(v) for v in c.get_offsets()[0]) for c in panel.collections if isinstance(c, PathCollection)]
    assert stars == [pytest.approx((2.0, 90.0))]            # at 100 - 98 % remaining
    assert "paper-reported (resnet18)" in _legend_lines(panel)
    assert not any("paper" in t.get_text() for lg in fig.legends for t in lg.get_texts())


def test_latency_figure_puts_paper_minutes_and_ours_on_a_log_axis(records):
    colt = Reference("cifar10", "colt", 98.0, "overall", "paper", minutes=276.0, sparsity_overall=98.0)
    with figure_style():
        fig = plot_latency(records, "cifar10", references=[colt])
    log = [ax for ax in fig.axes if ax.get_yscale() == "log"]
    assert len(log) == 1
    lo, hi = log[0].get_ylim()
    assert lo < 5.0 and hi > 276.0                          # ours (5 min of retrain) and the paper's 276 min
    with figure_style():
        fig = plot_latency(records, "cifar10")
    assert not any(ax.get_yscale() == "log" for ax in fig.axes)
    assert any("no paper-reported minutes for CIFAR-10" in t.get_text() for lg in fig.legends for t in lg.get_texts())


def test_rounds_on_overall_sparsity_with_every_definition_in_the_csv():
    from bench.report.rounds import round_series, rounds_csv

    runs = load_runs(FIX)
    (s,) = round_series(runs, "tinyimagenet")
    assert s.points[0].sparsity == pytest.approx(0.15 * 0.99) and s.points[0].conv == pytest.approx(0.15)
    row = next(csv.DictReader(io.StringIO(rounds_csv(runs, "tinyimagenet"))))
    assert (row["sparsity_conv"], row["sparsity_overall"]) == ("0.150000", "0.148500")


def test_styles_by_family_and_variants():
    assert [family_of(m) for m in ("tgp", "tgp-kd", "tgp-kd-T5", "magnitude", "grad-ce", "dense-kd", "tgp-rewind",
                                   "cskd-simple-matched", "dlb", "egp-shortcut", "colt", "magnitude-x", "foo")] == [
        "proposed", "proposed", "proposed", "references", "controls", "controls", "controls", "self-distillation",
        "self-distillation", "iterative", "iterative", "references", "other"]
    # a variant keeps its base's colour and line with another marker, and sorts right after it
    base, var = style_for("magnitude"), style_for("magnitude-x")
    assert (var.colour, var.linestyle) == (base.colour, base.linestyle) and var.marker != base.marker
    assert order_methods(["zeta", "tgp-kd-T7", "magnitude-x", "random", "magnitude", "tgp-kd"]) == [
        "magnitude", "magnitude-x", "random", "tgp-kd", "tgp-kd-T7", "zeta"]
    assert style_for("tgp-kd-T7").linestyle == "--" and style_for("tgp-kd-T7") != style_for("tgp-kd")
    assert all(st.marker != "*" for st in METHOD_STYLES.values())      # the star is the paper's
