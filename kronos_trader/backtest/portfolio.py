"""Portfolio backtests: one Cerebro with a feed per symbol and shared cash.

Per-symbol policies (e.g. Directional) decide each feed on its own, as in a single-symbol
run; a cross-sectional policy (e.g. strategies.cross_sectional:TopK) sees every symbol's
forecast made at the same bar close and allocates across them. Sells are sent before buys,
so the cash they free pays for the buys at the next bar's open.
"""
from __future__ import annotations

import pandas as pd

from kronos_trader.config import Settings, SymbolSource
from kronos_trader.data import infer_bar_interval
from kronos_trader.data.calendar import bars_per_year
from kronos_trader.data.naming import interval_label
from kronos_trader.decision import Policy, PositionState, decide_all, load_policy, rebalance
from kronos_trader.evaluation.cross_section import MIN_SYMBOLS, cross_sectional_ic
from kronos_trader.evaluation.finetune_report import compare_finetune
from kronos_trader.evaluation.skill import score_run
from kronos_trader.forecasting.finetune import FinetunedForecasts, build_finetuned
from kronos_trader.forecasting.service import ForecastService
from kronos_trader.store import Store

from .compat import bt
from .metrics import summarize
from .runner import BacktestResult, _persist, configure_broker, load_backtest_candles, run_cerebro
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


def symbol_sources(settings: Settings, symbols: list[str] | None = None) -> list[SymbolSource]:
    """The symbols of a portfolio run: the --symbols list, else data.symbols from config."""
    if symbols:
        return [SymbolSource(symbol=s.split("=")[0].strip(), path=s.partition("=")[2].strip() or None)
                for s in symbols]
    return list(settings.data.symbols)


def load_portfolio_candles(settings: Settings, sources: list[SymbolSource],
                           store: Store | None) -> dict[str, pd.DataFrame]:
    """Each symbol's candles (its file, else stored ones, as for one symbol), each kept
    whole: a bar one symbol lacks is not cut from the others (Backtrader replays feeds of
    different lengths; a symbol without a bar at a decision bar is simply not decided
    there). Symbols of different bar sizes are refused: resample them to one timeframe
    first, so no feed's bar stands for a longer one."""
    if len({s.symbol for s in sources}) != len(sources):
        raise ValueError("data.symbols: a symbol is listed twice")
    panel = {}
    for source in sources:
        data = settings.data.model_copy(update={"symbol": source.symbol, "path": source.path})
        panel[source.symbol], _ = load_backtest_candles(settings.model_copy(update={"data": data}), store)
    check_one_timeframe(panel)
    return panel


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
    """Buy-and-hold of every symbol in equal parts, as a price series."""
    closes = pd.DataFrame({s: f["close"] for s, f in panel.items()}).ffill()  # a missing bar holds its price
    return (closes / closes.bfill().iloc[0]).mean(axis=1)


def run_portfolio_backtest(settings: Settings, panel: dict[str, pd.DataFrame], timeframe: str,
                           store: Store | None, progress: bool = True, name: str = "backtest",
                           service: ForecastService | None = None) -> BacktestResult:
    lookback = settings.forecast.lookback
    for symbol, candles in panel.items():
        if len(candles) <= lookback:
            raise ValueError(f"{symbol}: {len(candles)} bars is not more than the lookback of {lookback} bars")
    check_one_timeframe(panel)
    policy = load_policy(settings.strategy.name, settings.strategy.params, settings.strategy.gate)
    if service is None:
        service = ForecastService.from_settings(settings, store, progress)
    zero_shot = None
    if settings.finetune.refit_every is not None and not isinstance(service, FinetunedForecasts):
        # one fold model per refit point, trained on every symbol's bars before it, forecasts
        # every symbol of its fold; the zero-shot service stays for the comparison
        zero_shot, service = service, build_finetuned(service, panel, settings.finetune, None, progress)
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
                        indicator={"timeframe": timeframe})
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
    if zero_shot is not None:  # scored on the first symbol, as the skill is
        result.finetune = compare_finetune(zero_shot.forecast_series(first, first_symbol, timeframe),
                                           forecasts[first_symbol], first, service.fold_of, service.summary())
    if store is not None:
        result.run_id = _persist(store, settings, result, name)
    return result
