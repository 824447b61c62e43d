"""Backtests: no look-ahead, cached reruns, indicator parity with the service, thresholds."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import func, select

from kronos_trader.backtest.compat import bt
from kronos_trader.backtest.engine import FractionalCommission
from kronos_trader.backtest.indicator import KronosIndicator
from kronos_trader.backtest.lookahead import check_lookahead
from kronos_trader.backtest.report import write_report
from kronos_trader.backtest.runner import run_backtest
from kronos_trader.backtest.services import service_for
from kronos_trader.backtest.strategy import ForecastSizer, PolicyStrategy, frame_feed
from kronos_trader.data import save_candles
from kronos_trader.store import Forecast, Order, Signal, open_store
from strategies.directional import Directional
from strategies.sizing import VolatilityTarget


def test_lookahead_check_passes(fast_settings, sample_candles):
    report = check_lookahead(fast_settings, sample_candles.iloc[:160], 0.6)
    assert report.passed, report.describe()
    assert report.compared["forecasts"] > 20 and report.compared["signals"] > 20
    assert report.changed_after > 0, "perturbing later data must change later forecasts"


def test_cached_rerun_equals_first_run_and_db_stays_unique(fast_settings, sample_candles):
    store = open_store(fast_settings.database.url)
    first = run_backtest(fast_settings, sample_candles, "BTC/USDT", "1h", store, progress=False)
    second = run_backtest(fast_settings, sample_candles, "BTC/USDT", "1h", store, progress=False)
    assert first.forecasts_computed == len(sample_candles) - 31 and first.forecasts_reused == 0
    assert second.forecasts_computed == 0 and second.forecasts_reused == first.forecasts_computed
    assert first.journal.signals == second.journal.signals
    assert [(o.bar_time, o.side, o.amount) for o in first.journal.orders] == \
           [(o.bar_time, o.side, o.amount) for o in second.journal.orders]
    pd.testing.assert_frame_equal(first.equity, second.equity)
    with store.session(readonly=True) as s:
        assert s.scalar(select(func.count()).select_from(Forecast)) == first.forecasts_computed
        for run in (first, second):
            n_signals = s.scalar(select(func.count()).select_from(Signal).where(Signal.run_id == run.run_id))
            assert n_signals == len(run.journal.signals)
            n_orders = s.scalar(select(func.count()).select_from(Order).where(Order.run_id == run.run_id))
            assert n_orders == len(run.journal.orders)
    run = store.get_run(first.run_id)
    assert run.status == "finished" and run.summary["strategy"]["trades"] == len(first.trades)
    assert store.load_equity(first.run_id).shape[0] == len(first.equity)


def test_report_files(fast_settings, sample_candles, tmp_path):
    result = run_backtest(fast_settings, sample_candles.iloc[:120], "BTC/USDT", "1h", None, progress=False)
    folder = write_report(result, tmp_path / "report")
    summary = json.loads((folder / "summary.json").read_text())
    assert set(summary["metrics"]) == {"strategy", "buy_and_hold"}
    for key in ("total_return", "annual_return", "sharpe", "sortino", "max_drawdown", "win_rate", "trades",
                "exposure", "fees"):
        assert key in summary["metrics"]["strategy"]
    assert (folder / "equity.png").stat().st_size > 10_000
    html = (folder / "chart.html").read_text()
    assert "Plotly.newPlot" in html and '<script src="http' not in html
    assert pd.read_csv(folder / "trades.csv").shape[0] == len(result.trades)


def test_signals_follow_thresholds(fast_settings, sample_candles):
    result = run_backtest(fast_settings, sample_candles.iloc[:200], "BTC/USDT", "1h", None, progress=False)
    forecasts = {f.window_end: f for f in result.forecasts.values()}
    assert result.journal.signals
    for signal in result.journal.signals:
        p_up = forecasts[signal.bar_time].prob_up()
        target = signal.target_position
        if "stop-loss" in signal.reason or "take-profit" in signal.reason:
            assert target == 0
        elif p_up > 0.5:
            assert target == pytest.approx(0.95)
        elif p_up < 0.3:
            assert target == pytest.approx(-0.95)
        else:
            assert target == 0
    # orders only where the target changed, on the bar the decision was made
    targets = [s.target_position for s in result.journal.signals]
    changes = sum(1 for a, b in zip([0.0] + targets, targets) if a != b)
    assert 0 < len(result.journal.orders) <= changes + 1


def test_directional_policy_thresholds():
    from kronos_trader.decision import PositionState, RiskLimits, decide
    from kronos_trader.forecasting.values import WindowForecast

    def forecast(p_up: float, ret: float = 0.01) -> WindowForecast:
        mean = np.full((4, 6), 100.0 * (1 + ret))
        q = {q: np.full(4, 100.0 * (1 + ret) + (q - 0.5) * 10) for q in (0.05, 0.25, 0.5, 0.75, 0.95)}
        return WindowForecast(pd.Timestamp("2024-01-01 01:00"), pd.Timestamp("2024-01-01"), 100.0, mean, q,
                              np.full(4, p_up))

    flat = PositionState(0.0, None, 1000.0, 100.0)
    policy = Directional(long_threshold=0.6, short_threshold=0.4, allow_short=True,
                         sizing={"kind": "fixed", "fraction": 0.5})
    assert policy.decide(forecast(0.7), flat).target == 0.5
    assert policy.decide(forecast(0.5), flat).target == 0.0
    assert policy.decide(forecast(0.3), flat).target == -0.5
    assert Directional(allow_short=False).decide(forecast(0.1), flat).target == 0.0
    by_return = Directional(signal="return", long_threshold=0.005, short_threshold=-0.005)
    assert by_return.decide(forecast(0.0, ret=0.01), flat).target > 0
    long = PositionState(1.0, 100.0, 1000.0, 94.0)
    assert decide(policy, forecast(0.9), long, RiskLimits(stop_loss=0.05)).reason.startswith("stop-loss")
    won = PositionState(1.0, 100.0, 1000.0, 111.0)
    assert decide(policy, forecast(0.9), won, RiskLimits(take_profit=0.1)).target == 0
    sticky = Directional(long_threshold=0.6, hold_long_above=0.4)
    assert sticky.decide(forecast(0.5), flat).target == 0.0
    assert sticky.decide(forecast(0.5), PositionState(1.0, 100.0, 1000.0, 100.0)).target > 0
    assert sticky.decide(forecast(0.3), PositionState(1.0, 100.0, 1000.0, 100.0)).target == 0.0
    sized = Directional(sizing={"kind": "vol_target", "target_vol": 0.01, "max_fraction": 1.0})
    assert 0 < sized.decide(forecast(0.9), flat).target <= 1.0
    with pytest.raises(ValueError, match="unknown sizing"):
        Directional(sizing={"kind": "martingale"})


def _cerebro(runonce: bool = True) -> bt.Cerebro:
    cerebro = bt.Cerebro(stdstats=False, runonce=runonce)
    cerebro.broker.addcommissioninfo(FractionalCommission(commission=0.001))
    return cerebro


class Recorder(bt.Strategy):
    """Keeps each indicator's lines and bar stamps, bar by bar."""

    params = (("kw", {}),)

    def __init__(self):
        self.ind = {d: KronosIndicator(d, **self.p.kw) for d in self.datas}
        self.rows = {d._name: [] for d in self.datas}

    def next(self):
        for d, ind in self.ind.items():
            self.rows[d._name].append((bt.num2date(d.datetime[0]), ind.p_up[0], ind.pred_close[0], len(d)))


