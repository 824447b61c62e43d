"""Paper (and live) runs as the monitor shows them: balances, positions, equity, the latest
forecast and signal per pair, recent orders and fills, and the last errors."""
from __future__ import annotations

import pandas as pd

from kronos_trader.live.gate_state import gate_status

from ..errors import WebError
from .backtests import forecast_payload
from .serialize import clean, floats, records, stamp, stamps
from .store_queries import forecasts_by_id, recent_events

KINDS = ("paper", "live")
RECENT = 50


def list_runs(store) -> list[dict]:
    runs = [r for k in KINDS for r in store.list_runs(k)]
    runs.sort(key=lambda r: r.started_at, reverse=True)
    return [clean({"id": r.id, "name": r.name, "kind": r.kind, "status": r.status, "started_at": stamp(r.started_at),
                   "finished_at": r.finished_at, "pairs": _pairs(r)}) for r in runs]


def _pairs(run) -> list[dict]:
    cfg = run.config if isinstance(run.config, dict) else {}
    pairs = (cfg.get("paper") or {}).get("pairs") or []
    return [{"symbol": p.get("symbol"), "timeframe": p.get("timeframe", "1h")} for p in pairs if isinstance(p, dict)]


def _split(symbol: str) -> tuple[str, str]:
    base, _, quote = symbol.partition("/")
    return base, quote.split(":")[0]


def _broker_positions(store, run) -> dict:
    """Per-pair size and entry price as the paper trader's own status report computes them
    (replaying its orders and fills); empty when that is unavailable, and the balances of
    each pair's base currency are shown instead."""
    try:
        from kronos_trader.live.status import run_status

        return {(p.symbol, p.timeframe): p for p in run_status(store, run).pairs}
    except Exception:  # an older or partial run must still render
        return {}


def paper_detail(store, run_id: str) -> dict:
    run = store.get_run(run_id)
    if run is None or run.kind not in KINDS:
        raise WebError(404, f"no paper-trading run '{run_id}'")
    cfg = run.config if isinstance(run.config, dict) else {}
    exchange = (cfg.get("paper") or {}).get("exchange")
    balances = store.load_balances(run_id)
    equity = store.load_equity(run_id)
    signals = store.load_signals(run_id)
    orders = store.load_orders(run_id)
    fills = store.load_fills(run_id)

    pairs = _pairs(run)
    if len(signals):
        for sym, tf in signals[["symbol", "timeframe"]].drop_duplicates().itertuples(index=False):
            if not any(p["symbol"] == sym and p["timeframe"] == tf for p in pairs):
                pairs.append({"symbol": sym, "timeframe": tf})
    latest = signals.groupby(["symbol", "timeframe"]).tail(1) if len(signals) else signals
    forecasts = forecasts_by_id(store, latest["forecast_id"].dropna().astype(int)) if len(latest) else {}
    held = {}
    if len(balances):
        held = {c: float(f) + float(u) for c, f, u in zip(balances["currency"], balances["free"], balances["used"])}
    books = _broker_positions(store, run)
    pair_rows = []
    for p in pairs:
        sym, tf = p["symbol"], p["timeframe"]
        row = {"symbol": sym, "timeframe": tf, "signal": None, "forecast": None, "candles": None}
        sig = latest[(latest["symbol"] == sym) & (latest["timeframe"] == tf)] if len(latest) else latest
        if len(sig):
            s = sig.iloc[-1]
            row["signal"] = clean({"bar_time": s["bar_time"], "target_position": s["target_position"],
                                   "details": s["details"], "created_at": s["created_at"]})
            fid = s["forecast_id"]
            if pd.notna(fid) and int(fid) in forecasts:
                row["forecast"] = forecast_payload(forecasts[int(fid)])
        last_price = None
        if exchange:
            candles = store.load_candles(exchange, sym, tf)
            if len(candles):
                tail = candles.iloc[-96:]
                row["candles"] = {"timestamps": stamps(tail.index),
                                  **{c: floats(tail[c], 8) for c in ("open", "high", "low", "close")}}
                last_price = float(tail["close"].iloc[-1])
        if last_price is None and len(fills):
            ids = orders.loc[orders["symbol"] == sym, "id"] if len(orders) else []
            pair_fills = fills[fills["order_id"].isin(ids)]
            if len(pair_fills):
                last_price = float(pair_fills["price"].iloc[-1])
        if last_price is None and row["forecast"]:
            last_price = row["forecast"]["last_close"]
        base, quote = _split(sym)
        book = books.get((sym, tf))
        amount = book.size if book is not None else held.get(base)
        entry = (book.entry_price or None) if book is not None else None
        row["position"] = clean({
            "base": base, "quote": quote, "amount": amount, "price": last_price, "entry_price": entry,
            "value": amount * last_price if amount is not None and last_price else None,
            "unrealized_pnl": (last_price - entry) * amount if entry and last_price and amount else None})
        pair_rows.append(row)

    errors = sorted(store.last_errors(run_id).values(), key=lambda e: e.ts, reverse=True)
    events = recent_events(store, run_id, 30)
    recent_orders = orders.sort_values(["created_at", "id"]).tail(RECENT).iloc[::-1] if len(orders) else orders
    recent_fills = fills.sort_values(["ts", "id"]).tail(RECENT).iloc[::-1] if len(fills) else fills
    if len(recent_fills) and len(orders):
        meta = orders.set_index("id")[["symbol", "side", "client_order_id"]]
        recent_fills = recent_fills.join(meta, on="order_id")
    eq_last = equity.iloc[-1] if len(equity) else None
    return {
        "run": clean({"id": run.id, "name": run.name, "kind": run.kind, "status": run.status,
                      "started_at": stamp(run.started_at), "finished_at": stamp(run.finished_at), "exchange": exchange,
                      "live": bool((cfg.get("paper") or {}).get("live"))}),
        "now": stamp(pd.Timestamp.now(tz="UTC").tz_localize(None)),
        "balances": records(balances, ["currency", "free", "used", "updated_at"]) if len(balances) else [],
        "equity": {"timestamps": stamps(equity.index), "equity": floats(equity["equity"], 6) if len(equity) else [],
                   "cash": floats(equity["cash"], 6) if len(equity) else []},
        "summary": clean({"equity": eq_last["equity"] if eq_last is not None else None,
                          "cash": eq_last["cash"] if eq_last is not None else None,
                          "position_value": eq_last["position_value"] if eq_last is not None else None,
                          "as_of": equity.index[-1] if len(equity) else None,
                          "start_equity": equity["equity"].iloc[0] if len(equity) else None}),
        "pairs": pair_rows,
        "orders": records(recent_orders, [c for c in ("created_at", "symbol", "side", "type", "amount", "price",
                                                      "status", "reason", "client_order_id", "bar_time")
                                          if c in recent_orders.columns]) if len(recent_orders) else [],
        "fills": records(recent_fills, [c for c in ("ts", "symbol", "side", "price", "amount", "fee", "fee_currency",
                                                    "client_order_id") if c in recent_fills.columns])
        if len(recent_fills) else [],
        "errors": [clean({"ts": e.ts, "symbol": e.symbol, "message": e.message}) for e in errors],
        "gate": [clean({"ts": e.ts, "symbol": sym, "state": e.message.split(":")[0].split()[-1], "message": e.message})
                 for sym, e in gate_status(store, run_id).items()],
        "events": [clean({"ts": e.ts, "level": e.level, "symbol": e.symbol, "message": e.message}) for e in events],
    }
