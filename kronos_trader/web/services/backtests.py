"""Backtest runs as the report pages show them: metrics, equity, drawdown, trades, and the
candles with the run's forecasts overlaid."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from kronos_trader.data import SAMPLE_DATA_PATH, CandleDataError, infer_bar_interval, load_candles
from kronos_trader.backtest.metrics import ANNUALISED
from kronos_trader.backtest.report import label_exits, short_span_note
from kronos_trader.backtest.run_catalog import display_name
from kronos_trader.evaluation.skill import FORECASTER_LABELS

from ..errors import WebError
from .serialize import clean, floats, format_interval, records, stamp, stamps
from .store_queries import forecasts_by_id

MAX_BARS = 5000
METRIC_KEYS = ("total_return", "annual_return", "sharpe", "period_sharpe", "sortino", "max_drawdown", "calmar", "trades", "win_rate",
               "profit_factor", "expectancy", "avg_win", "avg_loss", "avg_holding_hours", "longest_losing_streak",
               "fees", "exposure")
SKILL_FORECASTERS = tuple((k, FORECASTER_LABELS[k]) for k in ("model", "random_walk", "random_walk_vol"))


def _summary(run) -> dict:
    return run.summary if isinstance(run.summary, dict) else {}


def _config(run) -> dict:
    return run.config if isinstance(run.config, dict) else {}


def run_row(run) -> dict:
    s, cfg = _summary(run), _config(run)
    strat, hold = s.get("strategy") or {}, s.get("buy_and_hold") or {}
    return clean({
        "id": run.id, "name": display_name(run), "kind": run.kind, "status": run.status,
        "started_at": stamp(run.started_at), "finished_at": stamp(run.finished_at),
        "symbol": s.get("symbol") or (cfg.get("data") or {}).get("symbol"),
        "timeframe": s.get("timeframe") or (cfg.get("data") or {}).get("timeframe"),
        "bars": s.get("bars"), "model": (cfg.get("model") or {}).get("name"),
        "strategy_name": (cfg.get("strategy") or {}).get("name"),
        "total_return": strat.get("total_return"), "hold_return": hold.get("total_return"),
        "sharpe": strat.get("sharpe"), "max_drawdown": strat.get("max_drawdown"), "trades": strat.get("trades"),
    })


def get_backtest(store, run_id: str):
    run = store.get_run(run_id)
    if run is None or run.kind != "backtest":
        raise WebError(404, f"no backtest run '{run_id}'")
    return run


def backtest_detail(store, run_id: str) -> dict:
    run = get_backtest(store, run_id)
    s, cfg = _summary(run), _config(run)
    equity = store.load_equity(run_id)
    trades = store.load_trades(run_id)
    orders = store.load_orders(run_id)
    fills = store.load_fills(run_id)
    eq = equity["equity"] if len(equity) else pd.Series(dtype=float)
    drawdown = (eq / eq.cummax() - 1.0) if len(eq) else eq
    note = short_span_note(s)
    metrics = [{"metric": k, "strategy": (s.get("strategy") or {}).get(k),
                "buy_and_hold": (s.get("buy_and_hold") or {}).get(k),
                "annualised": bool(note) and k in ANNUALISED} for k in METRIC_KEYS]
    trade_cols = ["symbol", "side", "entry_time", "exit_time", "size", "entry_price", "exit_price", "pnl",
                  "pnl_pct", "fees", "exit_reason"]
    trades = with_exit_reasons(trades, orders, fills)
    strategy = cfg.get("strategy") or {}
    return {
        "run": run_row(run),
        "config": clean({"model": cfg.get("model"), "forecast": cfg.get("forecast"), "strategy": strategy,
                         "backtest": cfg.get("backtest"), "data": cfg.get("data"), "risk": cfg.get("risk") or {},
                         "costs": cfg.get("costs") or {}, "gate": strategy.get("gate"),
                         "dates": {"start": (cfg.get("data") or {}).get("start"),
                                   "end": (cfg.get("data") or {}).get("end"),
                                   "first_bar": s.get("first_bar") or (stamps(equity.index[:1]) or [None])[0],
                                   "last_bar": s.get("last_bar") or (stamps(equity.index[-1:]) or [None])[0]}}),
        "metrics": clean(metrics), "short_span_note": note,
        "equity": {"timestamps": stamps(equity.index), "equity": floats(eq, 6),
                   "cash": floats(equity["cash"], 6) if len(equity) else [],
                   "drawdown": floats(drawdown, 6)},
        "hold": _hold_curve(store, run, equity),
        "trades": records(trades, [c for c in trade_cols if c in trades.columns]) if len(trades) else [],
        "counts": {"orders": int(len(orders)), "fills": int(len(fills)), "trades": int(len(trades))},
        "skill": skill_rows(s.get("forecast_skill")),
    }


def with_exit_reasons(trades: pd.DataFrame, orders: pd.DataFrame, fills: pd.DataFrame) -> pd.DataFrame:
    """Each stored trade's exit reason: the reason of the order whose fill closed it (as the
    CLI report's trade log reads it from the run's journal)."""
    if trades.empty:
        return trades
    reasons = {}
    if len(fills) and len(orders) and {"order_id", "ts"} <= set(fills) and {"id", "reason", "symbol"} <= set(orders):
        by_order = orders.set_index("id")
        for f in fills.itertuples(index=False):
            if f.order_id in by_order.index:
                order = by_order.loc[f.order_id]
                reasons[(order["symbol"], pd.Timestamp(f.ts))] = order["reason"]
    return label_exits(trades, reasons)


def skill_rows(skill: dict | None) -> dict:
    """The run's stored forecast skill as table rows (one per step and forecaster)."""
    if not isinstance(skill, dict) or not skill.get("steps"):
        return {"windows": (skill or {}).get("windows", 0), "pending": (skill or {}).get("pending", 0), "rows": [],
                "verdict": "No forecast of this run had resolved (or the run predates skill scoring)"}
    from kronos_trader.evaluation.skill import SkillReport

    rows = []
    for step, forecasters in sorted(skill["steps"].items(), key=lambda kv: int(kv[0])):
        for key, label in SKILL_FORECASTERS:
            rows.append({"step": int(step), "forecaster": label, **(forecasters.get(key) or {})})
    return clean({"windows": skill.get("windows"), "pending": skill.get("pending"), "rows": rows,
                  "verdict": SkillReport.from_dict(skill).verdict()})