def _indicator_kw(settings):
    service = service_for(settings.model.name, settings.forecast)
    return service, {"service": service, "timeframe": "1h"}


@pytest.mark.parametrize("runonce", [True, False])
def test_indicator_equals_service(fast_settings, sample_candles, runonce):
    candles = sample_candles.iloc[:100]
    service, kw = _indicator_kw(fast_settings)
    cerebro = _cerebro(runonce)
    cerebro.adddata(frame_feed(candles, "BTC/USDT"))
    cerebro.addstrategy(Recorder, kw=kw)
    strat = cerebro.run()[0]
    expected = service.forecast_series(candles, "BTC/USDT", "1h")
    rows = strat.rows["BTC/USDT"]
    assert len(rows) == len(expected)
    for (stamp, p_up, close, _), (pos, f) in zip(rows, sorted(expected.items())):
        assert pd.Timestamp(stamp) == candles.index[pos]
        assert p_up == pytest.approx(f.prob_up()) and close == pytest.approx(f.close())


def test_indicator_with_csv_feed_and_two_datas(fast_settings, sample_candles, tmp_path):
    candles = sample_candles.iloc[:80]
    path = save_candles(candles, tmp_path / "c.csv")
    csv_feed = bt.feeds.GenericCSVData(dataname=str(path), dtformat="%Y-%m-%d %H:%M:%S", datetime=0, open=1, high=2,
                                       low=3, close=4, volume=5, openinterest=-1, timeframe=bt.TimeFrame.Minutes,
                                       compression=60, name="CSV")
    other = candles * 1.5
    other.index = candles.index
    service, kw = _indicator_kw(fast_settings)
    cerebro = _cerebro()
    cerebro.adddata(csv_feed)
    cerebro.adddata(frame_feed(other, "OTHER"))
    cerebro.addstrategy(Recorder, kw=kw)
    strat = cerebro.run()[0]
    assert len(strat.rows["CSV"]) == len(strat.rows["OTHER"]) == len(candles) - 31
    expected = service.forecast_series(other, "OTHER", "1h")
    assert strat.rows["OTHER"][-1][1] == pytest.approx(expected[len(other) - 1].prob_up())


