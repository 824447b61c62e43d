"""Results broken down as freqtrade users read them: per pair, per exit reason, per period,
with the run's start and end, final balance, best and worst trade, drawdown period and
trades per day (console and summary.json); the equity panel's titles and buy-and-hold line."""
from __future__ import annotations

import json

import pandas as pd
import pytest
from rich.console import Console

from kronos_trader.backtest.breakdown import breakdown, drawdown_period, period_table, print_breakdown
from kronos_trader.backtest.report import trade_log, write_report
from kronos_trader.backtest.runner import run_backtest


def _trades():
    t = pd.Timestamp("2024-01-01")
    rows = [("A/USDT", t, t + pd.Timedelta(hours=5), 10.0, 0.01, "signal"),
            ("A/USDT", t + pd.Timedelta(days=1), t + pd.Timedelta(days=1, hours=2), -4.0, -0.004, "stop-loss"),
            ("B/USDT", t + pd.Timedelta(days=8), t + pd.Timedelta(days=9), 25.0, 0.025, "take-profit")]
    return pd.DataFrame([{"symbol": s, "entry_time": a, "exit_time": b, "pnl": p, "pnl_pct": q, "fees": 0.5,
                          "exit_reason": r} for s, a, b, p, q, r in rows])


def test_drawdown_period_finds_peak_trough_and_recovery():
    index = pd.date_range("2024-01-01", periods=7, freq="1D")
    equity = pd.Series([100, 110, 99, 88, 95, 111, 105.0], index=index)
    dd = drawdown_period(equity)
    assert dd["peak"] == str(index[1]) and dd["trough"] == str(index[3]) and dd["recovered"] == str(index[5])
    assert dd["depth"] == pytest.approx(88 / 110 - 1) and dd["days"] == 4.0
    still = drawdown_period(equity.iloc[:5])
    assert still["recovered"] is None


def test_breakdown_per_pair_reason_and_period():
    index = pd.date_range("2024-01-01", periods=24 * 12, freq="1h")
    equity = pd.DataFrame({"equity": 1000.0 + pd.Series(range(len(index)), index=index) * 0.1})
    b = breakdown(_trades(), equity["equity"], cash=1000.0)
    pairs = {r["key"]: r for r in b["per_pair"]}
    assert pairs["A/USDT"]["trades"] == 2 and pairs["A/USDT"]["pnl"] == 6.0 and pairs["A/USDT"]["wins"] == 1
    assert pairs["B/USDT"]["win_rate"] == 1.0
    reasons = {r["key"]: r["trades"] for r in b["per_exit_reason"]}
    assert reasons == {"signal": 1, "stop-loss": 1, "take-profit": 1}
    s = b["summary"]
    assert s["start"] == str(index[0]) and s["end"] == str(index[-1])
    assert s["starting_balance"] == 1000.0 and s["final_balance"] == pytest.approx(equity["equity"].iloc[-1])
    assert s["best_trade"]["pnl"] == 25.0 and s["worst_trade"]["pnl"] == -4.0
    assert s["trades_per_day"] == pytest.approx(3 / 12, rel=0.01)
    weeks = b["per_period"]["week"]
    assert sum(r["trades"] for r in weeks) == 3 and weeks[0]["start"] == "2024-01-01"
    days = b["per_period"]["day"]
    assert len(days) == 12 and days[0]["trades"] == 1
    assert all("return" in r and "balance" in r for r in days)
    assert period_table(b, "day") is not None


def test_backtest_report_carries_the_breakdown(fast_settings, sample_candles, tmp_path):
    result = run_backtest(fast_settings, sample_candles.iloc[:200], "BTC/USDT", "1h", None, progress=False)
    folder = write_report(result, tmp_path / "r")
    summary = json.loads((folder / "summary.json").read_text())
    b = summary["breakdown"]
    assert b["summary"]["final_balance"] == pytest.approx(result.equity["equity"].iloc[-1])
    assert sum(r["trades"] for r in b["per_pair"]) == len(result.trades)
    assert sum(r["trades"] for r in b["per_exit_reason"]) == len(result.trades)
    console = Console(width=160, record=True)
    print_breakdown(result, trade_log(result), console)
    text = console.export_text()
    for words in ("Final balance", "Best trade", "Worst trade", "Drawdown period", "Trades per day", "per pair",
                  "per exit reason"):
        assert words in text, words
    html = (folder / "chart.html").read_text()
    assert "buy &amp; hold" in html or "buy & hold" in html
    assert '"title":{"text":"equity' in html.replace(" ", "") or "equity (" in html
    assert len(trade_log(result)) == len(result.trades)
