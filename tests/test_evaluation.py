"""Evaluation: metric arithmetic on constructed cases, walk-forward without look-ahead, CLI outputs."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from kronos import Forecast
from kronos_trader.config import ForecastSettings
from kronos_trader.data import generate_market
from kronos_trader.evaluation import (ScoreSettings, central_interval, coverage, crps_ensemble, crps_normal,
                                      direction_accuracy, mae, normal_interval, normal_ppf, origins, rmse,
                                      run_walk_forward, score_walk_forward)
from kronos_trader.forecasting.models import LoadedModel
from kronos_trader.forecasting.service import ForecastService

COLUMNS = ["open", "high", "low", "close", "volume", "amount"]


def test_crps_of_a_perfect_deterministic_forecast_is_zero():
    y = np.array([1.0, -2.0, 300.5])
    assert np.allclose(crps_ensemble(np.repeat(y[:, None], 16, axis=1), y), 0.0)
    assert np.allclose(crps_ensemble(np.repeat(y[:, None], 16, axis=1), y, fair=False), 0.0)
    assert np.allclose(crps_normal(y, np.zeros(3), y), 0.0)
    # one sample: the absolute error; a point mass elsewhere: the distance
    assert crps_ensemble(np.array([[3.0]]), np.array([1.0]))[0] == pytest.approx(2.0)
    assert crps_ensemble(np.full((1, 8), 5.0), np.array([2.0]))[0] == pytest.approx(3.0)


def test_crps_ensemble_matches_closed_form():
    # two samples {0, 2}, outcome 1: E|X-y| = 1, fair E|X-X'| over distinct pairs = 2 -> 1 - 1 = 0
    assert crps_ensemble(np.array([[0.0, 2.0]]), np.array([1.0]))[0] == pytest.approx(0.0)
    assert crps_ensemble(np.array([[0.0, 2.0]]), np.array([1.0]), fair=False)[0] == pytest.approx(0.5)
    rng = np.random.default_rng(0)
    samples = rng.standard_normal((1, 20000)) * 2 + 1
    assert crps_ensemble(samples, np.array([0.3]))[0] == pytest.approx(crps_normal(1.0, 2.0, 0.3), rel=0.02)
    assert crps_normal(0.0, 1.0, 0.0) == pytest.approx((np.sqrt(2) - 1) / np.sqrt(np.pi))


def test_coverage_and_interval_arithmetic():
    y = np.arange(10.0)
    assert coverage(np.full(10, 2.0), np.full(10, 5.0), y) == pytest.approx(0.4)  # 2, 3, 4, 5 (ends included)
    lo, hi = central_interval(np.arange(101.0)[None, :], 0.9)
    assert (lo[0], hi[0]) == pytest.approx((5.0, 95.0))
    assert normal_ppf(0.95) == pytest.approx(1.6448536, abs=1e-6) and normal_ppf(0.5) == pytest.approx(0.0)
    lo, hi = normal_interval(10.0, 2.0, 0.9)
    assert (lo, hi) == pytest.approx((10 - 3.2897, 10 + 3.2897), abs=1e-3)
    assert mae([1, 2], [2, 4]) == 1.5 and rmse([0, 0], [3, 4]) == pytest.approx(np.sqrt(12.5))
    assert direction_accuracy([1, -1, 1, 0], [2, 1, 0, 5]) == 0.5  # zeros (no call / no move) are left out
    assert np.isnan(direction_accuracy([0, 0], [1, -1]))


class Oracle:
    """A 'predictor' that knows the future (to check the scoring) and checks it is only
    given the past as history."""

    max_context = 512

    def __init__(self, candles: pd.DataFrame, noise: float = 0.0):
        self.candles, self.noise, self.calls = candles, noise, 0

    def forecast_batch(self, frames, x_ts, y_ts, pred_len, sample_count, seed, **kw):
        self.calls += 1
        out = []
        for frame, future, s in zip(frames, y_ts, seed):
            assert frame.index[-1] < future[0] and len(future) == pred_len
            truth = self.candles.loc[future, COLUMNS].to_numpy()
            paths = np.repeat(truth[None], sample_count, axis=0)
            if self.noise:
                rng = np.random.default_rng(s)
                paths = paths * np.exp(rng.standard_normal((sample_count, pred_len, 1)) * self.noise)
            mean = pd.DataFrame(paths.mean(axis=0), index=future, columns=COLUMNS)
            out.append(Forecast(paths=paths, mean=mean, last_close=float(frame["close"].iloc[-1])))
        return out


def walk(predictor, candles, lookback, horizon, stride, samples, holdout=0.2, batch_windows=64):
    """Walk-forward through the forecast service, with `predictor` as its model."""
    settings = ForecastSettings(lookback=lookback, horizon=horizon, sample_count=samples, batch_windows=batch_windows)
    service = ForecastService(LoadedModel(predictor, "oracle", "oracle@0"), settings, progress=False)
    return run_walk_forward(service, candles, holdout=holdout, stride=stride)


@pytest.fixture(scope="module")
def candles() -> pd.DataFrame:
    return generate_market(2000, "1h", seed=9).round(2)  # cents: exact through the stored forecasts' rounding


def test_walk_forward_windows_lie_in_the_holdout(candles):
    pos = origins(len(candles), 0.2, 128, 24, 24)
    cut = 2000 - 400
    assert pos[0] == cut - 1 and (np.diff(pos) == 24).all() and pos[-1] + 24 <= 1999
    wf = walk(Oracle(candles), candles, lookback=128, horizon=24, stride=24, samples=4, batch_windows=5)
    assert wf.paths.shape == (len(pos), 4, 24) and wf.cut == cut and wf.aligned == 1.0
    assert np.array_equal(wf.realized[0], candles["close"].to_numpy()[cut:cut + 24])
    with pytest.raises(ValueError, match="no forecast window"):
        origins(100, 0.05, 64, 24, 1)


def test_perfect_forecasts_score_zero_and_baselines_are_random_walks(candles):
    wf = walk(Oracle(candles), candles, lookback=128, horizon=24, stride=12, samples=4)
    ev = score_walk_forward(wf, ScoreSettings(horizons=(1, 6, 24), min_history=3))
    for model in ("kronos", "kronos_calibrated"):
        for h in (1, 6, 24):
            row = ev.metrics[model][h]
            assert row["mae"] == pytest.approx(0, abs=1e-6) and row["crps"] == pytest.approx(0, abs=1e-6)
            assert row["direction"] == 1.0 and row["coverage_90"] == 1.0 and row["coverage_50"] == 1.0
    y, last = wf.realized[:, 5], wf.last_close
    assert ev.metrics["rw_static"][6]["mae"] == pytest.approx(np.mean(np.abs(y - last)))
    assert ev.metrics["rw_rolling"][6]["rmse"] == pytest.approx(np.sqrt(np.mean((y - last) ** 2)))
    assert np.isnan(ev.metrics["rw_static"][6]["direction"])
    returns = np.diff(np.log(candles["close"].to_numpy()))
    assert ev.sigmas["rw_static"][0] == pytest.approx(np.std(returns[:wf.cut - 1]))
    assert ev.sigmas["rw_rolling"][3] == pytest.approx(np.std(returns[wf.origins[3] - 48:wf.origins[3]]))
    payload = json.loads(json.dumps(ev.to_dict()))
    assert payload["metrics"]["kronos"]["24"]["crps"] == pytest.approx(0, abs=1e-6)


def test_calibration_in_evaluation_fixes_too_narrow_bands(candles):
    # right centre, far too little spread: raw 90% bands cover little, calibrated ones ~90%
    wf = walk(Oracle(candles, noise=0.0005), candles, lookback=64, horizon=6, stride=1, samples=16, holdout=0.5)
    # move every path's centre to the last close so the spread (not the oracle) must explain the outcome
    shift = wf.last_close[:, None] / np.median(wf.paths, axis=1)
    wf.paths = wf.paths * shift[:, None, :]
    ev = score_walk_forward(wf, ScoreSettings(horizons=(1, 6), min_history=30))
    for h in (1, 6):
        assert ev.metrics["kronos"][h]["coverage_90"] < 0.6
        assert abs(ev.metrics["kronos_calibrated"][h]["coverage_90"] - 0.9) < 0.07


def test_evaluate_command_writes_table_json_and_png(tmp_path, monkeypatch):
    from kronos_trader.commands.evaluate import register

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)  # no config.yaml here: defaults
    app = typer.Typer()

    @app.callback()
    def main():
        pass

    register(app)
    result = CliRunner().invoke(app, ["evaluate", "--max-windows", "12", "--samples", "8", "--horizons", "1,6",
                                      "--lookback", "128", "--min-history", "3", "--out", str(tmp_path / "ev"),
                                      "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "RW+vol" in result.output and "after" in result.output
    assert "synthetic" in result.output  # issue 25.6: the bundled sample is labelled
    payload = json.loads((tmp_path / "ev" / "evaluation.json").read_text())
    assert payload["windows"] == 12 and set(payload["metrics"]) == {"kronos", "kronos_calibrated", "rw_static",
                                                                     "rw_rolling"}
    assert {"mae", "rmse", "direction", "crps", "coverage_50", "coverage_90"} <= set(payload["metrics"]["kronos"]["6"])
    assert (tmp_path / "ev" / "evaluation.png").stat().st_size > 10_000
    assert (tmp_path / "ev" / "calibration.png").stat().st_size > 10_000  # reliability diagram + PIT histogram
    assert {"brier_raw", "brier_recalibrated", "bss_raw", "ece_raw", "ece_recalibrated"} <= \
        set(payload["p_up_calibration"]["steps"]["6"])
    bad = CliRunner().invoke(app, ["evaluate", "--horizons", "0,x", "--out", str(tmp_path / "ev2")])
    assert bad.exit_code == 1 and bad.output.strip().startswith("error:")


def test_evaluate_table_uses_the_skill_tables_column_names(candles):
    from kronos_trader.evaluation.skill import FORECASTER_SHORT, SCORE_COLUMNS

    wf = walk(Oracle(candles), candles, lookback=64, horizon=6, stride=24, samples=4)
    table = score_walk_forward(wf, ScoreSettings(horizons=(1, 6), min_history=2)).table()
    assert {str(c.header) for c in table.columns} <= set(SCORE_COLUMNS.values())
    assert set(str(v) for v in table.columns[1]._cells) <= set(FORECASTER_SHORT.values())
