"""A backtest's results broken down as freqtrade users read them: per pair, per exit reason
and per day/week/month, with the run's start and end, starting and final balance, best and
worst trade, the drawdown period (peak, trough, recovery) and trades per day.

Everything is computed from the equity curve and the round trips of the report's trade log,
so the breakdown adds up to the headline metrics (trades, PnL) by construction.
"""
from __future__ import annotations

import math

import pandas as pd

from .metrics import drawdown, format_metric

__all__ = ["breakdown", "drawdown_period", "period_table", "print_breakdown", "PERIODS", "auto_period"]

PERIODS = {"day": "D", "week": "W", "month": "M"}
MAX_PERIOD_ROWS = 36   # console rows per period table (the latest; summary.json has all)


def drawdown_period(equity: pd.Series) -> dict:
    """The deepest drawdown: its peak, trough, recovery (None while under water), depth and
    length in days from peak to recovery (or to the end)."""
    if len(equity) < 2:
        return {"peak": None, "trough": None, "recovered": None, "depth": 0.0, "days": 0.0}
    dd = drawdown(equity)
    trough = dd.idxmin()
    peak = equity.loc[:trough].idxmax()
    after = equity.loc[trough:]
    back = after[after >= equity.loc[peak]]
    recovered = back.index[0] if len(back) else None
    until = recovered if recovered is not None else equity.index[-1]
    return {"peak": str(peak), "trough": str(trough), "recovered": None if recovered is None else str(recovered),
            "depth": float(dd.loc[trough]), "days": float((until - peak) / pd.Timedelta(days=1))}


def _trade_groups(trades: pd.DataFrame, column: str) -> list[dict]:
    rows = []
    if trades.empty or column not in trades:
        return rows
    for key, part in trades.groupby(column, sort=True):
        pnl = part["pnl"].astype(float)
        held = (pd.to_datetime(part["exit_time"]) - pd.to_datetime(part["entry_time"])).dt.total_seconds()
        rows.append({"key": str(key), "trades": int(len(part)), "wins": int((pnl > 0).sum()),
                     "losses": int((pnl <= 0).sum()), "win_rate": float((pnl > 0).mean()), "pnl": float(pnl.sum()),
                     "avg_pnl_pct": float(part["pnl_pct"].astype(float).mean()) if "pnl_pct" in part else None,
                     "fees": float(part["fees"].astype(float).sum()) if "fees" in part else 0.0,
                     "avg_holding_hours": float(held.mean() / 3600)})
    return rows


def _periods(trades: pd.DataFrame, equity: pd.Series, start_balance: float, freq: str) -> list[dict]:
    if equity.empty:
        return []
    labels = equity.index.to_period(freq)
    closing = equity.groupby(labels).last()
    exits = pd.to_datetime(trades["exit_time"]).dt.to_period(freq) if len(trades) else pd.Series(dtype=object)
    rows, before = [], start_balance
    for period, balance in closing.items():
        done = trades[exits == period] if len(trades) else trades
        rows.append({"start": f"{period.start_time:%Y-%m-%d}", "end": f"{period.end_time:%Y-%m-%d}",
                     "trades": int(len(done)), "pnl": float(done["pnl"].sum()) if len(done) else 0.0,
                     "return": float(balance / before - 1.0) if before else math.nan, "balance": float(balance)})
        before = balance
    return rows


def _trade_row(row: pd.Series) -> dict:
    return {"symbol": row.get("symbol"), "entry_time": str(row["entry_time"]), "exit_time": str(row["exit_time"]),
            "pnl": float(row["pnl"]), "pnl_pct": float(row.get("pnl_pct", math.nan))}


