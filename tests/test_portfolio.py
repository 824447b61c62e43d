"""Portfolio backtests: a feed per symbol, shared cash, and the cross-sectional TopK policy."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from factories import make_candles

from kronos_trader.backtest.portfolio import load_portfolio_candles, symbol_sources
from kronos_trader.backtest.runner import run_backtest
from kronos_trader.decision import Decision, PositionState, RiskLimits, decide_all
from kronos_trader.evaluation.skill import score_run
from kronos_trader.forecasting.service import WindowForecast
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
    traded = {o["symbol"] for o in result.journal.orders}
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
