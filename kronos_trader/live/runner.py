"""The paper/live trading runner: one cycle per candle close, resumable from the database.

A cycle for a timeframe works out the candle boundary from ``now`` alone (the open time of
the last closed candle), so a late or repeated run does the right thing:

1. candles: the newest closed candles of every pair are fetched through ccxt (the forming
   one dropped, gaps since the last stored candle filled by a paginated fetch) and stored;
2. forecasts: the window ending at each decision bar of every pair, all in one batch
   (stored; seeds derive from the window end, so they equal the backtest's forecasts);
3. for each decision bar in time order: pending orders fill at their fill candle's open,
   then the SAME ``decide`` + ``rebalance`` as the backtest give the order, which is
   stored as 'new' (with its signal and the equity, one transaction) BEFORE it is sent.

After any stop (kill -9 included) ``start`` resumes the run from the database: unsent
'new' orders are sent (paper) or reconciled with the exchange by client order id (live),
decisions already stored are not made again, and missed candles are caught up or skipped
per ``paper.missed_candles``. Exchange faults are retried with backoff; what still fails
skips the pair (or the cycle) with an event, never the runner.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pandas as pd
from sqlalchemy import func, select

from kronos_trader.config import Settings
from kronos_trader.decision import PositionState, RiskLimits, decide, load_policy, rebalance, series_policy
from kronos_trader.exchange import (
    ExchangeAdapterError,
    ExchangeConfigError,
    call_with_retry,
    exchange_now,
    fetch_closed_candles,
    fill_candle_gaps,
    last_closed_candle_open,
    make_client,
    market_rules,
    shift_open,
    timeframe_to_timedelta,
)
from kronos_trader.exchange.errors import one_line
from kronos_trader.forecasting.service import ForecastService, WindowForecast, WindowRequest
from kronos_trader.store import EquitySnapshot, Order, Run, Signal, Store, open_store
from kronos_trader.store.models import new_run_id, utcnow

from .accounting import Book
from .gate_state import attach_gate
from .ids import client_order_id
from .paper_broker import FillResult, PaperBroker, PendingOrder, order_problem

log = logging.getLogger(__name__)

CANDLE_CACHE_BARS = 2000
HOOK_POINTS = ("cycle_start", "orders_new", "orders_sent", "fill_tx", "cycle_end")


@dataclass
class PairBook:
    symbol: str              # unified symbol
    timeframe: str
    rules: Any               # MarketRules
    interval: pd.Timedelta
    last_bar: pd.Timestamp | None = None   # open time of the last bar decided (or passed)
    anchor: pd.Timestamp | None = None     # open time of the first decision (phase of forecast.every)
    held_target: float = 0.0               # rebalance's held target (PolicyStrategy._target)
    candles: pd.DataFrame | None = None    # recent closed candles (cache of the store)
    holes: set = field(default_factory=set)  # open times the exchange has no candle for

    @property
    def key(self) -> Book:
        return (self.symbol, self.timeframe)


@dataclass
class CycleReport:
    """What one cycle did and how long each part took (seconds)."""

    timeframe: str
    now: pd.Timestamp
    boundary: pd.Timestamp                 # open time of the last closed candle
    decisions: int = 0
    orders: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    fills: int = 0
    skipped: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    started: float = 0.0                   # time.time() at the start
    last_order_persisted: float | None = None  # time.time() when the last decision/order was stored


def _utc_now() -> pd.Timestamp:
    return pd.Timestamp.now(tz="UTC").tz_localize(None)


class LiveRunner:
    """Paper (default) or live trading of ``settings.paper.pairs`` (see the module docstring).

    ``clock`` is "exchange" (the exchange's server time, one request per cycle; also what
    makes replaying servers work) or "local". ``fill`` is the paper broker's fill rule.
    ``hooks`` maps hook point names (``HOOK_POINTS``) to callables, for tests and tooling.
    """

    def __init__(self, settings: Settings, *, store: Store | None = None, client: Any = None,
                 service: ForecastService | None = None, run_id: str | None = None, new_run: bool = False,
                 live: bool = False, fill: str = "next_open", clock: str | Callable[[], pd.Timestamp] = "exchange",
                 retries: int = 4, backoff: float = 0.5, min_change: float = 0.02,
                 hooks: dict[str, Callable[..., None]] | None = None, progress: bool = False):
        if live and not settings.paper.live:
            raise ExchangeConfigError("live trading needs paper.live: true in the config as well as --live")
        self.settings, self.live, self.fill = settings, live, fill
        self.kind = "live" if live else "paper"
        self.store = store
        self.client = client
        self.service = service
        self.requested_run_id, self.new_run = run_id, new_run
        self.run_id: str | None = None
        self.clock = clock
        self.retry = {"retries": retries, "backoff": backoff}
        self.min_change = min_change
        self.hooks = dict(hooks or {})
        self.progress = progress
        self.policy = load_policy(settings.strategy.name, settings.strategy.params, settings.strategy.gate)
        self.risk = RiskLimits(settings.backtest.stop_loss, settings.backtest.take_profit)
        self.source = settings.paper.exchange
        self.books: dict[Book, PairBook] = {}
        self.broker: Any = None
        self._lock = threading.RLock()
        self._prices: dict[Book, float] = {}
        self.started = False

    # ------------------------------------------------------------------ setup
    def hook(self, name: str, **kwargs: Any) -> None:
        fn = self.hooks.get(name)
        if fn is not None:
            fn(name, **kwargs)

    @property
    def timeframes(self) -> list[str]:
        return list(dict.fromkeys(p.timeframe for p in self.settings.paper.pairs))

    def start(self) -> "LiveRunner":
        """Connect, load markets and the model, create or resume the run, recover orders."""
        s = self.settings
        if self.store is None:
            self.store = open_store(s.database.url)
        if self.client is None:
            keys = (s.paper.api_key_env, s.paper.api_secret_env) if self.live else (None, None)
            self.client = make_client(s.paper.exchange, api_url=s.paper.api_url, api_key_env=keys[0],
                                      secret_env=keys[1])
        if self.service is None:
            from kronos_trader.forecasting.models import load_model

            model = load_model(s.model.name, s.model.device, s.model.max_context)
            self.service = ForecastService(model, s.forecast, self.store, self.progress)
        if self.service.store is None:
            self.service.store = self.store
        for pair in s.paper.pairs:
            if pair.timeframe.strip().endswith("M"):
                raise ExchangeConfigError(f"paper.pairs: monthly timeframes are not supported ({pair.symbol} "
                                          f"{pair.timeframe})")
            rules = market_rules(self.client, pair.symbol, **self.retry)
            book = PairBook(rules.symbol, pair.timeframe, rules, timeframe_to_timedelta(pair.timeframe))
            if book.key in self.books:
                raise ExchangeConfigError(f"paper.pairs lists {rules.symbol} {pair.timeframe} twice")
            self.books[book.key] = book
        quotes = sorted({b.rules.quote for b in self.books.values()})
        if len(quotes) != 1:
            raise ExchangeConfigError(f"paper.pairs must share one quote currency (got {', '.join(quotes)})")
        self.run_id = self._resolve_run()
        rules = {b.symbol: b.rules for b in self.books.values()}
        if self.live:
            from .exchange_broker import ExchangeBroker

            self.broker = ExchangeBroker(self.store, self.run_id, quotes[0], rules, self.client,
                                         retry=self.retry, hook=self.hook, event=self.event)
            self.broker.load()
            self.broker.sync_balances()
        else:
            self.broker = PaperBroker(self.store, self.run_id, quotes[0], rules,
                                      commission=s.backtest.commission, slippage=s.backtest.slippage,
                                      fill=self.fill, hook=self.hook)
            self.broker.initialize(s.paper.quote_balance, sorted({b.rules.base for b in self.books.values()}))
            self.broker.load()
        self._load_books()
        attach_gate(self)
        self._recover()
        self.started = True
        return self

    def _resolve_run(self) -> str:
        from kronos_trader.backtest.runner import code_version

        name = f"{self.kind}:{self.source}"
        config = self.settings.model_dump(mode="json")
        runs = self.store.list_runs()
        if self.requested_run_id:
            rid = self.requested_run_id
            run = next((r for r in runs if r.id == rid), None)
            if run is not None and run.kind != self.kind:
                raise ExchangeConfigError(f"run {run.id} is a {run.kind} run, not {self.kind}")
            if run is None:
                clash = [r.id for r in runs if r.id[:8] == rid[:8]]
                if clash or len(rid) < 8:
                    raise ExchangeConfigError(f"run id {rid!r}: client order ids use its first 8 characters, "
                                              f"which must be unique ({', '.join(clash) or 'too short'})")
                self.store.create_run(self.kind, name, config, code_version(), run_id=rid)
                self.event("info", f"created {self.kind} run {rid}", run_id=rid)
                return rid
            self._resumed(run, config)
            return rid
        if not self.new_run:
            for run in runs:
                if run.kind == self.kind and run.name == name and run.status == "running":
                    self._resumed(run, config)
                    return run.id
        prefixes = {r.id[:8] for r in runs}
        rid = new_run_id()
        while rid[:8] in prefixes:  # client order ids carry 8 characters of the run id
            rid = new_run_id()
        self.store.create_run(self.kind, name, config, code_version(), run_id=rid)
        self.event("info", f"created {self.kind} run", run_id=rid)
        return rid

    def _resumed(self, run: Run, config: dict) -> None:
        old = run.config or {}
        changed = [k for k in ("model", "forecast", "strategy", "backtest", "paper") if old.get(k) != config.get(k)]
        self.event("info", "resumed run", run_id=run.id)
        if changed:
            self.event("warning", f"resumed with changed settings ({', '.join(changed)}); decisions from now on use "
                                  f"the new ones", run_id=run.id)

    def _load_books(self) -> None:
        """Per pair: last decided bar, first decision (anchor) and the held target."""
        with self.store.session(readonly=True) as s:
            rows = s.execute(select(Signal.symbol, Signal.timeframe, func.min(Signal.bar_time),
                                    func.max(Signal.bar_time))
                             .where(Signal.run_id == self.run_id).group_by(Signal.symbol, Signal.timeframe)).all()
            for symbol, timeframe, first, last in rows:
                book = self.books.get((symbol, timeframe))
                if book is None:
                    continue
                book.anchor = pd.Timestamp(first) - book.interval
                book.last_bar = pd.Timestamp(last) - book.interval
                latest = s.scalars(select(Signal).where(Signal.run_id == self.run_id, Signal.symbol == symbol,
                                                        Signal.timeframe == timeframe, Signal.bar_time == last)).one()
                book.held_target = float((latest.details or {}).get("held_target", 0.0))

    def _recover(self) -> None:
        """Orders stored as 'new' but never sent (a stop between storing and sending)."""
        new = [o for o in self.broker.pending.values() if o.status == "new"]
        if self.live:
            self.broker.reconcile()
        elif new:
            self.broker.send(new)
            self.event("warning", f"recovered {len(new)} order(s) stored but not sent before the last stop: "
                                  f"{', '.join(o.client_order_id for o in new)}")

    # ------------------------------------------------------------------ events
    def event(self, level: str, message: str, symbol: str | None = None, run_id: str | None = None) -> None:
        getattr(log, {"info": "info", "warning": "warning", "error": "error"}[level])(
            "%s%s", f"{symbol}: " if symbol else "", message)
        try:
            self.store.record_event(run_id or self.run_id, level, one_line(message, 1000), symbol=symbol)
        except Exception as exc:  # the log must never stop trading
            log.error("could not record event: %s", exc)

    def _on_retry(self, symbol: str | None, call: str) -> Callable[[int, BaseException, float], None]:
        def report(attempt: int, exc: BaseException, delay: float) -> None:
            self.event("warning", f"{call} attempt {attempt} failed ({type(exc).__name__}: {one_line(exc, 160)}); "
                                  f"retrying in {delay:.2f}s", symbol)
        return report

    # ------------------------------------------------------------------ clock
    def now(self) -> pd.Timestamp:
        if callable(self.clock):
            return pd.Timestamp(self.clock())
        if self.clock == "local":
            return _utc_now()
        return exchange_now(self.client, on_retry=self._on_retry(None, "fetch_time"), **self.retry)

    # ------------------------------------------------------------------ cycles
    def run_cycle(self, timeframe: str | None = None, now: pd.Timestamp | None = None) -> list[CycleReport]:
        """One cycle for ``timeframe`` (every configured timeframe when None). Never raises
        for exchange or database faults: they are recorded as events."""
        if not self.started:
            self.start()
        with self._lock:
            reports = []
            try:
                now = pd.Timestamp(now) if now is not None else self.now()
            except Exception as exc:
                self.event("error", f"cycle skipped: cannot read the clock: {one_line(exc)}")
                return []
            for tf in ([timeframe] if timeframe else self.timeframes):
                try:
                    reports.append(self._cycle(tf, now))
                except Exception as exc:
                    log.exception("cycle %s failed", tf)
                    self.event("error", f"{tf} cycle failed: {type(exc).__name__}: {one_line(exc)}")
                    self._reload()
            return reports

    def _reload(self) -> None:
        """After a failed cycle: the database is the truth, reload the in-memory state."""
        try:
            self.broker.load()
            for book in self.books.values():
                book.last_bar = book.anchor = None
                book.held_target = 0.0
            self._load_books()
        except Exception as exc:
            log.error("reload failed: %s", exc)

    def _cycle(self, timeframe: str, now: pd.Timestamp) -> CycleReport:
        t0 = time.time()
        boundary = last_closed_candle_open(now, timeframe)
        report = CycleReport(timeframe, now, boundary, started=t0)
        self.hook("cycle_start", report=report)
        books = [b for b in self.books.values() if b.timeframe == timeframe]
        plans: dict[Book, list[pd.Timestamp]] = {}
        for book in books:
            plans[book.key] = self._plan(book, boundary, report)

        # 1. candles
        t = time.time()
        frames: dict[Book, pd.DataFrame] = {}
        for book in books:
            try:
                frames[book.key] = self._candles(book, plans[book.key], boundary, now)
            except (ExchangeAdapterError, ValueError) as exc:
                report.skipped.append(f"{book.symbol}: {one_line(exc)}")
                self.event("error", f"candles for {book.timeframe} skipped this cycle: {one_line(exc)}", book.symbol)
        report.timings["candles"] = time.time() - t

        # decision bars that have their candles (and enough history)
        lookback = self.settings.forecast.lookback
        requests: list[WindowRequest] = []
        for book in books:
            frame = frames.get(book.key)
            if frame is None:
                plans[book.key] = []
                continue
            bars = []
            for bar in plans[book.key]:
                if bar not in frame.index:
                    report.skipped.append(f"{book.symbol}: candle {bar} not available")
                    self.event("warning", f"candle {bar} ({book.timeframe}) not available from the exchange yet; "
                                          f"decision postponed", book.symbol)
                    break  # later bars wait too (decisions are made in order)
                position = int(frame.index.get_loc(bar))
                if position < lookback - 1:
                    report.skipped.append(f"{book.symbol}: {position + 1} bars < lookback {lookback}")
                    self.event("warning", f"only {position + 1} closed candles up to {bar}, the lookback is "
                                          f"{lookback}: no decision", book.symbol)
                    continue
                bars.append(bar)
                if self._due(book, bar):
                    requests.append(WindowRequest((book.key, bar), frame, position, book.symbol, book.timeframe,
                                                  book.interval))
            plans[book.key] = bars

        # 2. forecasts, all pairs and bars in one batch
        t = time.time()
        forecasts: dict = self.service.forecast_many(requests) if requests else {}
        report.timings["forecast"] = time.time() - t

        # 3. per decision bar, in time order: settle, decide, store, send
        t_decide = t_send = t_settle = 0.0
        steps = sorted({bar for bars in plans.values() for bar in bars})
        for step in steps:
            t = time.time()
            report.fills += self._settle(books, frames, step)
            t_settle += time.time() - t
            t = time.time()
            due = [(book, step) for book in books if step in plans[book.key]]
            orders = self._decide(due, books, frames, forecasts, report)
            t_decide += time.time() - t
            t = time.time()
            if orders:
                self.hook("orders_new", orders=orders, report=report)
                self._send(orders, report, step)
                self.hook("orders_sent", orders=orders, report=report)
            t_send += time.time() - t
        t = time.time()
        report.fills += self._settle(books, frames, boundary)
        t_settle += time.time() - t
        report.timings.update(settle=t_settle, decide=t_decide, send=t_send, total=time.time() - t0)
        self.hook("cycle_end", report=report)
        return report

    def _plan(self, book: PairBook, boundary: pd.Timestamp, report: CycleReport) -> list[pd.Timestamp]:
        """Decision bars (open times) of this cycle for one pair."""
        if book.last_bar is None:
            return [boundary]
        if book.last_bar >= boundary:
            return []
        missed = []
        bar = shift_open(book.last_bar, book.timeframe, 1)
        while bar <= boundary:
            missed.append(bar)
            bar = shift_open(bar, book.timeframe, 1)
        if len(missed) > 1:
            if self.settings.paper.missed_candles == "catch_up":
                self.event("warning", f"catching up {len(missed) - 1} missed {book.timeframe} candle(s) "
                                      f"({missed[0]} .. {missed[-2]})", book.symbol)
                return missed
            self.event("warning", f"skipped {len(missed) - 1} missed {book.timeframe} candle(s) "
                                  f"({missed[0]} .. {missed[-2]}); paper.missed_candles is skip", book.symbol)
            report.skipped.append(f"{book.symbol}: {len(missed) - 1} missed candle(s) skipped")
            return [boundary]
        return missed

    def _due(self, book: PairBook, bar: pd.Timestamp) -> bool:
        every = self.settings.forecast.every
        if every == 1 or book.anchor is None:
            return True
        return int(round((bar - book.anchor) / book.interval)) % every == 0

    # ------------------------------------------------------------------ candles
    def _candles(self, book: PairBook, bars: list[pd.Timestamp], boundary: pd.Timestamp,
                 now: pd.Timestamp) -> pd.DataFrame:
        """Closed candles from the window start of the first bar (or the oldest pending
        order's fill candle) to ``boundary``: store first, the exchange for the rest."""
        lookback = self.settings.forecast.lookback
        first = bars[0] if bars else boundary
        start = shift_open(first, book.timeframe, -(lookback - 1))
        pending = [o.bar_time for o in self.broker.pending.values() if o.book == book.key]
        if pending:
            start = min(start, min(pending))
        cache = book.candles
        if cache is None or cache.empty or cache.index[0] > start:
            cache = self.store.load_candles(self.source, book.symbol, book.timeframe, start, boundary)
            cache.index.name = "timestamp"
        have = cache.loc[start:boundary].index if len(cache) else pd.DatetimeIndex([])
        grid = pd.date_range(start, boundary, freq=book.interval)
        missing = grid.difference(have).difference(pd.DatetimeIndex(sorted(book.holes)))
        if len(missing):
            since = missing[0]
            fresh = fetch_closed_candles(self.client, book.symbol, book.timeframe, since, until=boundary, now=now,
                                         on_retry=self._on_retry(book.symbol, "fetch_ohlcv"), **self.retry)
            if len(fresh):
                self.store.upsert_candles(self.source, book.symbol, book.timeframe, fresh)
                cache = pd.concat([cache, fresh]) if len(cache) else fresh
                cache = cache[~cache.index.duplicated(keep="last")].sort_index()
                # bars the exchange skipped between candles it has: holes, filled flat below
                inside = missing[(missing >= since) & (missing < fresh.index[-1])]
                book.holes.update(inside.difference(cache.index))
        cache = cache.astype("float64")
        book.candles = cache.iloc[-max(CANDLE_CACHE_BARS, lookback + 8):]
        book.holes = {h for h in book.holes if h >= book.candles.index[0]} if len(book.candles) else set()
        frame = fill_candle_gaps(cache.loc[start:boundary], book.timeframe)
        if len(frame):
            self._prices[book.key] = float(frame["close"].iloc[-1])
        return frame

    # ------------------------------------------------------------------ settle / decide / send
    def _settle(self, books: list[PairBook], frames: dict[Book, pd.DataFrame], upto: pd.Timestamp) -> int:
        """Live: refresh open exchange orders. Paper: fill due orders at their fill candle's
        open (in ticker mode only orders left pending, e.g. for want of a ticker)."""
        if self.live:
            return self.broker.poll()
        fills = 0
        for book in books:
            frame = frames.get(book.key)
            if frame is None or not self.broker.due(book.key, upto):
                continue
            results = self.broker.settle(book.key, frame.loc[:upto], upto)
            fills += sum(1 for r in results if r.amount)
            for r in results:
                if r.status != "filled":
                    self.event("warning", f"order {r.client_order_id} {r.status}: {r.reason}", book.symbol)
        return fills

    def _decide(self, due: list[tuple[PairBook, pd.Timestamp]], books: list[PairBook],
                frames: dict[Book, pd.DataFrame], forecasts: dict, report: CycleReport) -> list[PendingOrder]:
        """Decisions of every pair at one bar, stored in one transaction with their orders
        ('new' or 'rejected') and the equity at the bar's close."""
        if not due:
            return []
        step = due[0][1]
        close_time = step + due[0][0].interval
        prices = dict(self._prices)  # other timeframes: their latest close
        for book in books:  # this timeframe: the close of this bar (or the latest before it)
            frame = frames.get(book.key)
            if frame is not None and len(frame) and frame.index[0] <= step:
                prices[book.key] = float(frame["close"].iloc[frame.index.searchsorted(step, side="right") - 1])
        with self.store.session(readonly=True) as s:  # decisions already stored (before a restart)
            done = set(s.execute(select(Signal.symbol, Signal.timeframe).where(
                Signal.run_id == self.run_id, Signal.bar_time == close_time.to_pydatetime())).all())
        if done:
            for book, bar in due:
                if book.key in done:
                    book.last_bar = bar
            due = [(book, bar) for book, bar in due if book.key not in done]
            if not due:
                return []
        account = self.broker.account
        equity = account.equity(prices)
        cash = account.cash
        signals, orders, new = [], [], []
        updates: list[tuple[PairBook, pd.Timestamp, float | None]] = []
        for book, bar in due:
            forecast: WindowForecast | None = forecasts.get((book.key, bar))
            if forecast is None:  # not a forecast bar (forecast.every)
                updates.append((book, bar, None))
                continue
            position = self.broker.position(book.key)
            state = PositionState(size=position.size, entry_price=position.price or None, equity=equity,
                                  price=forecast.last_close)
            decision = decide(series_policy(self.policy, book.key), forecast, state, self.risk)
            units = rebalance(decision, book.held_target, state, self.min_change)
            held = decision.target if units else book.held_target
            bar_time = forecast.window_end
            signals.append({"run_id": self.run_id, "symbol": book.symbol, "timeframe": book.timeframe,
                            "bar_time": bar_time.to_pydatetime(), "forecast_id": forecast.forecast_id,
                            "target_position": float(decision.target),
                            "details": {"reason": decision.reason, "p_up": forecast.prob_up(),
                                        "expected_return": forecast.expected_return(), "held_target": held,
                                        "equity": equity, "price": forecast.last_close}})
            updates.append((book, bar, held))
            if not units:
                continue
            side = "buy" if units > 0 else "sell"
            amount = book.rules.round_amount(abs(units))
            cid = client_order_id(self.run_id, book.symbol, bar_time, side)
            reason = order_problem(book.rules, amount, forecast.last_close)
            if reason is None and not self.live:
                after = account.cash_after(book.key, amount if side == "buy" else -amount, forecast.last_close,
                                           self.settings.backtest.commission, cash)
                if after < 0:
                    reason = f"insufficient {account.quote} at submission ({cash:.8g})"
                else:
                    cash = after
            status = "rejected" if reason else "new"
            orders.append({"run_id": self.run_id, "client_order_id": cid, "symbol": book.symbol,
                           "timeframe": book.timeframe, "bar_time": bar_time.to_pydatetime(), "side": side,
                           "type": "market", "amount": amount, "status": status,
                           "reason": f"{decision.reason}; rejected: {reason}" if reason else decision.reason})
            if reason:
                report.rejected.append(cid)
                self.event("warning", f"order {cid} rejected: {reason}", book.symbol)
            else:
                new.append(PendingOrder(cid, book.symbol, book.timeframe, bar_time, side, amount,
                                        created=pd.Timestamp(utcnow())))
        with self.store.session() as s:
            now = utcnow()
            existing = set(s.scalars(select(Order.client_order_id).where(
                Order.client_order_id.in_([o["client_order_id"] for o in orders]))))
            for row in signals:
                s.add(Signal(**row, created_at=now))
            for row in orders:
                if row["client_order_id"] not in existing:
                    s.add(Order(**row, created_at=now, updated_at=now))
            snapshot = s.scalars(select(EquitySnapshot).where(EquitySnapshot.run_id == self.run_id,
                                                              EquitySnapshot.ts == close_time.to_pydatetime())).one_or_none()
            position_value = equity - account.cash
            details = {"prices": {f"{k[0]} {k[1]}": v for k, v in prices.items()}}
            if snapshot is None:
                s.add(EquitySnapshot(run_id=self.run_id, ts=close_time.to_pydatetime(), equity=equity,
                                     cash=account.cash, position_value=position_value, details=details))
            else:
                snapshot.equity, snapshot.cash, snapshot.position_value = equity, account.cash, position_value
                snapshot.details = details
        report.last_order_persisted = time.time()
        for book, bar, held in updates:
            book.last_bar = bar
            if held is not None:
                book.anchor = book.anchor if book.anchor is not None else bar
                book.held_target = held
                report.decisions += 1
        new = [o for o in new if o.client_order_id not in existing]
        self.broker.track(new)
        report.orders.extend(o.client_order_id for o in new)
        return new

    def _send(self, orders: list[PendingOrder], report: CycleReport, step: pd.Timestamp) -> None:
        self.broker.send(orders)
        if not self.live and self.fill == "ticker":
            for order in orders:
                try:
                    ticker = call_with_retry(self.client.fetch_ticker, order.symbol,
                                             on_retry=self._on_retry(order.symbol, "fetch_ticker"), **self.retry)
                    last = ticker.get("last") or ticker.get("close")
                    if not last:
                        raise ValueError("ticker without a last price")
                except (ExchangeAdapterError, ValueError) as exc:
                    self.event("error", f"order {order.client_order_id} stays pending: no ticker ({one_line(exc)})",
                               order.symbol)
                    continue
                result: FillResult = self.broker.fill_at(order, _utc_now(), float(last))
                report.fills += 1 if result.amount else 0

    # ------------------------------------------------------------------ scheduling
    def run_forever(self, scheduler: Any = None) -> None:  # pragma: no cover - blocking
        from .scheduler import build_scheduler

        sched = scheduler or build_scheduler(self, blocking=True)
        sched.start()
