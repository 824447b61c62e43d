"""Report figures a trader can act on: annualised figures on short spans (issue 25.4)."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
from rich.console import Console

from kronos_trader.backtest.metrics import ANNUALISE_MIN_DAYS, performance, summarize
from kronos_trader.backtest.report import metrics_table, short_span_note


def _equity(days: int, seed: int = 1) -> pd.Series:
    index = pd.date_range("2024-03-01", periods=days * 24, freq="1h")
    rng = np.random.default_rng(seed)
    return pd.Series(10_000 * np.exp(np.cumsum(rng.normal(-0.002, 0.01, len(index)))), index=index)


def _render(table) -> str:
    console = Console(width=140, record=True)
    console.print(table)
    return console.export_text()


def test_a_ten_day_run_shows_period_figures_and_marks_the_annualised_ones():
    equity = _equity(10)
    m = performance(equity, pd.Timedelta(hours=1))
    assert m["span_days"] < 10.1 and m["annualised_reliable"] is False
    # the period figures: the return over the span and a Sharpe not scaled to a year
    assert m["total_return"] == equity.iloc[-1] / equity.iloc[0] - 1
    returns = equity.pct_change().dropna()
    assert m["period_sharpe"] == returns.mean() / returns.std() * np.sqrt(len(returns))
    frame = pd.DataFrame({"equity": equity, "position_value": 0.0})
    metrics = summarize(frame, pd.DataFrame(columns=["pnl", "fees", "entry_time", "exit_time"]),
                        equity / equity.iloc[0], 0.0, pd.Timedelta(hours=1))
    result = SimpleNamespace(symbol="BTC/USDT", timeframe="1h", candles=frame, metrics=metrics, sample=False)
    text = _render(metrics_table(result))
    assert "Annual return *" in text and "Sharpe *" in text and "Calmar *" in text
    assert "Period Sharpe" in text
    note = short_span_note(metrics)
    assert note and "10-day span" in note and "annualised" in note


def test_a_long_run_marks_nothing():
    equity = _equity(ANNUALISE_MIN_DAYS + 30)
    m = performance(equity, pd.Timedelta(hours=1))
    assert m["annualised_reliable"] is True
    assert short_span_note({"strategy": m}) is None


def test_average_holding_is_shown_in_the_bars_unit():
    """Issue 25 (small): 'Average holding (h) 109.24' on daily bars."""
    frame = pd.DataFrame({"equity": _equity(200, 2), "position_value": 0.0})
    metrics = {"strategy": {"avg_holding_hours": 120.0}, "buy_and_hold": {}}
    daily = SimpleNamespace(symbol="GOOG", timeframe="1d", candles=frame, metrics=metrics)
    text = _render(metrics_table(daily))
    assert "Average holding (days)" in text and "5.00" in text and "(h)" not in text
    hourly = SimpleNamespace(symbol="GOOG", timeframe="1h", candles=frame, metrics=metrics)
    assert "Average holding (hours)" in _render(metrics_table(hourly))


def test_proportions_carry_no_sign():
    """Issue 25 (small): '+40.00%' win rate."""
    frame = pd.DataFrame({"equity": _equity(200, 2), "position_value": 0.0})
    metrics = {"strategy": {"win_rate": 0.4, "exposure": 0.005, "total_return": 0.1}, "buy_and_hold": {}}
    text = _render(metrics_table(SimpleNamespace(symbol="X", timeframe="1h", candles=frame, metrics=metrics)))
    assert "40.00%" in text and "+40.00%" not in text and "0.50%" in text and "+10.00%" in text