def _quarter_hours(hourly: pd.DataFrame) -> pd.DataFrame:
    """15-minute bars (each hour's bar repeated 4 times) to resample or replay."""
    return pd.DataFrame(np.repeat(hourly.to_numpy(), 4, axis=0), columns=hourly.columns,
                        index=pd.date_range(hourly.index[0], periods=len(hourly) * 4, freq="15min"))


def _run_hourly(settings, quarter: pd.DataFrame, mode: str):
    """Feed 15-minute bars resampled or replayed to 1h through a Recorder strategy."""
    service, kw = _indicator_kw(settings)
    before = service.computed + service.reused
    cerebro = _cerebro(runonce=False)
    feed = bt.feeds.PandasData(dataname=quarter, timeframe=bt.TimeFrame.Minutes, compression=15)
    getattr(cerebro, f"{mode}data")(feed, timeframe=bt.TimeFrame.Minutes, compression=60, name="H1")
    cerebro.addstrategy(Recorder, kw=kw)
    rows = cerebro.run()[0].rows["H1"]
    return service, rows, service.computed + service.reused - before


def test_indicator_on_resampled_data(fast_settings, sample_candles):
    quarter = _quarter_hours(sample_candles.iloc[:60])
    service, rows, _ = _run_hourly(fast_settings, quarter, "resample")
    assert rows, "the indicator produced no values on resampled data"
    # backtrader takes feed stamps as bar ends: an hour is (h-1, h], labelled h
    agg = {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}
    hourly = quarter.resample("1h", closed="right", label="right").agg(agg).dropna()
    for stamp, p_up, close, n in rows[-3:]:
        window = hourly.loc[:pd.Timestamp(stamp)]
        expected = service.forecast_at(window, [len(window) - 1], "H1", "1h")[len(window) - 1]
        assert p_up == pytest.approx(expected.prob_up()) and close == pytest.approx(expected.close())


def test_replay_forecasts_once_per_closed_bar(fast_settings, sample_candles):
    _, rows, calls = _run_hourly(fast_settings, _quarter_hours(sample_candles.iloc[:50]), "replay")
    closed_bars = max(r[3] for r in rows) - 1
    assert calls == closed_bars - 31, "one forecast per closed bar, none per tick"
    ticks_per_bar = pd.Series([r[3] for r in rows]).value_counts()
    assert (ticks_per_bar > 1).any(), "replay should deliver bars several times"
    # within a bar the value does not change between ticks
    frame = pd.DataFrame(rows, columns=["t", "p_up", "close", "n"])
    assert (frame.groupby("n")["p_up"].nunique() == 1).all()


def test_forecast_sizer_in_user_strategy(fast_settings, sample_candles):
    """A user's own strategy with the Kronos indicator and the forecast-driven sizer."""

    class UserStrategy(bt.Strategy):
        def __init__(self):
            self.kronos = {self.data: KronosIndicator(self.data, service=service, timeframe="1h")}

        def next(self):
            if not self.position and self.kronos[self.data].p_up[0] > 0.5:
                self.buy()
            elif self.position and self.kronos[self.data].p_up[0] < 0.5:
                self.close()

    service, _ = _indicator_kw(fast_settings)
    cerebro = _cerebro()
    cerebro.adddata(frame_feed(sample_candles.iloc[:120], "BTC/USDT"))
    cerebro.addstrategy(UserStrategy)
    cerebro.addsizer(ForecastSizer, forecast_sizer=VolatilityTarget(target_vol=0.01, max_fraction=0.9))
    cerebro.addanalyzer(bt.analyzers.TradeAnalyzer, _name="trades")
    strat = cerebro.run()[0]
    assert strat.analyzers.trades.get_analysis().get("total", {}).get("total", 0) > 0


