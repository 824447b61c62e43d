"""Backtest report API: a real run from run_backtest (tiny model, 400 bars, lookback 64,
horizon 8) listed, detailed, and drawn with its forecasts over its candles."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_web_support import SYMBOL, TIMEFRAME, assert_one_line_error, backtest_run_id, client, store


@pytest.fixture(scope="module")
def run_id() -> str:
    return backtest_run_id()


@pytest.fixture(scope="module")
def c():
    return client()


def test_list_shows_the_run_with_headline_metrics(c, run_id):
    runs = c.get("/api/backtests").json()["runs"]
    row = next(r for r in runs if r["id"] == run_id)
    summary = store().get_run(run_id).summary
    assert row["status"] == "finished" and row["symbol"] == SYMBOL and row["timeframe"] == TIMEFRAME
    assert row["bars"] == 400 and row["total_return"] == pytest.approx(summary["strategy"]["total_return"])
    assert row["hold_return"] == pytest.approx(summary["buy_and_hold"]["total_return"])


def test_detail_metrics_equity_drawdown_trades(c, run_id):
    d = c.get(f"/api/backtests/{run_id}").json()
    metrics = {m["metric"]: m for m in d["metrics"]}
    summary = store().get_run(run_id).summary
    for key in ("total_return", "sharpe", "max_drawdown", "trades"):
        for side in ("strategy", "buy_and_hold"):
            expected = summary[side][key]
            got = metrics[key][side]
            assert (got is None and not np.isfinite(expected)) or got == pytest.approx(expected), (key, side)
    equity = store().load_equity(run_id)
    assert len(d["equity"]["timestamps"]) == len(equity)
    dd = np.array(d["equity"]["drawdown"], dtype=float)
    assert (dd <= 1e-12).all() and dd.min() == pytest.approx(summary["strategy"]["max_drawdown"], abs=1e-6)
    assert len(d["trades"]) == len(store().load_trades(run_id)) == summary["strategy"]["trades"]
    assert d["config"]["forecast"]["lookback"] == 64 and d["config"]["forecast"]["horizon"] == 8
    hold = d["hold"]
    assert len(hold["equity"]) == len(equity)
    assert hold["equity"][-1] / hold["equity"][0] - 1 == pytest.approx(summary["buy_and_hold"]["total_return"])


def test_overlay_has_candles_forecasts_and_fills(c, run_id):
    o = c.get(f"/api/backtests/{run_id}/overlay").json()
    assert o["source"].startswith("database") and o["notes"] == []
    # the backtest span: from the first decision bar (bar 64 of 400) on
    assert len(o["candles"]["timestamps"]) >= 400 - 64 and o["interval"] == "1h"
    f = o["forecasts"]
    signals = store().load_signals(run_id)
    assert f["horizon"] == 8 and len(f["ids"]) == signals["forecast_id"].nunique() > 300
    # the h-ahead point sits (h - 1) bars after the decision's window end
    first_next = pd.Timestamp(f["next"]["timestamps"][0])
    assert pd.Timestamp(f["ahead"]["timestamps"][0]) - first_next == pd.Timedelta(hours=7)
    assert all(lo <= hi for lo, hi in zip(f["ahead"]["q05"], f["ahead"]["q95"]))
    assert len(o["fills"]["timestamps"]) == len(store().load_fills(run_id)) > 0
    assert set(o["fills"]["side"]) <= {"buy", "sell"}


def test_single_forecast_path(c, run_id):
    o = c.get(f"/api/backtests/{run_id}/overlay").json()
    fid = o["forecasts"]["ids"][10]
    f = c.get(f"/api/backtests/{run_id}/forecasts/{fid}").json()
    assert f["id"] == fid and f["horizon"] == 8 and len(f["close"]) == 8 and len(f["timestamps"]) == 8
    assert f["timestamps"][0] == o["forecasts"]["next"]["timestamps"][10]
    assert 0 <= f["prob_up"] <= 1 and f["symbol"] == SYMBOL
    assert_one_line_error(c.get(f"/api/backtests/{run_id}/forecasts/999999"), 404, "not part of run")
    assert_one_line_error(c.get(f"/api/backtests/{run_id}/forecasts/abc"), 422, "forecast_id")


def test_run_page_and_unknown_runs(c, run_id):
    r = c.get(f"/backtests/{run_id}")
    assert r.status_code == 200 and f'data-run-id="{run_id}"' in r.text
    for path in ("/api/backtests/nope", "/api/backtests/nope/overlay"):
        assert_one_line_error(c.get(path), 404, "no backtest run")


def test_run_without_candles_explains_why():
    """A run whose candles are neither stored nor in its data file still shows its forecasts."""
    s = store()
    rid = s.create_run("backtest", "no-candles", {"data": {"source": "nowhere", "symbol": "ZZZ/USDT",
                                                           "timeframe": "1h", "path": "/nonexistent/x.csv"}})
    s.record_equity_many(rid, [{"ts": pd.Timestamp("2020-01-01") + pd.Timedelta(hours=k), "equity": 100.0 + k,
                                "cash": 100.0, "position_value": float(k)} for k in range(5)])
    s.finish_run(rid, "finished", {"symbol": "ZZZ/USDT", "timeframe": "1h", "bars": 5,
                                   "strategy": {"total_return": 0.04}, "buy_and_hold": {"total_return": 0.0}})
    c = client()
    o = c.get(f"/api/backtests/{rid}/overlay").json()
    assert "candles" not in o and "not in the database" in o["notes"][0]
    assert o["forecasts"]["ids"] == [] and o["fills"]["timestamps"] == []
    d = c.get(f"/api/backtests/{rid}").json()
    assert d["hold"]["equity"] == [] and d["trades"] == [] and len(d["equity"]["equity"]) == 5


def test_detail_shows_the_runs_stored_forecast_skill(c, run_id):
    d = c.get(f"/api/backtests/{run_id}").json()
    stored = store().get_run(run_id).summary["forecast_skill"]
    skill = d["skill"]
    # 400 bars, lookback 64, horizon 8: the last 8 of 337 forecasts have not resolved
    assert stored["windows"] == 337 - 8 and stored["pending"] == 8 and skill["windows"] == stored["windows"]
    assert [(r["step"], r["forecaster"]) for r in skill["rows"][:3]] == [(1, "Kronos"), (1, "RW (last close)"),
                                                                          (1, "RW + rolling vol")]
    assert sorted({r["step"] for r in skill["rows"]}) == [1, 4, 8]
    kronos = skill["rows"][-3]
    assert kronos["crps_skill_random_walk_vol"] == pytest.approx(stored["steps"]["8"]["model"]
                                                                 ["crps_skill_random_walk_vol"])
    assert skill["verdict"].startswith("At step 8")
    metrics = {m["metric"] for m in d["metrics"]}
    assert {"calmar", "profit_factor", "expectancy", "longest_losing_streak"} <= metrics


def test_backtest_detail_has_exit_reasons_and_the_run_settings():
    """Issue 25 (web): settings left out the gate, stops and dates; trades had no exit reason."""
    from kronos_trader.backtest.report import EXIT_REASONS

    d = client().get(f"/api/backtests/{backtest_run_id()}").json()
    assert d["trades"] and all(t["exit_reason"] in EXIT_REASONS for t in d["trades"])
    cfg = d["config"]
    assert {"risk", "costs", "gate", "dates"} <= set(cfg)
    assert set(cfg["risk"]) >= {"stop_loss", "take_profit"} and "commission" in cfg["costs"]
    assert cfg["dates"]["first_bar"] and cfg["dates"]["last_bar"]
    assert d["run"]["name"] != "backtest"


def test_short_runs_mark_annualised_figures():
    """Issue 25.4 on the web page: a 16-day run's annualised figures are marked."""
    d = client().get(f"/api/backtests/{backtest_run_id()}").json()
    assert d["short_span_note"] and "annualised" in d["short_span_note"]
    marked = {m["metric"] for m in d["metrics"] if m.get("annualised")}
    assert marked == {"annual_return", "sharpe", "sortino", "calmar"}
