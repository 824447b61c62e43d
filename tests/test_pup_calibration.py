"""P(up) recalibration: overconfident probabilities become trustworthy, walk-forward only."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kronos_trader.evaluation.calibration_report import (brier, expected_calibration_error, pit_values, plot_calibration,
                                                         reliability, running_base_rate, score_p_up)
from kronos_trader.forecasting.pup_calibration import fit_p_up_map, rolling_recalibrate


def overconfident(n: int, seed: int = 0):
    """True chance q of an up move; the model says sigmoid(3 logit q) (far too sure)."""
    rng = np.random.default_rng(seed)
    q = rng.uniform(0.3, 0.7, n)
    p = 1 / (1 + np.exp(-3 * np.log(q / (1 - q))))
    up = (rng.random(n) < q).astype(float)
    return p, up, q


@pytest.mark.parametrize("kind", ["isotonic", "logistic"])
def test_recalibration_brings_ece_down_walk_forward(kind):
    p, up, q = overconfident(3000)
    made = np.arange(3000.0)
    recal = rolling_recalibrate(made, p[:, None], up[:, None], made[:, None] + 1, kind, min_history=200)[:, 0]
    late = slice(1000, None)
    assert expected_calibration_error(p[late], up[late]) > 0.08
    assert expected_calibration_error(recal[late], up[late]) < 0.03
    assert brier(recal[late], up[late]) < brier(p[late], up[late])
    assert np.array_equal(recal[:200], p[:200]) and recal[200] != p[200]  # too little history: left as it is


def test_recalibration_never_uses_an_outcome_not_yet_known():
    p, up, _ = overconfident(400, seed=1)
    made = np.arange(400.0)
    known = made[:, None] + 5  # outcomes known 5 bars after the forecast
    a = rolling_recalibrate(made, p[:, None], up[:, None], known, "isotonic", min_history=20)
    flipped = up.copy()
    flipped[300:] = 1 - flipped[300:]
    b = rolling_recalibrate(made, p[:, None], flipped[:, None], known, "isotonic", min_history=20)
    np.testing.assert_array_equal(a[:305], b[:305])  # forecast 304 saw outcomes up to forecast 299 only
    assert not np.array_equal(a[306:], b[306:])


@pytest.mark.parametrize("kind", ["isotonic", "logistic"])
@pytest.mark.parametrize("span", [None, 60.0])
def test_recalibrating_chosen_rows_gives_their_values_of_a_full_pass_with_fewer_fits(kind, span, monkeypatch):
    """A live call needs its newest forecast recalibrated, not each of its history's: `rows`
    fits only the maps those rows use, and gives them the values of the full pass."""
    from kronos_trader.forecasting import pup_calibration

    p, up, _ = overconfident(300, seed=4)
    made = np.arange(300.0)
    p_up, ups = np.stack([p, p[::-1]], axis=1), np.stack([up, up[::-1]], axis=1)
    known = made[:, None] + np.array([1.0, 3.0])
    fits = []
    real_fit = pup_calibration.fit_p_up_map
    monkeypatch.setattr(pup_calibration, "fit_p_up_map", lambda *a: fits.append(1) or real_fit(*a))
    full = rolling_recalibrate(made, p_up, ups, known, kind, min_history=20, span=span)
    full_fits = len(fits)
    rows = [120, 250, 299]
    fits.clear()
    part = rolling_recalibrate(made, p_up, ups, known, kind, min_history=20, span=span, rows=rows)
    np.testing.assert_array_equal(part[rows], full[rows])
    others = np.setdiff1d(np.arange(300), rows)
    np.testing.assert_array_equal(part[others], p_up[others])
    assert len(fits) <= 2 * len(rows) < full_fits  # at most a map per row and step


def test_maps_are_monotone_and_bad_kind_is_refused():
    p, up, _ = overconfident(500, seed=2)
    grid = np.linspace(0, 1, 101)
    for kind in ("isotonic", "logistic"):
        g = fit_p_up_map(kind, p, up)(grid)
        assert np.all(np.diff(g) >= -1e-12) and g.min() > 0 and g.max() < 1
    with pytest.raises(ValueError, match="isotonic"):
        fit_p_up_map("beta-ish", p, up)


def test_metrics_reliability_pit_and_climatology():
    assert brier([1, 0], [1, 0]) == 0 and brier([0.5, 0.5], [1, 0]) == 0.25
    mean_p, freq, count = reliability([0.05, 0.06, 0.95], [0, 1, 1])
    assert count[0] == 2 and freq[0] == 0.5 and count[9] == 1 and np.isnan(mean_p[5])
    assert expected_calibration_error([0.05, 0.06, 0.95], [0, 1, 1]) == pytest.approx((2 * 0.445 + 0.05) / 3)
    rng = np.random.default_rng(3)
    paths, y = rng.standard_normal((4000, 64)), rng.standard_normal(4000)
    hist = np.histogram(pit_values(paths, y), bins=10, range=(0, 1))[0]
    assert hist.min() > 300  # calibrated: about uniform
    narrow = np.histogram(pit_values(paths * 0.3, y), bins=10, range=(0, 1))[0]
    assert narrow[0] + narrow[-1] > 4 * (narrow[4] + narrow[5])  # too narrow: a U
    base = running_base_rate([0, 1, 2, 3], np.array([[1.0], [0.0], [1.0], [1.0]]), np.array([[1], [2], [3], [4]]))
    assert base[:, 0].tolist() == [0.5, 1.0, 0.5, 2 / 3]


def test_score_p_up_on_a_walk_forward_and_its_png(tmp_path):
    from kronos_trader.evaluation.walkforward import WalkForward

    rng = np.random.default_rng(4)
    n, steps = 600, 2
    close = 100 * np.exp(np.cumsum(rng.standard_normal(n + steps + 1) * 0.01))
    origins = np.arange(n)
    drift = rng.standard_normal(n) * 0.002  # paths sure of a drift that is not there
    paths = close[origins, None, None] * np.exp(drift[:, None, None] + rng.standard_normal((n, 32, steps)) * 0.002)
    wf = WalkForward(origins, pd.date_range("2024-01-01", periods=n, freq="h"), close[origins],
                     np.stack([close[o + 1:o + 1 + steps] for o in origins]), paths, pd.Series(close), 0)
    report, recal = score_p_up(wf, [1, 2], "isotonic", min_history=50)
    row = report.steps[2]
    assert row["ece_recalibrated"] < row["ece_raw"] and row["bss_recalibrated"] > row["bss_raw"]
    assert sum(report.pit[2]) == n and report.pit[2][0] + report.pit[2][-1] > sum(report.pit[2]) / 2  # too narrow
    assert recal.shape == (n, steps)
    assert set(report.to_dict()["steps"]["1"]) >= {"brier_raw", "bss_recalibrated", "ece_raw", "base_rate"}
    assert plot_calibration(report, tmp_path / "calibration.png").stat().st_size > 10_000


def test_forecast_service_serves_recalibrated_p_up_the_same_live_and_in_backtest(tiny_model_dir):
    from factories import make_candles
    from kronos_trader.config import ForecastSettings
    from kronos_trader.forecasting.models import load_model
    from kronos_trader.forecasting.service import ForecastService

    candles = make_candles(260, seed=7)
    model = load_model(tiny_model_dir, "cpu")
    plain = ForecastSettings(lookback=32, horizon=4, sample_count=8, calibration_window=60)
    recal = plain.model_copy(update={"p_up_calibration": "isotonic", "p_up_min_history": 20})
    backtest = ForecastService(model, recal, None, progress=False).forecast_series(candles, "X", "1h")
    raw = ForecastService(model, plain, None, progress=False).forecast_series(candles, "X", "1h")
    early, late = 40, 250
    np.testing.assert_array_equal(backtest[early].p_up, raw[early].p_up)  # too little history yet
    assert not np.array_equal(backtest[late].p_up, raw[late].p_up)
    np.testing.assert_array_equal(backtest[late].mean, raw[late].mean)  # only P(up) changes
    live = ForecastService(model, recal, None, progress=False).forecast_at(candles.iloc[:late + 1], [late], "X", "1h")
    np.testing.assert_array_equal(live[late].p_up, backtest[late].p_up)  # live = backtest, no later bar used


def test_backtest_report_has_p_up_calibration_png_table_and_summary(fast_settings, sample_candles, tmp_path):
    import json

    from kronos_trader.backtest.report import write_report
    from kronos_trader.backtest.runner import run_backtest

    result = run_backtest(fast_settings, sample_candles, "BTC/USDT", "1h", None, progress=False)
    report = result.p_up_calibration
    assert report is not None and report.windows == len(sample_candles) - 32 + 1 - 4  # resolved ones
    folder = write_report(result, tmp_path / "r")
    summary = json.loads((folder / "summary.json").read_text())
    assert {"brier_raw", "bss_recalibrated", "ece_raw", "ece_recalibrated"} <= \
        set(summary["p_up_calibration"]["steps"]["4"])
    assert sum(summary["p_up_calibration"]["pit_histogram"]["4"]) == report.windows
    assert (folder / "calibration.png").stat().st_size > 10_000
    chart = (folder / "chart.html").read_text()
    assert "id='p-up-calibration'" in chart and "calibration.png" in chart