def test_policy_strategy_in_existing_cerebro(fast_settings, sample_candles):
    """The README's few lines: PolicyStrategy added to a user's own Cerebro."""
    cerebro = _cerebro()
    cerebro.broker.setcash(10_000)
    cerebro.adddata(frame_feed(sample_candles.iloc[:120], "BTC/USDT"))
    cerebro.addstrategy(PolicyStrategy, policy=Directional(long_threshold=0.5),
                        indicator={"model": fast_settings.model.name, "lookback": 32, "horizon": 4,
                                   "sample_count": 4})
    cerebro.addanalyzer(bt.analyzers.DrawDown, _name="dd")
    strat = cerebro.run()[0]
    assert strat.journal.signals and strat.analyzers.dd.get_analysis()["max"]["drawdown"] >= 0


@pytest.mark.parametrize("symbols", [1, 3])
def test_backtest_forecasts_each_window_once(fast_settings, sample_candles, monkeypatch, symbols):
    """The batched pass's forecasts are handed to the indicators: each decision window is
    requested from the service and hashed once, not again through the feed's frame."""
    from kronos_trader.forecasting import service as service_module
    from kronos_trader.forecasting.service import ForecastService

    service = ForecastService.from_settings(fast_settings, None, progress=False)
    requested, hashed = [], []
    forecast_many, frame_hash = service.forecast_many, service_module.frame_hash
    monkeypatch.setattr(service, "forecast_many", lambda requests: requested.append(len(requests))
                        or forecast_many(requests))
    monkeypatch.setattr(service_module, "frame_hash", lambda *args: hashed.append(1) or frame_hash(*args))
    candles = sample_candles.iloc[:90]
    panel = {f"S{i}/USDT": candles.iloc[i:] for i in range(symbols)}
    result = run_backtest(fast_settings, panel if symbols > 1 else candles, "S0/USDT", "1h", None, progress=False,
                          service=service)
    windows = [len(c) - 31 for c in panel.values()]
    assert requested == windows and len(hashed) == sum(windows)
    assert len(result.journal.signals) == sum(windows)


def test_handed_forecasts_are_used_for_their_own_bars_only(fast_settings, sample_candles):
    """In a user's Cerebro, PolicyStrategy(forecasts=...) hands precomputed forecasts to the
    indicators; a bar whose data differs from the window they were made from is forecast."""
    service, _ = _indicator_kw(fast_settings)
    candles = sample_candles.iloc[:80]
    precomputed = service.forecast_series(candles, "BTC/USDT", "1h")
    changed = candles.copy()
    changed.iloc[60:, :4] *= 1.01  # the same bars up to 59, other prices from 60 on
    cerebro = _cerebro()
    cerebro.adddata(frame_feed(changed, "BTC/USDT"))
    cerebro.addstrategy(PolicyStrategy, policy=Directional(), service=service,
                        forecasts={"BTC/USDT": precomputed}, forecast_candles={"BTC/USDT": candles})
    indicator = next(iter(cerebro.run()[0].kronos.values()))
    assert indicator.computed + indicator.reused == 80 - 60  # only the changed windows were asked for
    own = service.forecast_series(changed, "BTC/USDT", "1h")
    for position in range(31, 80):
        used = indicator.forecasts[changed.index[position]]
        if position < 60:
            assert used is precomputed[position]
        else:
            assert used.last_close == changed["close"].iloc[position] and np.array_equal(used.p_up,
                                                                                         own[position].p_up)


def test_handed_forecasts_are_not_used_where_an_earlier_bar_of_their_window_differs(fast_settings, sample_candles):
    """Review: handed forecasts were matched on the bar time and last close only, so a feed whose
    earlier bars differ (40-49 here) traded on forecasts of other data at bars 50-59."""
    service, _ = _indicator_kw(fast_settings)
    candles = sample_candles.iloc[:80]
    precomputed = service.forecast_series(candles, "BTC/USDT", "1h")
    changed = candles.copy()
    changed.iloc[40:50, :4] *= 1.05  # windows ending at 50-59 hold these bars; their last closes are the same
    cerebro = _cerebro()
    cerebro.adddata(frame_feed(changed, "BTC/USDT"))
    cerebro.addstrategy(PolicyStrategy, policy=Directional(), service=service,
                        forecasts={"BTC/USDT": precomputed}, forecast_candles={"BTC/USDT": candles})
    indicator = next(iter(cerebro.run()[0].kronos.values()))
    lookback = fast_settings.forecast.lookback
    for position in range(lookback - 1, 80):
        used = indicator.forecasts[changed.index[position]]
        touches_change = position >= 40 and position - lookback + 1 < 50
        assert (used is precomputed[position]) == (not touches_change), position


