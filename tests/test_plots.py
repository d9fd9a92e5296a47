"""The plots say what they show: read off the matplotlib figures, not just 'a PNG exists'."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.colors import to_hex

from ctrdistill.analysis.collapse import NOISE_FLOOR, abundance_figure, spectra_figure
from ctrdistill.analysis.plots import daily_figure, learning_curves_figure


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _history(offset: float) -> list[dict]:
    return [{"step": s, "valid": {"auc": 0.6 + offset + 0.01 * s, "logloss": 0.5 - 0.01 * s,
                                   "ensemble.auc": 0.7, "ensemble.logloss": 0.45}}
            for s in (10, 20, 30)]


def _lines(ax) -> dict[str, str]:
    return {line.get_label(): to_hex(line.get_color()) for line in ax.get_lines()
            if not line.get_label().startswith("_")}


def test_learning_curves_keep_colours_title_and_mark_the_kept_step():
    fig = learning_curves_figure({"a": _history(0.0), "b": _history(0.05)},
                                 best_steps={"a": 20, "b": 30})
    auc, logloss = fig.axes
    # The same model in the same colour on both panels (logloss sorts its lines differently).
    assert _lines(auc) == _lines(logloss)
    assert set(_lines(auc)) >= {"a", "b", "a/ensemble", "b/ensemble"}
    assert fig._suptitle is not None and fig._suptitle.get_text()
    stars = [line for line in auc.get_lines() if line.get_marker() == "*" and len(line.get_xdata())]
    assert sorted((int(s.get_xdata()[0]), to_hex(s.get_color())) for s in stars) == sorted(
        [(20, _lines(auc)["a"]), (20, _lines(auc)["a/ensemble"]),
         (30, _lines(auc)["b"]), (30, _lines(auc)["b/ensemble"])])


def test_daily_plot_has_whole_day_ticks():
    history = [{"eval_day": d, "teacher": {"auc": 0.7, "calibration": 1.0},
                "student": {"auc": 0.68, "calibration": 1.02}} for d in (2, 3)]
    fig = daily_figure({"s": history})
    fig.canvas.draw()
    for ax in fig.axes:
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks


def _report(num_fields: int) -> dict:
    rng = np.random.default_rng(0)
    fields = {f"f{k}": {"singular_values": sorted(rng.random(8) + 0.1, reverse=True)}
              for k in range(num_fields)}
    # A rank-2 hidden vector: the tail is float rounding noise, down to 1e-40.
    hidden = {"sub0": {"singular_values": [3.0, 1.0, 1e-9, 1e-20, 1e-40]}}
    return {"run": "runs/kdef4", "fields": fields, "hidden": hidden}


def test_spectra_drop_noise_and_summarise_many_lines():
    fig = spectra_figure(_report(39))
    fields, hidden = fig.axes
    for ax in fig.axes:
        values = np.concatenate([np.asarray(line.get_ydata(), float) for line in ax.get_lines()
                                 if len(line.get_ydata())])
        assert values.min() >= NOISE_FLOOR
    assert list(hidden.get_lines()[0].get_ydata()) == pytest.approx([1.0, 1 / 3])
    # 39 fields: a short legend (median, band, each spectrum), not 39 entries.
    labels = [t.get_text() for t in fields.get_legend().get_texts()]
    assert len(labels) <= 4 and any("median" in t for t in labels), labels
    few = spectra_figure(_report(3)).axes[0]
    assert [t.get_text() for t in few.get_legend().get_texts()] == ["f0", "f1", "f2"]


def test_abundance_axis_starts_at_the_minimum_possible():
    reports = [{"series": "kdef", "num_subnetworks": n, "mean_field_abundance": a,
                "mean_hidden_abundance": a} for n, a in ((2, 1.405), (4, 1.422))]
    for ax in abundance_figure(reports).axes:
        assert ax.get_ylim()[0] == 1.0


def test_single_step_curve_has_whole_step_ticks():
    fig = learning_curves_figure({"a": _history(0.0)[:1]}, rows="held-out train")
    fig.canvas.draw()
    for ax in fig.axes:
        assert list(ax.get_xticks()) == [10]
        assert ax.get_ylabel().startswith("held-out train ")
