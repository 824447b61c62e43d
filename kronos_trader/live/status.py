"""What `kronos-trader status` shows: per pair position, equity, last forecast and error."""
from __future__ import annotations

from dataclasses import dataclass

from kronos_trader.store import Run, Store

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
    snapshot = store.latest_equity(run.id)
    for symbol, timeframe in pairs:
        pos = account.positions.get((symbol, timeframe))
        candle = store.latest_candle(source, symbol, timeframe)
        signal, forecast = store.latest_signal(run.id, symbol, timeframe)
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
