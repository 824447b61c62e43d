"""Portfolio backtests: one Cerebro with a feed per symbol and shared cash. This is the one
backtest path: a single-symbol backtest is a one-symbol portfolio (`runner.run_backtest`).

Per-symbol policies (e.g. Directional) decide each feed on its own, as in a single-symbol
run; a cross-sectional policy (e.g. strategies.cross_sectional:TopK) sees every symbol's
forecast made at the same bar close and allocates across them. Sells are sent before buys,
so the cash they free pays for the buys at the next bar's open.
"""
from __future__ import annotations

import pandas as pd

from kronos_trader.config import Settings
from kronos_trader.data import infer_bar_interval
from kronos_trader.data.calendar import bars_per_year
from kronos_trader.data.naming import interval_label
from kronos_trader.decision import Policy, PositionState, decide_all, load_policy, rebalance
from kronos_trader.evaluation.cross_section import MIN_SYMBOLS, cross_sectional_ic
from kronos_trader.evaluation.skill import score_run
from kronos_trader.forecasting.service import ForecastService
from kronos_trader.store import Store

from .compat import bt
from .engine import BacktestResult, configure_broker, run_cerebro
from .metrics import summarize
from .strategy import Journal, PolicyStrategy, frame_feed


class PortfolioStrategy(PolicyStrategy):
    """PolicyStrategy for a cross-sectional policy: one `decide_all` per bar over the
    symbols whose forecast is new at that bar (in `prenext` as in `next`, both of which
    call `_decide_all`)."""

    def _decide_all(self) -> None:
        fresh = {}
        for data, indicator in self.kronos.items():
            forecast = indicator.current()
            if forecast is not None and self._decided.get(data) != forecast.window_end:
                fresh[data] = forecast
        if not fresh:
            return
        equity = self.broker.getvalue()
        by_symbol = {self._symbol(d): d for d in fresh}
        forecasts = {self._symbol(d): f for d, f in fresh.items()}
        states = {}
        for data, forecast in fresh.items():
            self._decided[data] = forecast.window_end
            position = self.getposition(data)
            states[self._symbol(data)] = PositionState(size=position.size, entry_price=position.price or None,
                                                       equity=equity, price=forecast.last_close)
        held = {self._symbol(d): self._target.get(d, 0.0) for d in fresh}
        decisions = decide_all(self.p.policy, forecasts, states, held, self.risk)
        orders = []
        for symbol, decision in decisions.items():
            data = by_symbol[symbol]
            units = rebalance(decision, self._target.get(data, 0.0), states[symbol], self.p.min_change)
            if units:
                self._target[data] = decision.target
                orders.append((units, data, decision.reason))
            self._record_signal(data, forecasts[symbol], decision, states[symbol])
        for units, data, reason in sorted(orders, key=lambda o: o[0]):  # sells first
            (self.buy if units > 0 else self.sell)(data=data, size=abs(units), info=reason)


def check_one_timeframe(panel: dict[str, pd.DataFrame]) -> None:
    """One-line error when the symbols' bars are of different sizes."""
    intervals = {symbol: infer_bar_interval(frame.index) for symbol, frame in panel.items() if len(frame) > 1}
    if len(set(intervals.values())) > 1:
        (first, step), *rest = intervals.items()
        other, size = next((s, i) for s, i in rest if i != step)
        raise ValueError(f"symbols: {other} has {interval_label(size)} bars, {first} {interval_label(step)}: "
                         f"give every symbol the same timeframe (resample the finer ones, e.g. with "
                         f"kronos_trader.data.bars.resample_candles)")


def equal_weight_closes(panel: dict[str, pd.DataFrame]) -> pd.Series:
    """Buy-and-hold of every symbol in equal parts, as a price series (one symbol: its closes)."""
    if len(panel) == 1:
        return next(iter(panel.values()))["close"].copy()
    closes = pd.DataFrame({s: f["close"] for s, f in panel.items()}).ffill()  # a missing bar holds its price
    return (closes / closes.bfill().iloc[0]).mean(axis=1)


def check_bars(panel: dict[str, pd.DataFrame], lookback: int) -> None:
    """One-line error when there is no symbol, or a symbol has no bar after its first full window."""
    if not panel:
        raise ValueError("no symbols to backtest: the panel of candles by symbol is empty")
    for symbol, candles in panel.items():
        if len(candles) <= lookback:
            raise ValueError(f"{symbol}: {len(candles)} bars is not more than the lookback of {lookback} bars")


def run_portfolio_backtest(settings: Settings, panel: dict[str, pd.DataFrame], timeframe: str,
                           store: Store | None, progress: bool = True,
                           service: ForecastService | None = None) -> BacktestResult:
    """Backtest `panel` (candles by symbol; one symbol for a single-symbol run): forecasts in
    one batched pass, handed to the strategy's indicators, then one Cerebro run. `store`
    keeps the forecasts; the run's records are written by `runner.run_backtest`."""
    check_bars(panel, settings.forecast.lookback)
    check_one_timeframe(panel)
    policy = load_policy(settings.strategy.name, settings.strategy.params, settings.strategy.gate)
    if service is None:
        service = ForecastService.from_settings(settings, store, progress)
    before = service.computed, service.reused
    forecasts = {symbol: service.forecast_series(candles, symbol, timeframe) for symbol, candles in panel.items()}
    computed, reused = service.computed - before[0], service.reused - before[1]
    first_symbol, first = next(iter(panel.items()))
    interval = infer_bar_interval(first.index)

    cerebro = bt.Cerebro(stdstats=False)
    for symbol, candles in panel.items():
        cerebro.adddata(frame_feed(candles, symbol))
    configure_broker(cerebro, settings)
    journal = Journal()
    kind = PolicyStrategy if isinstance(policy, Policy) else PortfolioStrategy
    cerebro.addstrategy(kind, policy=policy, service=service, journal=journal,
                        stop_loss=settings.risk.stop_loss, take_profit=settings.risk.take_profit,
                        indicator={"timeframe": timeframe}, forecasts=forecasts, forecast_candles=panel)
    equity, trades, fees = run_cerebro(cerebro, journal, interval)
    hold = equal_weight_closes(panel)
    hold.index = hold.index + interval
    start = equity.index[0] if len(equity) else hold.index[0]
    metrics = summarize(equity, trades, hold.loc[start:], fees, interval,
                        bars_per_year(first.index, settings.data.calendar))
    # the report's chart shows the first symbol: its candles and forecasts. The skill is the
    # first symbol's too: score_run scores one series, and pooling CRPS and MAE across symbols
    # would weigh them by their price levels
    result = BacktestResult(None, ",".join(panel), timeframe, first, equity, trades, journal, forecasts[first_symbol],
                            metrics, computed, reused, skill=score_run(forecasts[first_symbol].values(), first),
                            panel=panel, settings=settings, model_id=service.model.model_id,
                            symbol_forecasts=forecasts)
    if len(panel) >= MIN_SYMBOLS:  # cross-sectional skill: does the model order the symbols right?
        result.cross_section = cross_sectional_ic(forecasts, panel)
    return result