def _hold_curve(store, run, equity: pd.DataFrame) -> dict:
    """Buy-and-hold equity on the same bars, starting from the strategy's first equity."""
    candles, _ = run_candles(store, run)
    if candles is None or equity.empty:
        return {"timestamps": [], "equity": []}
    closes = candles["close"].copy()
    closes.index = closes.index + infer_bar_interval(candles.index)
    closes = closes.reindex(equity.index).ffill().dropna()
    if closes.empty:
        return {"timestamps": [], "equity": []}
    curve = float(equity["equity"].iloc[0]) * closes / closes.iloc[0]
    return {"timestamps": stamps(curve.index), "equity": floats(curve, 6)}


def _matches(candles: pd.DataFrame, equity: pd.DataFrame, summary: dict) -> bool:
    """Do these candles belong to the run? Bar closes must span the equity curve and
    reproduce the stored buy-and-hold return."""
    if candles.empty or equity.empty or len(candles) < 2:
        return False
    interval = infer_bar_interval(candles.index)
    closes = candles["close"].copy()
    closes.index = closes.index + interval
    closes = closes.loc[equity.index[0]:equity.index[-1]]
    if len(closes) < 0.9 * len(equity):
        return False
    hold = (summary.get("buy_and_hold") or {}).get("total_return")
    if hold is None or not np.isfinite(hold):
        return True
    return bool(abs(closes.iloc[-1] / closes.iloc[0] - 1.0 - hold) <= 1e-6 * max(1.0, abs(hold)))


def run_candles(store, run) -> tuple[pd.DataFrame | None, str]:
    s, cfg = _summary(run), _config(run)
    data = cfg.get("data") or {}
    symbol, timeframe = s.get("symbol") or data.get("symbol"), s.get("timeframe") or data.get("timeframe")
    equity = store.load_equity(run.id)
    if equity.empty:
        return None, "the run has no equity snapshots"
    if data.get("source") and symbol and timeframe:
        candles = store.load_candles(data["source"], symbol, timeframe, end=equity.index[-1])
        if _matches(candles, equity, s):
            return candles, f"database {data['source']} {symbol} {timeframe}"
    path = Path(data["path"]) if data.get("path") else SAMPLE_DATA_PATH
    if path.is_file():
        try:
            candles = load_candles(path)
        except CandleDataError:
            candles = None
        if candles is not None and _matches(candles, equity, s):
            return candles, f"file {path.name}"
    return None, ("the run's candles are not in the database and its data file is missing or holds other "
                  "data; forecasts are shown without candles")


