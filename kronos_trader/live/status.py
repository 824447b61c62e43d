"""What `kronos-trader status` shows: per pair position, equity, last forecast and error."""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from kronos_trader.store import Candle, EquitySnapshot, Forecast, Run, Signal, Store

from .broker import is_dust, load_state


@dataclass
class PairStatus:
    symbol: str
    timeframe: str
    size: float
    entry_price: float | None
    last_price: float | None
    value: float | None
    target: float | None
    signal_time: object
    forecast_time: object
    p_up: float | None
    expected_return: float | None
    last_error: str | None
    error_time: object
    dust: bool = False  # a position below the market's minimum order: flat for decisions


@dataclass
class RunStatus:
    run: Run
    equity: float | None
    equity_time: object
    balances: dict[str, float]
    pairs: list[PairStatus]
    open_orders: int
    last_error: str | None


def find_run(store: Store, run_id: str | None = None) -> Run | None:
    """The given run, else the most recent paper or live run."""
    if run_id:
        return store.get_run(run_id)
    runs = [r for r in store.list_runs() if r.kind in ("paper", "live")]
    return runs[0] if runs else None


def run_status(store: Store, run: Run) -> RunStatus:
    config = run.config or {}
    paper = config.get("paper") or {}
    pairs = [(p["symbol"], p.get("timeframe", "1h")) for p in paper.get("pairs") or []]
    source = paper.get("exchange", "binance")
    quote = pairs[0][0].split("/")[1].split(":")[0] if pairs and "/" in pairs[0][0] else "USDT"
    account, pending = load_state(store, run.id, quote, pairs)
    errors = store.last_errors(run.id)
    out = []
    with store.session(readonly=True) as s:
        snapshot = s.scalars(select(EquitySnapshot).where(EquitySnapshot.run_id == run.id)
                             .order_by(EquitySnapshot.ts.desc()).limit(1)).one_or_none()
        for symbol, timeframe in pairs:
            pos = account.positions.get((symbol, timeframe))
            candle = s.scalars(select(Candle).where(Candle.source == source, Candle.symbol == symbol,
                                                    Candle.timeframe == timeframe)
                               .order_by(Candle.ts.desc()).limit(1)).one_or_none()
            signal = s.scalars(select(Signal).where(Signal.run_id == run.id, Signal.symbol == symbol,
                                                    Signal.timeframe == timeframe)
                               .order_by(Signal.bar_time.desc()).limit(1)).one_or_none()
            forecast = s.get(Forecast, signal.forecast_id) if signal is not None and signal.forecast_id else None
            if forecast is None:
                forecast = s.scalars(select(Forecast).where(Forecast.symbol == symbol, Forecast.timeframe == timeframe)
                                     .order_by(Forecast.window_end.desc()).limit(1)).one_or_none()
            size = pos.size if pos else 0.0
            price = candle.close if candle is not None else None
            p_up = exp_ret = None
            if forecast is not None:
                payload = forecast.payload
                p_up = float(payload["p_up"][-1])
                exp_ret = float(payload["mean"][-1][3]) / float(payload["last_close"]) - 1.0
            error = errors.get(symbol)
            min_amount, min_notional = ((signal.details or {}).get("market_min") if signal is not None else None) \
                or (None, None)
            out.append(PairStatus(symbol, timeframe, size, (pos.price or None) if pos else None, price,
                                  size * price if price is not None else None,
                                  signal.target_position if signal is not None else None,
                                  signal.bar_time if signal is not None else None,
                                  forecast.window_end if forecast is not None else None, p_up, exp_ret,
                                  error.message if error is not None else None,
                                  error.ts if error is not None else None,
                                  is_dust(min_amount, min_notional, size, price)))
    general = errors.get(None)
    return RunStatus(run, snapshot.equity if snapshot else None, snapshot.ts if snapshot else None,
                     dict(account.balances), out, len(pending),
                     general.message if general is not None else None)
