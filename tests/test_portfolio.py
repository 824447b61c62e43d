"""Portfolio backtests: a feed per symbol, shared cash, and the cross-sectional TopK policy."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from factories import make_candles

from kronos_trader.backtest.runner import load_portfolio_candles, run_backtest, symbol_sources
from kronos_trader.decision import Decision, PositionState, RiskLimits, decide_all
from kronos_trader.evaluation.skill import score_run
from kronos_trader.forecasting.values import WindowForecast
from kronos_trader.store import open_store
from strategies.cross_sectional import TopK


def _forecast(end: str, expected: float, p_up: float = 0.5) -> WindowForecast:
    end = pd.Timestamp(end)
    mean = np.full((4, 6), 100.0 * (1 + expected))
    return WindowForecast(end, end - pd.Timedelta("1h"), 100.0, mean, {0.05: np.full(4, 95.0), 0.95: np.full(4, 105.0)},
                          np.full(4, p_up))


def _flat(price: float = 100.0) -> PositionState:
    return PositionState(size=0.0, entry_price=None, equity=10_000.0, price=price)


def test_topk_holds_the_best_and_skips_predicted_losers():
    policy = TopK(k=2, every=1, gross=0.9)
    forecasts = {"A": _forecast("2024-01-01 10:00", 0.02), "B": _forecast("2024-01-01 10:00", -0.01),
                 "C": _forecast("2024-01-01 10:00", 0.01)}
    out = policy.allocate(forecasts, {s: _flat() for s in forecasts})
    assert out["A"].target == pytest.approx(0.45) and out["C"].target == pytest.approx(0.45)
    assert out["B"].target == 0.0 and "rank 3/3" in out["B"].reason
    # only one clears the floor: it gets the whole gross exposure
    out = TopK(k=2, every=1, gross=0.9, min_signal=0.015).allocate(forecasts, {s: _flat() for s in forecasts})
    assert out["A"].target == pytest.approx(0.9) and out["C"].target == 0.0


def test_topk_rebalances_on_bar_multiples_and_holds_in_between():
    policy = TopK(k=1, every=24)
    at_midnight = {"A": _forecast("2024-01-02 00:00", 0.01), "B": _forecast("2024-01-02 00:00", 0.02)}
    later = {"A": _forecast("2024-01-02 05:00", 0.05), "B": _forecast("2024-01-02 05:00", 0.0)}
    positions = {"A": _flat(), "B": _flat()}
    assert policy.allocate(at_midnight, positions)["B"].target > 0
    assert policy.allocate(later, positions) is None
    held = decide_all(policy, later, positions, {"A": 0.0, "B": 0.95}, RiskLimits())
    assert held == {"A": Decision(0.0, "hold"), "B": Decision(0.95, "hold")}


def test_decide_all_applies_stop_loss_between_rebalances():
    policy = TopK(k=1, every=24)
    later = {"A": _forecast("2024-01-02 05:00", 0.05)}
    losing = {"A": PositionState(size=10.0, entry_price=100.0, equity=10_000.0, price=90.0)}
    out = decide_all(policy, later, losing, {"A": 0.95}, RiskLimits(stop_loss=0.05))
    assert out["A"].target == 0.0 and out["A"].reason.startswith("stop-loss")


@pytest.mark.parametrize("bad", [{"k": 0}, {"every": 0}, {"signal": "x"}, {"gross": 1.5}])
def test_topk_rejects_bad_params(bad):
    with pytest.raises(ValueError):
        TopK(**bad)


def _write_symbols(tmp_path, n=160):
    paths = {}
    for i, symbol in enumerate(("AAA/USDT", "BBB/USDT", "CCC/USDT")):
        frame = make_candles(n, seed=i + 1)
        paths[symbol] = tmp_path / f"{symbol.split('/')[0]}.csv"
        frame.to_csv(paths[symbol])
    return paths


def test_topk_portfolio_backtest_shares_cash_and_persists(fast_settings, tmp_path):
    paths = _write_symbols(tmp_path)
    settings = fast_settings.model_copy(update={"strategy": fast_settings.strategy.model_copy(update={
        "name": "strategies.cross_sectional:TopK", "params": {"k": 1, "every": 4}})})
    store = open_store(settings.database.url)
    sources = symbol_sources(settings, [f"{s}={p}" for s, p in paths.items()])
    panel = load_portfolio_candles(settings, sources, store)
    result = run_backtest(settings, panel, "", "1h", store, progress=False)
    assert result.symbol == "AAA/USDT,BBB/USDT,CCC/USDT" and set(result.panel) == set(paths)
    assert (result.forecasts_computed, result.forecasts_reused) == (3 * (160 - 32 + 1), 0)
    again = run_backtest(settings, panel, "", "1h", store, progress=False)
    assert (again.forecasts_computed, again.forecasts_reused) == (0, 3 * (160 - 32 + 1))
    assert again.equity["equity"].equals(result.equity["equity"])
    signals = pd.DataFrame(result.journal.signals)
    assert set(signals["symbol"]) == set(paths)
    # at most one symbol is held at a time (k=1), and the account never borrows cash
    by_bar = signals.groupby("bar_time")["target_position"].apply(lambda t: int((t > 0).sum()))
    assert by_bar.max() == 1 and (result.equity["cash"] > -1e-6).all()
    assert (signals.groupby("bar_time").size() == len(paths)).all()  # one cross-sectional decision a bar
    # the skill of the first symbol's forecasts, the one the report charts
    first = next(iter(panel))
    assert result.skill is not None and result.skill.windows > 0
    assert result.skill.to_dict() == score_run(result.forecasts.values(), panel[first]).to_dict()
    assert result.equity["position_value"].max() <= result.equity["equity"].max()
    traded = {o.symbol for o in result.journal.orders}
    assert len(traded) >= 2
    run = store.get_run(result.run_id)
    assert run.status == "finished" and run.summary["symbol"] == result.symbol
    hold = result.metrics["buy_and_hold"]["total_return"]
    closes = pd.DataFrame({s: f["close"] for s, f in panel.items()})
    equal = (closes / closes.iloc[0]).mean(axis=1)  # equal parts bought at the first bar
    first = closes.index.get_loc(result.equity.index[0] - pd.Timedelta("1h"))
    assert hold == pytest.approx(equal.iloc[-1] / equal.iloc[first] - 1, rel=1e-9)


def test_directional_on_several_symbols_decides_each_feed(fast_settings, tmp_path):
    paths = _write_symbols(tmp_path, n=100)
    panel = load_portfolio_candles(fast_settings, symbol_sources(fast_settings, [f"{s}={p}" for s, p in paths.items()]),
                                   None)
    result = run_backtest(fast_settings, panel, "", "1h", None, progress=False)
    per_symbol = pd.DataFrame(result.journal.signals).groupby("symbol").size()
    assert list(per_symbol) == [100 - 32 + 1] * 3


def test_unknown_stored_symbol_is_one_line_error(fast_settings):
    with pytest.raises(ValueError, match="no stored candles for binance ZZZ/USDT"):
        load_portfolio_candles(fast_settings, symbol_sources(fast_settings, ["BTC/USDT", "ZZZ/USDT"]),
                               open_store(fast_settings.database.url))


def test_cli_backtest_symbols(fast_settings, tmp_path):
    import yaml
    from typer.testing import CliRunner

    from kronos_trader.cli import app

    paths = _write_symbols(tmp_path, n=90)
    config = tmp_path / "config.yaml"
    raw = fast_settings.model_dump(mode="json")
    raw["strategy"] = {"name": "strategies.cross_sectional:TopK", "params": {"k": 2, "every": 6}}
    config.write_text(yaml.safe_dump(raw))
    listed = ",".join(f"{s}={p}" for s, p in paths.items())
    out = CliRunner().invoke(app, ["backtest", "-c", str(config), "--symbols", listed, "--no-progress"])
    assert out.exit_code == 0, out.output
    assert "AAA/USDT,BBB/USDT,CCC/USDT" in out.output and "177 computed" in out.output
    bad = CliRunner().invoke(app, ["backtest", "-c", str(config), "--symbols", f"{listed},AAA/USDT"])
    assert bad.exit_code == 1 and "listed twice" in bad.output


def _sources(paths):
    return [f"{s}={p}" for s, p in paths.items()]


def test_symbols_keep_their_own_bars_and_a_missing_bar_is_not_ranked(fast_settings, tmp_path):
    # issue 23.1: BBB lacks 10 bars; AAA must keep all of its own (no intersection), and at
    # BBB's missing bars only AAA is ranked
    full = make_candles(140, seed=1)
    gappy = make_candles(140, seed=2).drop(make_candles(140, seed=2).index[80:90])
    paths = {"AAA/USDT": tmp_path / "a.csv", "BBB/USDT": tmp_path / "b.csv"}
    full.to_csv(paths["AAA/USDT"])
    gappy.to_csv(paths["BBB/USDT"])
    settings = fast_settings.model_copy(update={"strategy": fast_settings.strategy.model_copy(update={
        "name": "strategies.cross_sectional:TopK", "params": {"k": 1, "every": 1}})})
    panel = load_portfolio_candles(settings, symbol_sources(settings, _sources(paths)), None)
    assert len(panel["AAA/USDT"]) == 140 and len(panel["BBB/USDT"]) == 130
    assert panel["AAA/USDT"].index.equals(full.index)
    result = run_backtest(settings, panel, "", "1h", None, progress=False)
    signals = pd.DataFrame(result.journal.signals)
    per_symbol = signals.groupby("symbol").size()
    assert per_symbol["AAA/USDT"] == 140 - 31 and per_symbol["BBB/USDT"] == 130 - 31
    missing = set(full.index[80:90] + pd.Timedelta("1h"))
    at_gap = signals[signals["bar_time"].isin(missing)]
    assert len(at_gap) == 10 and set(at_gap["symbol"]) == {"AAA/USDT"}
    # the equity curve has a point for every bar of the union, at the bar's close
    assert len(result.equity) == 140 - 31
    assert result.equity.index.is_monotonic_increasing and result.equity.index.is_unique


def test_mixed_timeframes_are_refused_in_one_line(fast_settings, tmp_path):
    hourly = make_candles(200, seed=1)
    quarter = make_candles(200, seed=2)
    quarter.index = pd.date_range(hourly.index[0], periods=200, freq="15min", name=hourly.index.name)
    paths = {"AAA/USDT": tmp_path / "a.csv", "BBB/USDT": tmp_path / "b.csv"}
    hourly.to_csv(paths["AAA/USDT"])
    quarter.to_csv(paths["BBB/USDT"])
    with pytest.raises(ValueError, match="BBB/USDT has 15m bars, AAA/USDT 1h") as err:
        load_portfolio_candles(fast_settings, symbol_sources(fast_settings, _sources(paths)), None)
    assert "\n" not in str(err.value)


def test_positions_open_at_the_end_are_listed_marked_to_market(fast_settings, tmp_path):
    # issue 23.2: TopK with k=2 on rising prices holds positions at the end
    paths = _write_symbols(tmp_path, n=120)
    settings = fast_settings.model_copy(update={"strategy": fast_settings.strategy.model_copy(update={
        "name": "strategies.cross_sectional:TopK", "params": {"k": 3, "every": 1, "min_signal": -1.0}})})
    panel = load_portfolio_candles(settings, symbol_sources(settings, _sources(paths)), None)
    result = run_backtest(settings, panel, "", "1h", None, progress=False)
    trades = result.trades
    open_rows = trades[trades["status"] == "open"]
    assert len(open_rows) == 3  # every symbol is held at the end
    for row in open_rows.itertuples():
        assert row.exit_price == pytest.approx(float(panel[row.symbol]["close"].iloc[-1]))
    # closed round trips plus the open ones marked to market add up to the account's result
    final = result.equity["equity"].iloc[-1]
    assert trades["pnl"].sum() == pytest.approx(final - settings.backtest.cash, rel=1e-9, abs=1e-6)
    assert result.metrics["strategy"]["trades"] == len(trades)
    from kronos_trader.backtest.report import write_report

    folder = write_report(result, tmp_path / "report")
    csv = pd.read_csv(folder / "trades.csv")
    assert (csv["status"] == "open").sum() == 3 and set(csv.loc[csv["status"] == "open", "exit_reason"]) == {"open"}


@pytest.mark.parametrize("sizing", [{"kind": "fixed", "fraction": -1}, {"kind": "kelly", "max_fraction": -0.5},
                                    {"kind": "vol_target", "target_vol": 0}])
def test_negative_sizing_is_refused(sizing):
    from strategies.directional import Directional

    with pytest.raises(ValueError, match="sizing") as err:
        Directional(sizing=sizing)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("finetune", [{}, {"refit_every": "50"}])
def test_an_empty_panel_is_refused_in_one_line_before_the_model_loads(fast_settings, tmp_path, finetune):
    from kronos_trader.config import parse_settings

    # a model that cannot load: the panel must be refused before anything tries
    settings = parse_settings({**fast_settings.model_dump(mode="json"), "finetune": finetune,
                               "model": {"name": str(tmp_path / "no-such-model"), "device": "cpu"}})
    with pytest.raises(ValueError, match="no symbols to backtest") as err:
        run_backtest(settings, {}, "", "1h", None, progress=False)
    assert "\n" not in str(err.value)