def overlay(store, run_id: str) -> dict:
    """Candles over the run's span, the forecasts its signals used, and its fills."""
    run = get_backtest(store, run_id)
    equity = store.load_equity(run_id)
    candles, source = run_candles(store, run)
    signals = store.load_signals(run_id)
    fills = store.load_fills(run_id)
    orders = store.load_orders(run_id)
    forecasts = forecasts_by_id(store, signals["forecast_id"].dropna().astype(int)) if len(signals) else {}
    notes = [] if candles is not None else [source]
    interval = None
    out: dict = {"source": source if candles is not None else None, "notes": notes}
    if candles is not None:
        interval = infer_bar_interval(candles.index)
        first = equity.index[0] - interval * 2 if len(equity) else candles.index[0]
        candles = candles.loc[first:equity.index[-1] if len(equity) else None]
        if len(candles) > MAX_BARS:
            notes.append(f"showing the last {MAX_BARS} of {len(candles)} bars")
            candles = candles.iloc[-MAX_BARS:]
        out["candles"] = {"timestamps": stamps(candles.index),
                          **{c: floats(candles[c], 8) for c in ("open", "high", "low", "close")}}
    elif len(equity) > 1:
        interval = infer_bar_interval(equity.index)
    rows = sorted(forecasts.values(), key=lambda f: f.window_end)
    if candles is not None and len(candles):
        lo = candles.index[0]
        rows = [f for f in rows if pd.Timestamp(f.window_end) >= lo]
    out["interval"] = format_interval(interval) if interval is not None else None
    out["interval_seconds"] = interval.total_seconds() if interval is not None else None
    out["forecasts"] = _forecast_lines(rows, interval)
    if len(fills):
        side = dict(zip(orders["id"], orders["side"])) if len(orders) else {}
        out["fills"] = {"timestamps": stamps(fills["ts"]), "price": floats(fills["price"], 8),
                        "amount": floats(fills["amount"], 8),
                        "side": [side.get(o, "?") for o in fills["order_id"]]}
    else:
        out["fills"] = {"timestamps": [], "price": [], "amount": [], "side": []}
    return out


def _forecast_lines(rows, interval) -> dict:
    if not rows or interval is None:
        return {"ids": [], "next": {"timestamps": [], "close": []}, "ahead": {"timestamps": [], "close": [],
                "q05": [], "q95": []}, "horizon": None}
    horizon = int(rows[-1].horizon)
    ends = pd.DatetimeIndex([pd.Timestamp(f.window_end) for f in rows])
    mean_next = [f.payload["mean"][0][3] for f in rows]
    mean_last = [f.payload["mean"][-1][3] for f in rows]
    qs = [f.payload.get("quantiles", {}) for f in rows]
    q05 = [q.get("0.05", [None])[-1] if q.get("0.05") else None for q in qs]
    q95 = [q.get("0.95", [None])[-1] if q.get("0.95") else None for q in qs]
    h = np.array([len(f.payload["mean"]) for f in rows])
    ahead = ends + pd.to_timedelta((h - 1) * interval.value, unit="ns")
    stamped = [f.payload.get("stamps") for f in rows]  # the calendar's stamps, where stored
    if all(stamped):
        ends = pd.DatetimeIndex([s[0] for s in stamped])
        ahead = pd.DatetimeIndex([s[-1] for s in stamped])
    return {"ids": [int(f.id) for f in rows], "horizon": horizon,
            "next": {"timestamps": stamps(ends), "close": floats(mean_next, 8)},
            "ahead": {"timestamps": stamps(ahead), "close": floats(mean_last, 8), "q05": floats(q05, 8),
                      "q95": floats(q95, 8)}}


def forecast_detail(store, run_id: str, forecast_id: int) -> dict:
    """One forecast's full path (mean close and bands per step) for the inspector."""
    get_backtest(store, run_id)
    signals = store.load_signals(run_id)
    used = set(signals["forecast_id"].dropna().astype(int)) if len(signals) else set()
    if forecast_id not in used:
        raise WebError(404, f"forecast {forecast_id} is not part of run '{run_id}'")
    f = forecasts_by_id(store, [forecast_id]).get(forecast_id)
    if f is None:
        raise WebError(404, f"forecast {forecast_id} not found")
    return forecast_payload(f)


def forecast_payload(f, interval: pd.Timedelta | None = None) -> dict:
    p = f.payload
    mean = np.asarray(p["mean"], dtype=float)
    h = len(mean)
    end = pd.Timestamp(f.window_end)
    last_open = pd.Timestamp(p["bar_open"]) if p.get("bar_open") else None
    step = interval if interval is not None else ((end - last_open) if last_open is not None else pd.Timedelta(0))
    ts = [end + step * k for k in range(h)]
    quant = {q: floats(v, 8) for q, v in (p.get("quantiles") or {}).items()}
    p_up = list(p.get("p_up") or [])
    return clean({"id": int(f.id), "window_end": f.window_end, "last_close": p.get("last_close"),
                  "horizon": h, "timestamps": stamps(ts), "close": floats(mean[:, 3], 8), "quantiles": quant,
                  "p_up": floats(p_up, 6) if p_up else [],
                  "expected_return": (float(mean[-1, 3]) / float(p["last_close"]) - 1.0)
                  if p.get("last_close") else None,
                  "prob_up": float(p_up[-1]) if p_up else None,
                  "symbol": f.symbol, "timeframe": f.timeframe, "model_id": f.model_id})