def test_handed_forecasts_need_the_candles_they_were_made_from(fast_settings, sample_candles):
    service, _ = _indicator_kw(fast_settings)
    candles = sample_candles.iloc[:80]
    cerebro = _cerebro()
    cerebro.adddata(frame_feed(candles, "BTC/USDT"))
    cerebro.addstrategy(PolicyStrategy, policy=Directional(), service=service,
                        forecasts={"BTC/USDT": service.forecast_series(candles, "BTC/USDT", "1h")})
    with pytest.raises(ValueError, match="forecast_candles"):
        cerebro.run()


def test_lookahead_check_covers_the_skill_gate(fast_settings, sample_candles):
    settings = fast_settings.model_copy(deep=True)
    settings.strategy.gate = {"rule": "crps_skill", "window": 10}
    report = check_lookahead(settings, sample_candles.iloc[:160], 0.6)
    assert report.passed, report.describe()
    base = run_backtest(settings, sample_candles.iloc[:160], "BTC/USDT", "1h", None, progress=False)
    reasons = [s.reason for s in base.journal.signals]
    assert reasons[0].startswith("gate warming up") and any(r.startswith("gate ") and "warming" not in r
                                                            for r in reasons)


def test_lookback_sensitivity_counts_changed_decisions(fast_settings, sample_candles):
    from kronos_trader.backtest.lookahead import check_lookback_sensitivity

    same = check_lookback_sensitivity(fast_settings, sample_candles.iloc[:200], bars=12, lookbacks=(32,))
    assert same.bars == 12 and same.changed == {32: 0}  # the configured lookback again: nothing changes
    other = check_lookback_sensitivity(fast_settings, sample_candles.iloc[:200], bars=12)
    assert set(other.changed) == {16, 64} and all(0 <= n <= 12 for n in other.changed.values())
    assert "lookback 16: decision changes at" in other.describe()


def test_report_files_hold_skill_trades_monthly_and_settings(fast_settings, sample_candles, tmp_path):
    import dataclasses

    from kronos_trader.backtest.report import training_warning

    result = run_backtest(fast_settings, sample_candles, "BTC/USDT", "1h", None, progress=False)
    folder = write_report(result, tmp_path / "reports" / "run")
    summary = json.loads((folder / "summary.json").read_text())
    skill = summary["forecast_skill"]
    assert skill["windows"] == len(result.forecasts) - 4 and skill["pending"] == 4  # horizon 4: last 4 open
    assert set(skill["steps"]) == {"1", "2", "4"}
    for key in ("mae", "crps", "crps_skill_random_walk", "crps_skill_random_walk_vol", "coverage_50", "coverage_90",
                "hit_rate", "hit_low", "hit_high", "rank_corr"):
        assert key in skill["steps"]["4"]["model"]
    for key in ("profit_factor", "expectancy", "avg_win", "avg_loss", "avg_holding_hours", "longest_losing_streak",
                "calmar"):
        assert key in summary["metrics"]["strategy"]
    s = summary["settings"]
    assert s["model"]["model_id"] == result.model_id and s["model"]["weights_hash"]
    assert s["forecast"]["lookback"] == 32 and s["forecast"]["samples"] == 4 and "top_p" in s["forecast"]["sampling"]
    assert s["strategy"]["name"] == "strategies.directional:Directional" and s["costs"]["commission"] == 0.001
    assert len(s["data"]["data_hash"]) == 64 and s["data"]["bars"] == len(sample_candles)
    assert summary["monthly_returns"] and sum(summary["exit_reasons"].values()) == len(result.trades)
    trades = pd.read_csv(folder / "trades.csv")
    assert {"exit_reason", "holding_hours", "fees", "pnl"} <= set(trades.columns)
    assert set(trades["exit_reason"]) <= {"signal", "stop-loss", "take-profit", "gate"}
    html = (folder / "chart.html").read_text()
    assert "id='forecast-skill'" in html and "id='monthly-returns'" in html and "id='trades'" in html
    assert (folder.parent / "plotly.min.js").stat().st_size > 1_000_000  # written once beside the runs
    assert (folder / "chart.html").stat().st_size < 1_000_000
    assert training_warning(result) is None
    hub = dataclasses.replace(result, settings=fast_settings.model_copy(update={"model": fast_settings.model.model_copy(
        update={"name": "kronos-small"})}))
    assert "trained on data reaching" in training_warning(hub)  # the sample's bars are before mid-2024
