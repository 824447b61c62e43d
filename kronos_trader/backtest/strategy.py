"""PolicyStrategy: runs any decision policy on Kronos forecasts inside Backtrader.

For each data feed it attaches a KronosIndicator, and at each new forecast asks the
shared `decide` function (the same one the live runner calls) for a target exposure, then
orders the difference. Orders fill at the next bar's open (Backtrader's market orders),
so a decision at the close of bar t trades at t+1: no look-ahead.

Each feed trades as soon as its own forecasts exist (`prenext` too), so a daily feed does
not wait for the lookback of a weekly one. Without a Backtrader sizer the policy's target
exposure sets the order size; with a sizer added to Cerebro the policy chooses the side
(long, short, flat) and the sizer sizes every entry, while exits close the whole position.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace
from typing import Any

import pandas as pd

from kronos_trader.decision import Decision, PositionState, RiskLimits, decide, rebalance, series_policy
from kronos_trader.forecasting.probability import PUpResolutionWarning, threshold_warnings
from kronos_trader.forecasting.values import WindowForecast
from kronos_trader.records import OrderRecord, SignalRecord

from .compat import bt, num2timestamps
from .history import check_overlap
from .indicator import FORECAST_PARAMS, KronosIndicator, _label

# the indicator's forecast settings, settable on the strategy (and swept by optstrategy)
_SHARED = ("model", "device", "precision", "calendar", *FORECAST_PARAMS, "db")


@dataclass
class Journal:
    """What a run decided and did, for reports and the database: the decisions and their
    orders as the live loop records them (`records`), fills and round trips as dicts (fills
    name their order by Backtrader's `ref`)."""

    signals: list[SignalRecord] = field(default_factory=list)
    orders: list[OrderRecord] = field(default_factory=list)
    fills: list[dict] = field(default_factory=list)
    trades: list[dict] = field(default_factory=list)

    def stored(self, run_id: str) -> tuple[list[OrderRecord], list[dict[str, Any]]]:
        """The orders named by their client ids in run `run_id`, and the fills naming them
        (what `Store.record_decisions` writes with the signals)."""
        orders, ids = [], {}
        for o in self.orders:
            if o.bar_time is None:
                continue
            ids[o.ref] = client_order_id(run_id, o.symbol, o.bar_time, o.side, o.ref)
            orders.append(replace(o, client_order_id=ids[o.ref]))
        fills = [{**f, "client_order_id": ids[f["ref"]], "seq": 0} for f in self.fills if f["ref"] in ids]
        return orders, fills


def client_order_id(run_id: str, symbol: str, bar_time: pd.Timestamp, side: str, ref: int) -> str:
    """Deterministic id of a backtest order: run, pair, candle, side (and Backtrader's order ref)."""
    pair = symbol.replace("/", "").replace(":", "")
    return f"bt-{run_id[:12]}-{pair}-{pd.Timestamp(bar_time):%Y%m%dT%H%M}-{side}-{ref}"


class PolicyStrategy(bt.Strategy):
    params = (
        ("policy", None),        # an object with decide(forecast, position) -> Decision
        ("service", None),       # ForecastService shared by the indicators (optional)
        ("indicator", {}),       # extra KronosIndicator params (symbol, timeframe, step, ...)
        ("stop_loss", None),
        ("take_profit", None),
        ("min_change", 0.02),    # ignore target changes smaller than this fraction of equity
        ("journal", None),       # a Journal to fill (one is created when None)
        ("forecasts", None),     # forecasts computed before the run, by symbol: {symbol: {position: forecast}}
        ("forecast_candles", None),  # the candles they were made from, by symbol (checked against the feeds)
    ) + tuple((name, default) for name, default in KronosIndicator.params._gettuple() if name in _SHARED)

    def __init__(self):
        if self.p.policy is None:
            raise ValueError("PolicyStrategy needs a policy (e.g. strategies.directional.Directional())")
        if not isinstance(self.p.indicator, dict):
            raise ValueError(f"PolicyStrategy: indicator={self.p.indicator!r} is not a dict (optstrategy "
                             f"sweeps over the keys of a dict): pass forecast settings as PolicyStrategy "
                             f"parameters (lookback=..., model=...) or wrap the dict in a list")
        self.journal: Journal = self.p.journal if self.p.journal is not None else Journal()
        settings = {name: getattr(self.p, name) for name in _SHARED}
        self.kronos = {d: KronosIndicator(d, service=self.p.service, **{**settings, **self.p.indicator})
                       for d in self.datas}
        for indicator in self.kronos.values():  # handed to the indicators, not requested again
            given = (self.p.forecasts or {}).get(indicator.symbol)
            if given:
                candles = (self.p.forecast_candles or {}).get(indicator.symbol)
                if candles is None:
                    raise ValueError(f"PolicyStrategy: forecasts for {indicator.symbol!r} need the candles they "
                                     f"were made from (forecast_candles={{symbol: candles}})")
                indicator.use_forecasts(given.values(), candles)
        self.risk = RiskLimits(self.p.stop_loss, self.p.take_profit)
        self._decided: dict = {}
        self._timeframes: dict = {}  # each feed's timeframe label (as the records name it)
        self._target: dict = {}
        self._trade_size: dict = {}  # largest size of each open trade, for its round-trip record
        self._open_trades: dict = {}  # Backtrader's open Trade objects by ref, marked at the end
        self._sized_by_sizer = False

    def _symbol(self, data) -> str:
        return self.kronos[data].symbol

    def start(self) -> None:
        check_overlap(self.datas)  # before any forecast
        self._sized_by_sizer = self._sizer_added()
        first = next(iter(self.kronos.values()))
        thresholds = getattr(self.p.policy, "p_up_thresholds", dict)()
        for line in threshold_warnings(thresholds, first.settings.sample_count, first.settings.p_up):
            warnings.warn(f"{type(self.p.policy).__name__}: {line}", PUpResolutionWarning, stacklevel=1)

    def _sizer_added(self) -> bool:
        """Whether the user gave this strategy a sizer (cerebro.addsizer / addsizer_byidx)."""
        sizers = getattr(self.env, "sizers", {})
        running = getattr(self.env, "runningstrats", [])
        index = next((i for i, s in enumerate(running) if s is self), None)
        return index in sizers or None in sizers

    def prenext(self) -> None:
        self._decide_all()  # feeds whose forecasts exist trade while others are still warming up

    def next(self) -> None:
        self._decide_all()

    def _decide_all(self) -> None:
        for data, indicator in self.kronos.items():
            forecast = indicator.current()
            if forecast is None or self._decided.get(data) == forecast.window_end:
                continue
            self._decided[data] = forecast.window_end
            position = self.getposition(data)
            state = PositionState(size=position.size, entry_price=position.price or None,
                                  equity=self.broker.getvalue(), price=forecast.last_close)
            decision = decide(series_policy(self.p.policy, self._symbol(data)), forecast, state, self.risk)
            if self._sized_by_sizer:
                self._record_signal(data, forecast, decision, state)
                self._order_side(data, decision, position.size)
                continue
            units = rebalance(decision, self._target.get(data, 0.0), state, self.p.min_change)
            if units:
                self._target[data] = decision.target
            self._record_signal(data, forecast, decision, state)
            if units:
                order = self.buy if units > 0 else self.sell
                order(data=data, size=abs(units), info=decision.reason)

    def _order_side(self, data, decision: Decision, held: float) -> None:
        """With a Backtrader sizer: follow the policy's side, let the sizer size entries."""
        side = (decision.target > 0) - (decision.target < 0)
        if side == (held > 0) - (held < 0):
            return
        if held:
            self.close(data=data, info=decision.reason)
        if side:
            (self.buy if side > 0 else self.sell)(data=data, info=decision.reason)

    def _timeframe(self, data, forecast: WindowForecast) -> str:
        if data not in self._timeframes:
            self._timeframes[data] = self.kronos[data].p.timeframe or _label(forecast.window_end - forecast.bar_open)
        return self._timeframes[data]

    def _record_signal(self, data, forecast: WindowForecast, decision: Decision, state: PositionState) -> None:
        """The decision as the live loop records it (after the held target is updated)."""
        self.journal.signals.append(SignalRecord(
            self._symbol(data), self._timeframe(data, forecast), forecast.window_end, float(decision.target),
            decision.reason, forecast.forecast_id, forecast.prob_up(), forecast.expected_return(),
            float(self._target.get(data, 0.0)), state.equity, state.price))

    def notify_order(self, order) -> None:
        if order.status in (order.Submitted, order.Accepted):
            return
        data = order.data
        when = num2timestamps([data.datetime[0]])[0]
        status = {order.Completed: "filled", order.Partial: "partially_filled", order.Canceled: "canceled",
                  order.Margin: "rejected", order.Rejected: "rejected", order.Expired: "canceled"}[order.status]
        decided = self._decided.get(data)
        self.journal.orders.append(OrderRecord(
            "", self._symbol(data), self._timeframes.get(data, ""), decided, "buy" if order.isbuy() else "sell",
            abs(order.created.size), status, order.info.get("info") if hasattr(order.info, "get") else None,
            ref=order.ref))
        if order.status in (order.Completed, order.Partial):
            self.journal.fills.append({
                "ref": order.ref, "ts": when, "price": order.executed.price, "amount": abs(order.executed.size),
                "fee": order.executed.comm})

    def notify_trade(self, trade) -> None:
        if not trade.isclosed:
            self._trade_size[trade.ref] = max(self._trade_size.get(trade.ref, 0.0), abs(trade.size))
            self._open_trades[trade.ref] = trade
            return
        self._open_trades.pop(trade.ref, None)
        data = trade.data
        entry_time = num2timestamps([trade.dtopen])[0]
        exit_time = num2timestamps([trade.dtclose])[0]
        size = self._trade_size.pop(trade.ref, 0.0)
        entry_price = trade.price
        gross = trade.pnl
        exit_price = entry_price + gross / size * (1 if trade.long else -1) if size else entry_price
        self.journal.trades.append({
            "symbol": self._symbol(data), "entry_time": entry_time, "exit_time": exit_time,
            "side": "long" if trade.long else "short", "size": size, "entry_price": entry_price,
            "exit_price": exit_price, "pnl": trade.pnlcomm,
            "pnl_pct": trade.pnlcomm / (entry_price * size) if size else 0.0, "fees": trade.commission,
            "status": "closed"})

    def stop(self) -> None:
        """Trades still open at the end are listed as open, marked to the last close: their
        realised part, the unrealised rest and every fee paid so far (so the trades' PnL adds
        up to the account's result)."""
        for ref, trade in self._open_trades.items():
            data = trade.data
            mark = float(data.close[0])
            pnl = trade.pnl + (mark - trade.price) * trade.size - trade.commission
            size = self._trade_size.get(ref, abs(trade.size))
            self.journal.trades.append({
                "symbol": self._symbol(data), "entry_time": num2timestamps([trade.dtopen])[0],
                "exit_time": num2timestamps([data.datetime[0]])[0], "side": "long" if trade.long else "short",
                "size": size, "entry_price": trade.price, "exit_price": mark, "pnl": pnl,
                "pnl_pct": pnl / (trade.price * size) if size else 0.0, "fees": trade.commission, "status": "open"})


class ForecastSizer(bt.Sizer):
    """A Backtrader sizer for your own strategies: sizes each order from the latest Kronos
    forecast of its data feed using a forecast sizer from `strategies.sizing`."""

    params = (("forecast_sizer", None), ("indicators", None))

    def _getsizing(self, comminfo, cash, data, isbuy):
        indicators = self.p.indicators or getattr(self.strategy, "kronos", {})
        indicator = indicators.get(data)
        forecast = indicator.current() if indicator is not None else None
        if forecast is None or self.p.forecast_sizer is None:
            return 0
        price = data.close[0]
        return self.p.forecast_sizer.size(forecast) * self.broker.getvalue() / price if price > 0 else 0


def frame_feed(candles: pd.DataFrame, name: str):
    """A PandasData feed for a canonical candle frame (the indicator reads `amount` from it)."""
    return bt.feeds.PandasData(dataname=candles, name=name, openinterest=None)