def breakdown(trades: pd.DataFrame, equity: pd.Series, cash: float | None = None) -> dict:
    """The breakdown of one run (see the module); `cash` the starting balance (default: the
    first equity point)."""
    start_balance = float(cash if cash is not None else (equity.iloc[0] if len(equity) else 0.0))
    span_days = (equity.index[-1] - equity.index[0]) / pd.Timedelta(days=1) if len(equity) > 1 else 0.0
    order = trades["pnl_pct"] if "pnl_pct" in trades else trades.get("pnl")
    summary = {"start": str(equity.index[0]) if len(equity) else None,
               "end": str(equity.index[-1]) if len(equity) else None, "days": float(span_days),
               "starting_balance": start_balance,
               "final_balance": float(equity.iloc[-1]) if len(equity) else start_balance,
               "best_trade": _trade_row(trades.loc[order.astype(float).idxmax()]) if len(trades) else None,
               "worst_trade": _trade_row(trades.loc[order.astype(float).idxmin()]) if len(trades) else None,
               "drawdown_period": drawdown_period(equity),
               "trades_per_day": float(len(trades) / span_days) if span_days > 0 else math.nan}
    return {"summary": summary, "per_pair": _trade_groups(trades, "symbol"),
            "per_exit_reason": _trade_groups(trades, "exit_reason"),
            "per_period": {name: _periods(trades, equity, start_balance, freq) for name, freq in PERIODS.items()}}


def auto_period(days: float) -> str:
    """The period a console shows: days up to a month, weeks up to half a year, else months."""
    return "day" if days <= 31 else "week" if days <= 183 else "month"


def _money(value) -> str:
    return format_metric(value, "money")


def _pct(value) -> str:
    return format_metric(value, "pct")


def summary_table(b: dict):
    from rich.table import Table

    s = b["summary"]
    table = Table(title="Run summary", show_header=False)
    table.add_column("")
    table.add_column("", justify="right")

    def trade(t):
        return "n/a" if t is None else f"{_pct(t['pnl_pct'])} ({_money(t['pnl'])}) {t['symbol']} {t['exit_time']}"

    dd = s["drawdown_period"]
    period = "none" if dd["peak"] is None or dd["depth"] == 0 else (
        f"{_pct(dd['depth'])} from {dd['peak']} to {dd['trough']}, "
        + (f"recovered {dd['recovered']}" if dd["recovered"] else "not recovered") + f" ({dd['days']:.1f} days)")
    for label, value in (("Start", s["start"]), ("End", s["end"]), ("Starting balance", _money(s["starting_balance"])),
                         ("Final balance", _money(s["final_balance"])), ("Best trade", trade(s["best_trade"])),
                         ("Worst trade", trade(s["worst_trade"])), ("Drawdown period", period),
                         ("Trades per day", "n/a" if math.isnan(s["trades_per_day"]) else f"{s['trades_per_day']:.2f}")):
        table.add_row(label, str(value))
    return table


def group_table(rows: list[dict], title: str, key: str):
    from rich.table import Table

    table = Table(title=title)
    for col in (key, "trades", "wins", "losses", "win rate", "PnL", "avg PnL %", "fees", "avg holding (h)"):
        table.add_column(col, justify="left" if col == key else "right")
    for r in rows:
        table.add_row(r["key"], str(r["trades"]), str(r["wins"]), str(r["losses"]), f"{r['win_rate']:.1%}",
                      f"{r['pnl']:+,.2f}", _pct(r["avg_pnl_pct"]), _money(r["fees"]), f"{r['avg_holding_hours']:.1f}")
    return table


def period_table(b: dict, name: str):
    from rich.table import Table

    rows = b["per_period"][name]
    shown = rows[-MAX_PERIOD_ROWS:]
    more = f", the last {len(shown)} of {len(rows)}" if len(shown) < len(rows) else ""
    table = Table(title=f"Results per {name}{more}")
    for col in ("start", "end", "trades", "PnL", "return", "balance"):
        table.add_column(col, justify="right")
    for r in shown:
        table.add_row(r["start"], r["end"], str(r["trades"]), f"{r['pnl']:+,.2f}", _pct(r["return"]),
                      _money(r["balance"]))
    return table


def result_breakdown(result, trades: pd.DataFrame) -> dict:
    """The breakdown of a BacktestResult from its trade log (`report.trade_log`), equity and
    starting cash."""
    cash = result.settings.backtest.cash if result.settings is not None else None
    return breakdown(trades, result.equity["equity"], cash)


def print_breakdown(result, trades: pd.DataFrame, console, period: str | None = None) -> None:
    b = result_breakdown(result, trades)
    console.print(summary_table(b))
    if b["per_pair"]:
        console.print(group_table(b["per_pair"], "Results per pair", "pair"))
        console.print(group_table(b["per_exit_reason"], "Results per exit reason", "exit reason"))
    console.print(period_table(b, period or auto_period(b["summary"]["days"])))
