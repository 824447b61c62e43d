"""Cross-sectional IC / rank IC / ICIR / t-statistic of multi-symbol forecasts."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from factories import make_candles
from kronos_trader.evaluation.cross_section import cross_sectional_ic, summarise_ic
from kronos_trader.forecasting.values import WindowForecast


def _forecast(index, position, last, predicted_return, horizon=2):
    mean = np.zeros((horizon, 6))
    mean[:, 3] = last * (1 + predicted_return)
    return WindowForecast(index[position] + pd.Timedelta("1h"), index[position], float(last), mean, {},
                          np.full(horizon, 0.5))


def _panel(n=60, symbols=5, seed=0):
    return {f"S{i}": make_candles(n, seed=seed + i) for i in range(symbols)}


def test_a_perfect_ordering_has_ic_one_and_noise_has_ic_near_zero():
    panel = _panel()
    step = 2
    perfect, noise = {}, {}
    rng = np.random.default_rng(1)
    for symbol, frame in panel.items():
        close = frame["close"].to_numpy()
        perfect[symbol] = {p: _forecast(frame.index, p, close[p], close[p + step] / close[p] - 1)
                           for p in range(10, 50)}
        noise[symbol] = {p: _forecast(frame.index, p, close[p], rng.standard_normal()) for p in range(10, 50)}
    good = cross_sectional_ic(perfect, panel)
    assert len(good.rebalances) == 20  # every 2nd bar: outcomes do not overlap
    assert good.ic["mean"] == pytest.approx(1.0) and good.rank_ic["mean"] == pytest.approx(1.0)
    bad = cross_sectional_ic(noise, panel)
    assert abs(bad.rank_ic["mean"]) < 0.3 and abs(bad.rank_ic["t_stat"]) < 3
    assert "rank IC" in bad.describe()
    assert cross_sectional_ic({k: v for k, v in list(perfect.items())[:2]}, panel).rebalances.empty  # < 3 symbols


def test_summary_statistics():
    s = summarise_ic([0.1, 0.3, np.nan, 0.2])
    assert s["n"] == 3 and s["mean"] == pytest.approx(0.2) and s["sd"] == pytest.approx(0.1)
    assert s["icir"] == pytest.approx(2.0) and s["t_stat"] == pytest.approx(2.0 * np.sqrt(3))


def test_portfolio_backtest_reports_cross_sectional_ic(fast_settings, tmp_path):
    from kronos_trader.backtest.report import write_report
    from kronos_trader.backtest.runner import run_backtest

    panel = {f"{name}/USDT": make_candles(90, seed=i + 1) for i, name in enumerate(("AAA", "BBB", "CCC"))}
    result = run_backtest(fast_settings, panel, "", "1h", None, progress=False)
    assert result.cross_section is not None and result.cross_section.symbols == 3
    assert len(result.cross_section.rebalances) > 5
    summary = json.loads((write_report(result, tmp_path / "r") / "summary.json").read_text())
    assert {"ic", "rank_ic", "rebalances", "per_rebalance"} <= set(summary["cross_sectional"])
    assert {"mean", "icir", "t_stat"} <= set(summary["cross_sectional"]["rank_ic"])
