"""The paper/live trading loop: one cycle per candle close, resumable from the database.

The loop is thin; its parts each have one job:

* ``feed.CandleFeed``: closed candles per pair (store first, the exchange for the rest;
  "closed" = close time passed on the exchange's clock AND confirmed by a later candle;
  history fetched by count);
* ``ForecastService``: the windows ending at each decision bar, in one batch (seeds derive
  from the window end, so they equal the backtest's forecasts);
* ``step.decide_bar``: forecasts and positions in, orders out (the backtest's ``decide`` +
  ``rebalance``; ``self.policy`` is the seam for policy wrappers);
* ``persister.Persister``: the bar's signals, orders ('new', BEFORE they are sent) and
  equity in one transaction, through the store's repository;
* the brokers (``PaperBroker`` simulated fills, ``ExchangeBroker`` real orders), both on the
  store's order state machine.

A cycle that could not decide (candle not confirmed yet, exchange clock behind, fetch
failed, too little history) warns with the reason and is retried within the candle while
time allows; ``CycleReport.undecided`` says what is left (``paper --once`` exits 1).

After any stop (kill -9 included) ``start`` resumes the run from the database: decisions
already stored are not made again, paper orders stored but not sent are sent (they fill at
their fill candle's open, the backtest's rule), live orders are reconciled with the
exchange by client order id (one never sent whose candle has passed expires and is decided
again on the current candle). Missed candles are caught up or skipped per
``paper.missed_candles``.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import ccxt
import pandas as pd

from kronos_trader.config import Settings
from kronos_trader.decision import Policy, RiskLimits, load_policy
from kronos_trader.exchange import (
    ExchangeAdapterError,
    ExchangeConfigError,
    MarketRules,
    last_closed_candle_open,
    make_client,
    market_rules,
    shift_open,
    timeframe_to_timedelta,
)
from kronos_trader.exchange.errors import one_line
from kronos_trader.forecasting.service import ForecastService
from kronos_trader.forecasting.values import WindowRequest
from kronos_trader.store import Store, open_store
from kronos_trader.store.models import utcnow

from .accounting import Book
from .clock import Clock, utc_now
from .feed import CandleFeed, PairFeed
from .gate_state import attach_gate
from .broker import Broker, PendingOrder
from .exchange_broker import ExchangeBroker
from .lease import RunLease
from .paper_broker import PaperBroker, ticker_source
from .persister import Persister
from .runs import resolve_run
from .step import BookInput, Costs, decide_bar

log = logging.getLogger(__name__)

HOOK_POINTS = ("cycle_start", "orders_new", "orders_sent", "order_in_flight", "order_answered", "fill_tx",
               "cycle_end")


@dataclass
class PairBook:
    symbol: str              # unified symbol
    timeframe: str
    rules: MarketRules
    interval: pd.Timedelta
    feed: PairFeed
    last_bar: pd.Timestamp | None = None   # open time of the last bar decided (or passed)
    anchor: pd.Timestamp | None = None     # open time of the first decision (phase of forecast.every)
    held_target: float = 0.0               # rebalance's held target (NaN: an order was lost, decide again)

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
    undecided: list[str] = field(default_factory=list)  # decisions due but not made, with the reason
    retried: list[str] = field(default_factory=list)    # orders stored before the last stop, sent now
    final: int = 0                         # of those, how many a retry cannot help (the history is short)
    attempts: int = 1
    timings: dict[str, float] = field(default_factory=dict)
    started: float = 0.0                   # time.time() at the start
    last_order_persisted: float | None = None  # time.time() when the last decision/order was stored


class LiveRunner:
    """Paper (default) or live trading of ``settings.paper.pairs`` (see the module docstring).

    ``clock`` is "exchange" (the exchange's server time, one request per cycle; also what
    makes replaying servers work), "local" or a callable. ``local_clock`` is what the
    exchange's clock is checked against (skew in either direction is logged and resynced).
    ``fill`` is the paper broker's fill rule. ``decision_retries`` / ``retry_delay``: a cycle
    that could not decide runs again that often, that many seconds apart, while its candle
    lasts. ``hooks`` maps hook point names (``HOOK_POINTS``) to callables, for tests and tooling.
    """

    def __init__(self, settings: Settings, *, store: Store | None = None, client: ccxt.Exchange | None = None,
                 service: ForecastService | None = None, run_id: str | None = None, new_run: bool = False,
                 live: bool = False, fill: str = "next_open", clock: str | Callable[[], pd.Timestamp] = "exchange",
                 local_clock: Callable[[], pd.Timestamp] = utc_now, retries: int = 4, backoff: float = 0.5,
                 min_change: float = 0.02, decision_retries: int = 3, retry_delay: float = 5.0,
                 sleep: Callable[[float], None] = time.sleep, not_found_grace: pd.Timedelta | None = None,
                 hooks: dict[str, Callable[..., None]] | None = None, progress: bool = False, adopt: bool = False):
        if live and not settings.paper.live:
            raise ExchangeConfigError("live trading needs paper.live: true in the config as well as --live")
        self.settings, self.live, self.fill = settings, live, fill
        self.kind = "live" if live else "paper"
        self.store = store
        self.client = client
        self.service = service
        self.requested_run_id, self.new_run = run_id, new_run
        self.run_id: str | None = None
        self.clock, self.local_clock = clock, local_clock
        self.retry = {"retries": retries, "backoff": backoff}
        self.min_change = min_change
        self.decision_retries, self.retry_delay, self.sleep = decision_retries, retry_delay, sleep
        self.not_found_grace = not_found_grace
        self.hooks = dict(hooks or {})
        self.progress = progress
        self.adopt = adopt
        self.policy = load_policy(settings.strategy.name, settings.strategy.params, settings.strategy.gate)
        if not isinstance(self.policy, Policy):
            raise ExchangeConfigError(f"strategy.name '{settings.strategy.name}' is a cross-sectional policy: live "
                                      f"trading runs per-pair policies (decide(forecast, position)) only")
        self.risk = RiskLimits(settings.risk.stop_loss, settings.risk.take_profit)
        self.costs = Costs(settings.costs.commission, settings.costs.slippage)
        self.source = settings.paper.exchange
        self.books: dict[Book, PairBook] = {}
        self.broker: Broker | None = None
        self.lease: RunLease | None = None
        self._retried: list[str] = []  # sent by the recovery at start (reported by the first cycle)
        self.feed: CandleFeed | None = None
        self.persister: Persister | None = None
        self._lock = threading.RLock()
        self._prices: dict[Book, float] = {}
        self.clock_: Clock | None = None
        self.started = False
        self.started_at = pd.Timestamp(utcnow())

    # ------------------------------------------------------------------ setup
    def hook(self, name: str, **kwargs: Any) -> None:
        fn = self.hooks.get(name)
        if fn is not None:
            fn(name, **kwargs)

    @property
    def timeframes(self) -> list[str]:
        return list(dict.fromkeys(p.timeframe for p in self.settings.paper.pairs))

    def start(self) -> "LiveRunner":
        """Connect, check the pairs, load the model, create or resume the run, recover orders."""
        s = self.settings
        if self.store is None:
            self.store = open_store(s.database.url)
        self.persister = Persister(self.store)
        if self.client is None:
            keys = (s.paper.api_key_env, s.paper.api_secret_env) if self.live else (None, None)
            self.client = make_client(s.paper.exchange, api_url=s.paper.api_url, api_key_env=keys[0],
                                      secret_env=keys[1])
        self.feed = CandleFeed(self.store, self.client, self.source, s.forecast.lookback, self.retry,
                               on_retry=self._on_retry)
        for pair in s.paper.pairs:
            self._check_timeframe(pair.symbol, pair.timeframe)
            rules = market_rules(self.client, pair.symbol, **self.retry)
            interval = timeframe_to_timedelta(pair.timeframe)
            book = PairBook(rules.symbol, pair.timeframe, rules, interval,
                            self.feed.pair(rules.symbol, pair.timeframe, interval))
            if book.key in self.books:
                raise ExchangeConfigError(f"paper.pairs lists {rules.symbol} {pair.timeframe} twice")
            self.books[book.key] = book
        quotes = sorted({b.rules.quote for b in self.books.values()})
        if len(quotes) != 1:
            raise ExchangeConfigError(f"paper.pairs must share one quote currency (got {', '.join(quotes)})")
        if self.service is None:
            from kronos_trader.forecasting.models import load_model

            model = load_model(s.model.name, s.model.device, s.model.max_context, s.model.precision)
            self.service = ForecastService.from_settings(s, self.store, self.progress, model)
        if self.service.store is None:
            self.service.store = self.store
        # one run per (exchange, account, pair): taken before the run is created or resumed
        self.lease = RunLease(self.store, self.kind, s.paper, [b.symbol for b in self.books.values()])
        self.lease.acquire(None)
        try:
            self.run_id = self._resolve_run()
            self.lease.acquire(self.run_id)
            self.persister.run_id = self.run_id
            self.broker = self._open_broker(quotes[0])
            self._load_books()
            attach_gate(self)
            self._recover()
        except BaseException:
            self.lease.release()
            raise
        self.started = True
        return self

    def _open_broker(self, quote: str) -> Broker:
        rules = {b.symbol: b.rules for b in self.books.values()}
        if self.live:
            extra = {"not_found_grace": self.not_found_grace} if self.not_found_grace is not None else {}
            live = ExchangeBroker(self.store, self.run_id, quote, rules, self.client, books=list(self.books),
                                  retry=self.retry, hook=self.hook, event=self.event, **extra)
            live.open(self.adopt)
            return live
        paper = PaperBroker(self.store, self.run_id, quote, rules, commission=self.costs.commission,
                            slippage=self.costs.slippage, fill=self.fill, hook=self.hook, event=self.event,
                            ticker=ticker_source(self.client, self.retry, self.now, self._on_retry))
        paper.initialize(self.settings.paper.quote_balance, sorted({b.rules.base for b in self.books.values()}))
        paper.load()
        return paper

    def _check_timeframe(self, symbol: str, timeframe: str) -> None:
        """An unsupported timeframe fails at start, not in every cycle."""
        where = f"paper.pairs: {symbol} {timeframe}"
        if timeframe.strip().endswith("M"):
            raise ExchangeConfigError(f"{where}: monthly timeframes are not supported")
        supported = getattr(self.client, "timeframes", None) or {}
        if supported and timeframe not in supported:
            raise ExchangeConfigError(f"{where}: {self.client.id} has no {timeframe!r} candles "
                                      f"(supported: {', '.join(supported)})")
        try:
            timeframe_to_timedelta(timeframe)
        except ValueError as exc:
            raise ExchangeConfigError(f"{where}: {one_line(exc)}") from None

    def _resolve_run(self) -> str:
        return resolve_run(self.store, self.kind, f"{self.kind}:{self.source}", self.settings.model_dump(mode="json"),
                           self.requested_run_id, self.new_run, self.event)

    def _load_books(self) -> None:
        """Per pair: last decided bar, first decision (anchor) and the held target."""
        for key, (first, last, details) in self.store.decision_span(self.run_id).items():
            book = self.books.get(key)
            if book is None:
                continue
            book.anchor = pd.Timestamp(first) - book.interval
            book.last_bar = pd.Timestamp(last) - book.interval
            held = (details or {}).get("held_target", 0.0)
            book.held_target = float("nan") if held is None else float(held)

    def _recover(self) -> None:
        """Orders stored but not settled before the last stop (an unsent one of a candle that
        has passed is not sent late: ``current`` is the close of the last closed candle)."""
        current: dict[str, pd.Timestamp] = {}
        if any(o.status == "new" for o in self.broker.pending.values()):
            try:
                now = self.now()
                current = {tf: last_closed_candle_open(now, tf) + timeframe_to_timedelta(tf) for tf in self.timeframes}
            except Exception as exc:  # without a clock every unsent order counts as late
                self.event("warning", f"cannot read the clock at start ({one_line(exc)})")
        self._retried = self.broker.recover(current or None)
        self._decide_lost_again()

    def _decide_lost_again(self) -> None:
        """Orders that never reached the exchange: their books decide again (not sent late)."""
        for order in self.broker.take_lost():
            book = self.books.get(order.book)
            if book is not None:
                book.held_target = float("nan")

    def close(self) -> None:
        """The process is done with the run: its lease is released (the run stays resumable)."""
        if self.lease is not None:
            self.lease.release()
        self.started = False

    def __enter__(self) -> "LiveRunner":
        return self if self.started else self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------ events
    def event(self, level: str, message: str, symbol: str | None = None, run_id: str | None = None) -> None:
        (self.persister or Persister(self.store)).event(level, message, symbol, run_id or self.run_id)

    def _on_retry(self, symbol: str | None, call: str) -> Callable[[int, BaseException, float], None]:
        def report(attempt: int, exc: BaseException, delay: float) -> None:
            self.event("warning", f"{call} attempt {attempt} failed ({type(exc).__name__}: {one_line(exc, 160)}); "
                                  f"retrying in {delay:.2f}s", symbol)
        return report

    # ------------------------------------------------------------------ clock
    def now(self) -> pd.Timestamp:
        """The cycle's clock (``clock.Clock``: the exchange's, checked against the local one)."""
        if self.clock_ is None:
            self.clock_ = Clock(self.clock, self.client, local=self.local_clock, retry=self.retry, event=self.event,
                                on_retry=self._on_retry(None, "fetch_time"))
        return self.clock_.now()

    # ------------------------------------------------------------------ cycles
    def run_cycle(self, timeframe: str | None = None, now: pd.Timestamp | None = None) -> list[CycleReport]:
        """One cycle for ``timeframe`` (every configured timeframe when None). Never raises
        for exchange or database faults: they are recorded as events. A timeframe whose
        clock could not be read has no report."""
        if not self.started:
            self.start()
        with self._lock:
            self.lease.renew()
            reports = []
            for tf in ([timeframe] if timeframe else self.timeframes):
                report = self._cycle_until_decided(tf, pd.Timestamp(now) if now is not None else None)
                if report is not None:
                    report.retried, self._retried = self._retried, []
                    reports.append(report)
            return reports

    def _cycle_until_decided(self, tf: str, given: pd.Timestamp | None) -> CycleReport | None:
        """Run the cycle; while decisions are left undone and the candle lasts, again."""
        t0 = time.time()
        interval = timeframe_to_timedelta(tf)
        report = earlier = None
        for attempt in range(1, self.decision_retries + 2):
            try:
                now = given if given is not None else self.now()
            except Exception as exc:
                self.event("error", f"cycle skipped: cannot read the clock: {one_line(exc)}")
                if attempt > self.decision_retries:
                    return None
                self.sleep(self.retry_delay)
                continue
            try:
                report = self._cycle(tf, now)
            except Exception as exc:
                log.exception("cycle %s failed", tf)
                self.event("error", f"{tf} cycle failed: {type(exc).__name__}: {one_line(exc)}")
                self._reload()
                boundary = last_closed_candle_open(now, tf)
                report = CycleReport(tf, now, boundary, started=t0,
                                     undecided=[f"cycle failed: {type(exc).__name__}: {one_line(exc, 200)}"])
            report.attempts = attempt
            if earlier is not None:  # what the earlier attempts did counts too (the summary line)
                report.decisions += earlier.decisions
                report.orders[:0], report.rejected[:0] = earlier.orders, earlier.rejected
                report.fills += earlier.fills
            earlier = report
            if not report.undecided:
                return report
            clock = self.clock_
            delay = max(self.retry_delay, clock.wait_for_exchange() if clock else 0.0)  # a lagging exchange clock
            local_now = clock.local_now(now) if clock else now
            target = max(report.boundary, last_closed_candle_open(local_now, tf))  # the candle to decide
            left = (target + 2 * interval - local_now) - pd.Timedelta(seconds=time.time() - t0 + delay)
            if attempt > self.decision_retries or left <= pd.Timedelta(0) or len(report.undecided) == report.final:
                break
            self.event("warning", f"{tf} candle {report.boundary}: no decision yet ({'; '.join(report.undecided)}); "
                                  f"retrying in {delay:g}s (attempt {attempt + 1})")
            self.sleep(delay)
        if report is not None and report.undecided:
            self.event("warning", f"{tf} candle {report.boundary}: {len(report.undecided)} decision(s) could not be "
                                  f"made after {report.attempts} attempt(s): {'; '.join(report.undecided)}")
        return report

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
        report.fills += self._settle(books, {}, boundary)  # orders in flight settle first (lost ones decide again)
        behind = self.clock_.behind(timeframe, now, boundary) if self.clock_ is not None else None
        if behind is not None:
            # the newest closed candle is the local clock's, not closed on the exchange yet:
            # nothing is decided (an older candle now would trade late, then again)
            plans: dict[Book, list[pd.Timestamp]] = {b.key: [] for b in books}
            report.undecided.extend(f"{b.symbol}: {behind}" for b in books)
        else:
            plans = {b.key: self._plan(b, boundary) for b in books}

        # 1. candles
        t = time.time()
        frames: dict[Book, pd.DataFrame] = {}
        for book in books:
            try:
                frames[book.key] = self._candles(book, plans[book.key], boundary, now)
                plans[book.key] = self._missed(book, plans[book.key], report)
            except (ExchangeAdapterError, ValueError) as exc:
                report.skipped.append(f"{book.symbol}: {one_line(exc)}")
                if plans[book.key]:
                    report.undecided.append(f"{book.symbol}: candles not fetched ({one_line(exc, 200)})")
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
                    report.undecided.append(f"{book.symbol}: candle {bar} not closed on the exchange yet")
                    self.event("warning", f"candle {bar} ({book.timeframe}) not available from the exchange yet; "
                                          f"decision postponed", book.symbol)
                    break  # later bars wait too (decisions are made in order)
                position = int(frame.index.get_loc(bar))
                if position < lookback - 1:
                    report.skipped.append(f"{book.symbol}: {position + 1} bars < lookback {lookback}")
                    report.undecided.append(f"{book.symbol}: {position + 1} candles up to {bar} < lookback {lookback}")
                    report.final += 1
                    self.event("warning", f"only {position + 1} closed candles up to {bar} (the exchange has no "
                                          f"older ones), the lookback is {lookback}: no decision", book.symbol)
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
                self._send(orders, report)
                self.hook("orders_sent", orders=orders, report=report)
            t_send += time.time() - t
        t = time.time()
        report.fills += self._settle(books, frames, boundary)
        t_settle += time.time() - t
        report.timings.update(settle=t_settle, decide=t_decide, send=t_send, total=time.time() - t0)
        self.hook("cycle_end", report=report)
        return report

    def _plan(self, book: PairBook, boundary: pd.Timestamp) -> list[pd.Timestamp]:
        """Candidate decision bars (open times) of this cycle for one pair: every candle
        since the last decision (``_missed`` keeps those the exchange has)."""
        if book.last_bar is None:
            return [boundary]
        bars = []
        bar = shift_open(book.last_bar, book.timeframe, 1)
        while bar <= boundary:
            bars.append(bar)
            bar = shift_open(bar, book.timeframe, 1)
        return bars

    def _missed(self, book: PairBook, bars: list[pd.Timestamp], report: CycleReport) -> list[pd.Timestamp]:
        """The decision bars of the cycle: candles the exchange has none for (a weekend, a
        halt) were never missed; earlier real candles are caught up or skipped
        (``paper.missed_candles``)."""
        missed = [b for b in bars if b not in book.feed.holes] or bars[-1:]
        if len(missed) > 1:
            if self.settings.paper.missed_candles == "catch_up":
                self.event("warning", f"catching up {len(missed) - 1} missed {book.timeframe} candle(s) "
                                      f"({missed[0]} .. {missed[-2]})", book.symbol)
                return missed
            self.event("warning", f"skipped {len(missed) - 1} missed {book.timeframe} candle(s) "
                                  f"({missed[0]} .. {missed[-2]}); paper.missed_candles is skip", book.symbol)
            report.skipped.append(f"{book.symbol}: {len(missed) - 1} missed candle(s) skipped")
            return missed[-1:]
        return missed

    def _due(self, book: PairBook, bar: pd.Timestamp) -> bool:
        every = self.settings.forecast.every
        if every == 1 or book.anchor is None:
            return True
        return int(round((bar - book.anchor) / book.interval)) % every == 0

    def _candles(self, book: PairBook, bars: list[pd.Timestamp], boundary: pd.Timestamp,
                 now: pd.Timestamp) -> pd.DataFrame:
        pending = [o.bar_time for o in self.broker.pending.values() if o.book == book.key]
        frame = self.feed.frame(book.feed, bars[0] if bars else boundary, boundary, now,
                                keep_from=min(pending) if pending else None)
        if len(frame):
            self._prices[book.key] = float(frame["close"].iloc[-1])
        return frame

    # ------------------------------------------------------------------ settle / decide / send
    def _settle(self, books: list[PairBook], frames: dict[Book, pd.DataFrame], upto: pd.Timestamp) -> int:
        """The broker settles what is due per pair (the exchange: orders in flight or open;
        paper: fills at the fill candle's open); lost orders make their books decide again."""
        fills = self.broker.settle([book.key for book in books], frames, upto)
        self._decide_lost_again()
        return fills

    def _decide(self, due: list[tuple[PairBook, pd.Timestamp]], books: list[PairBook],
                frames: dict[Book, pd.DataFrame], forecasts: dict, report: CycleReport) -> list[PendingOrder]:
        """Decisions of every pair at one bar (``decide_bar``), stored in one transaction with
        their orders ('new' or 'rejected') and the equity at the bar's close."""
        if not due:
            return []
        step = due[0][1]
        close_time = step + due[0][0].interval
        prices = dict(self._prices)  # other timeframes: their latest close
        for book in books:  # this timeframe: the close of this bar (or the latest before it)
            frame = frames.get(book.key)
            if frame is not None and len(frame) and frame.index[0] <= step:
                prices[book.key] = float(frame["close"].iloc[frame.index.searchsorted(step, side="right") - 1])
        done = self.persister.decided(close_time)  # decisions already stored (before a restart)
        for book, bar in due:
            if book.key in done:
                book.last_bar = bar
        due = [(book, bar) for book, bar in due if book.key not in done]
        unconfirmed = {o.book: o.client_order_id for o in self.broker.pending.values()}
        for book, bar in due:  # a pair with an order not settled yet sends nothing new
            if book.key in unconfirmed:
                report.undecided.append(f"{book.symbol}: order {unconfirmed[book.key]} unconfirmed; no new order "
                                        f"until it settles")
        due = [(book, bar) for book, bar in due if book.key not in unconfirmed]
        if not due:
            return []
        self.lease.renew()  # a cycle may outlast the lease (retries, waits): still ours before deciding
        inputs = [BookInput(book.key, book.rules, book.held_target, forecasts.get((book.key, bar))) for book, bar in due]
        result = decide_bar(self.policy, self.risk, inputs, self.broker.account, prices, run_id=self.run_id,
                            costs=self.costs, min_change=self.min_change, free=self.broker.buying_power())
        added = self.persister.record(result, close_time, self.broker.account, prices)
        report.last_order_persisted = time.time()
        for book, bar in due:
            book.last_bar = bar
            held = result.held.get(book.key)
            if held is not None:
                book.anchor = book.anchor if book.anchor is not None else bar
                book.held_target = held
                report.decisions += 1
        new = []
        for o in result.orders:
            if o.client_order_id not in added:
                continue
            if o.status == "rejected":
                report.rejected.append(o.client_order_id)
                self.event("warning", f"order {o.client_order_id} rejected: {o.reason.rsplit('rejected: ', 1)[-1]}",
                           o.symbol)
                continue
            new.append(PendingOrder(o.client_order_id, o.symbol, o.timeframe, o.bar_time, o.side, o.amount,
                                    created=pd.Timestamp(utcnow())))
        self.broker.track(new)
        report.orders.extend(o.client_order_id for o in new)
        return new

    def _send(self, orders: list[PendingOrder], report: CycleReport) -> None:
        result = self.broker.send(orders)
        report.rejected.extend(result.refused)
        report.fills += result.fills
        self._decide_lost_again()

    def unsettled(self) -> list[str]:
        """Orders of this run that ended 'unknown' or 'expired' since it started (a
        `paper --once` exits non-zero for them)."""
        return self.store.troubled_orders(self.run_id, self.started_at)

    # ------------------------------------------------------------------ scheduling
    def run_forever(self, scheduler: Any = None) -> None:  # pragma: no cover - blocking
        from .scheduler import build_scheduler

        sched = scheduler or build_scheduler(self, blocking=True)
        sched.start()
