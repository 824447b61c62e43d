"""`kronos-trader replay RUN_ID`: a paper or live run's stored candles through the backtest
engine with the run's own settings, and every bar where the two part, with the reason.

Live and backtest share the decision function, the forecasts (the same windows give the
same stored forecasts) and the fill rule of paper runs, so a paper run replays with no
difference; where a live run parts from its backtest (fees in the base asset, real fills,
dust, candles it missed, orders it could not confirm) the list says where and why.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from kronos_trader.config import parse_settings
from kronos_trader.exchange import fill_candle_gaps, timeframe_to_timedelta
from kronos_trader.forecasting.service import ForecastService
from kronos_trader.store import Store

from .runner import run_backtest

#: order amounts within this relative difference are the same order (live amounts are
#: truncated to the market's step)
AMOUNT_TOLERANCE = 1e-3


@dataclass(frozen=True)
class Difference:
    symbol: str
    bar_time: pd.Timestamp  # the decision candle's close
    what: str               # decision / target / order
    run: str                # what the run did
    backtest: str           # what the backtest did
    reason: str


def replay_run(store: Store, run_id: str, *, service: ForecastService | None = None,
               progress: bool = False) -> list[Difference]:
    """Differences between a paper/live run and the backtest of its stored candles (one
    backtest per pair; a multi-pair run's shared cash is not replayed)."""
    run = store.get_run(run_id)
    if run is None:
        raise ValueError(f"no run {run_id} in {store.url}")
    if run.kind not in ("paper", "live"):
        raise ValueError(f"run {run_id} is a {run.kind} run: replay compares paper or live runs with a backtest")
    settings = parse_settings(run.config or {}, f"run {run_id}'s settings")
    equity = store.load_equity(run_id)
    if not equity.empty:  # the backtest starts with what the run started with (not backtest.cash)
        start = float(equity.sort_index()["equity"].iloc[0])
        settings = settings.model_copy(update={"backtest": settings.backtest.model_copy(update={"cash": start})})
    service = service or ForecastService.from_settings(settings, store, progress)
    signals = store.load_signals(run_id)
    orders = store.load_orders(run_id)
    out: list[Difference] = []
    for pair in settings.paper.pairs:
        mine = signals[(signals["symbol"] == pair.symbol) & (signals["timeframe"] == pair.timeframe)]
        if mine.empty:
            continue
        out += _replay_pair(store, settings, service, pair.symbol, pair.timeframe, mine,
                            orders[(orders["symbol"] == pair.symbol) & (orders["timeframe"] == pair.timeframe)])
    return out


def _replay_pair(store: Store, settings, service: ForecastService, symbol: str, timeframe: str,
                 signals: pd.DataFrame, orders: pd.DataFrame) -> list[Difference]:
    interval = timeframe_to_timedelta(timeframe)
    closes = pd.DatetimeIndex(pd.to_datetime(signals["bar_time"]))
    first, last = closes.min() - interval, closes.max() - interval  # open times of the decision candles
    start = first - (settings.forecast.lookback - 1) * interval
    candles = store.load_candles(settings.paper.exchange, symbol, timeframe, start, last + interval)
    candles = fill_candle_gaps(candles.astype("float64"), timeframe)  # as the live feed fills holes
    result = run_backtest(settings, candles, symbol, timeframe, None, progress=False, service=service)
    bt_signals = {pd.Timestamp(s.bar_time): s for s in result.journal.signals if pd.Timestamp(s.bar_time) <= closes.max()}
    bt_orders = {pd.Timestamp(o.bar_time): o.row() for o in result.journal.orders}
    run_signals = {pd.Timestamp(t): (float(x), d or {}) for t, x, d in
                   zip(signals["bar_time"], signals["target_position"], signals["details"])}
    run_orders = {pd.Timestamp(o["bar_time"]): o for o in orders.to_dict("records")}
    out: list[Difference] = []
    parted = False  # an earlier difference moved the position: later ones follow from it
    for bar in sorted(set(bt_signals) | set(run_signals)):
        bt, mine = bt_signals.get(bar), run_signals.get(bar)
        if bt is None or mine is None:
            out.append(Difference(symbol, bar, "decision", "decided" if mine else "none",
                                  "decided" if bt else "none",
                                  "missed candle: the run made no decision here" if bt else
                                  "the backtest has no decision here (candle not stored?)"))
            parted = True
            continue
        target, details = mine
        if not math.isclose(target, bt.target_position, abs_tol=1e-9):
            out.append(Difference(symbol, bar, "target", f"{target:+.4f} ({details.get('reason')})",
                                  f"{bt.target_position:+.4f} ({bt.reason})",
                                  _why(details, parted)))
            parted = True
        order, bt_order = run_orders.get(bar), bt_orders.get(bar)
        problem = _order_difference(order, bt_order)
        if problem is not None:
            out.append(Difference(symbol, bar, "order", _describe(order), _describe(bt_order),
                                  _why(details, parted, problem)))
            parted = True
    return out


def _order_difference(order: dict | None, bt_order: dict | None) -> str | None:
    if order is None and bt_order is None:
        return None
    if order is None or bt_order is None:
        return "an order on one side only"
    if order["side"] != bt_order["side"]:
        return "opposite sides"
    if order["status"] in ("unknown", "expired") and bt_order["status"] != order["status"]:
        return f"the run's order was {order['status']} (never confirmed by the exchange)"
    if order["status"] not in ("sent", "new") and order["status"] != bt_order["status"]:
        return f"status {order['status']} vs {bt_order['status']}"
    if not math.isclose(float(order["amount"]), float(bt_order["amount"]), rel_tol=AMOUNT_TOLERANCE):
        return "amounts differ"
    return None


def _why(details: dict, parted: bool, problem: str | None = None) -> str:
    if details.get("dust") is not None:
        return f"dust: the run held {details['dust']:g}, below the market minimum"
    if problem is not None and not parted:
        return f"fills: {problem}"
    if parted:
        return "follows an earlier difference (position, cash or fees)"
    return "fees or fills: the run's position or equity differed at this bar"


def _describe(order: dict | None) -> str:
    if order is None:
        return "no order"
    return f"{order['side']} {float(order['amount']):g} ({order['status']})"
