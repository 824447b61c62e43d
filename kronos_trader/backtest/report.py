"""Backtest report: terminal table, equity/drawdown PNG, trades CSV, summary JSON and an
interactive HTML chart (Plotly, embedded: it opens offline)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table

from kronos_trader.data import infer_bar_interval

from .metrics import drawdown
from .runner import BacktestResult

ROWS = [("total_return", "Total return", "pct"), ("annual_return", "Annual return", "pct"),
        ("sharpe", "Sharpe", "num"), ("sortino", "Sortino", "num"), ("max_drawdown", "Max drawdown", "pct"),
        ("win_rate", "Win rate", "pct"), ("trades", "Trades", "int"), ("exposure", "Exposure", "pct"),
        ("fees", "Fees", "money")]


def _fmt(value: float | None, kind: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if kind == "pct":
        return f"{value:+.2%}"
    if kind == "int":
        return f"{int(value)}"
    return f"{value:,.2f}"


def metrics_table(result: BacktestResult) -> Table:
    table = Table(title=f"Backtest {result.symbol} {result.timeframe} ({len(result.candles)} bars)")
    table.add_column("Metric")
    table.add_column("Strategy", justify="right")
    table.add_column("Buy & hold", justify="right")
    for key, label, kind in ROWS:
        table.add_row(label, _fmt(result.metrics["strategy"].get(key), kind),
                      _fmt(result.metrics["buy_and_hold"].get(key), kind))
    return table


def print_report(result: BacktestResult, folder: Path | None, console: Console | None = None) -> None:
    console = console or Console()
    console.print(metrics_table(result))
    console.print(f"forecasts: {result.forecasts_computed} computed, {result.forecasts_reused} reused from the "
                  f"database")
    if result.run_id:
        console.print(f"run id: {result.run_id}")
    if folder is not None:
        console.print(f"report: {folder}")


def write_report(result: BacktestResult, folder: Path) -> Path:
    """Write the report files into `folder` (created) and return it."""
    folder.mkdir(parents=True, exist_ok=True)
    result.trades.to_csv(folder / "trades.csv", index=False)
    summary = {"run_id": result.run_id, "symbol": result.symbol, "timeframe": result.timeframe,
               "bars": len(result.candles), "start": str(result.candles.index[0]),
               "end": str(result.candles.index[-1]), "forecasts_computed": result.forecasts_computed,
               "forecasts_reused": result.forecasts_reused, "metrics": result.metrics}
    (folder / "summary.json").write_text(json.dumps(summary, indent=2, default=_json_default))
    _equity_png(result, folder / "equity.png")
    _chart_html(result, folder / "chart.html")
    return folder


def _json_default(value):
    if isinstance(value, float) and math.isnan(value):
        return None
    return str(value)


def _hold_curve(result: BacktestResult) -> pd.Series:
    """Buy-and-hold equity on the strategy's bars (both stamped at bar close)."""
    interval = infer_bar_interval(result.candles.index)
    closes = result.candles["close"].set_axis(result.candles.index + interval).reindex(result.equity.index)
    return result.equity["equity"].iloc[0] * closes / closes.iloc[0]


def _equity_png(result: BacktestResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    equity = result.equity["equity"]
    hold = _hold_curve(result)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 6.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.plot(equity.index, equity, label="strategy", color="tab:blue")
    top.plot(hold.index, hold, label="buy & hold", color="tab:gray", alpha=0.7)
    top.set_ylabel("equity")
    top.set_title(f"{result.symbol} {result.timeframe}: equity")
    top.legend(loc="upper left")
    top.grid(alpha=0.3)
    bottom.fill_between(equity.index, drawdown(equity) * 100, 0, color="tab:red", alpha=0.4, label="strategy")
    bottom.plot(hold.index, drawdown(hold) * 100, color="tab:gray", alpha=0.7, label="buy & hold")
    bottom.set_ylabel("drawdown %")
    bottom.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _chart_html(result: BacktestResult, path: Path) -> None:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    c = result.candles
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.72, 0.28], vertical_spacing=0.03)
    fig.add_trace(go.Candlestick(x=c.index, open=c["open"], high=c["high"], low=c["low"], close=c["close"],
                                 name="candles"), row=1, col=1)
    forecasts = sorted(result.forecasts.values(), key=lambda f: f.window_end)
    if forecasts:
        h = forecasts[0].horizon
        interval = forecasts[0].window_end - forecasts[0].bar_open
        target_time = [f.stamps[-1] if f.stamps is not None else f.bar_open + interval * h
                       for f in forecasts]  # the bar the forecast is about (its calendar stamp)
        fig.add_trace(go.Scatter(x=target_time, y=[f.quantile(0.95) for f in forecasts], line=dict(width=0),
                                 showlegend=False, hoverinfo="skip"), row=1, col=1)
        fig.add_trace(go.Scatter(x=target_time, y=[f.quantile(0.05) for f in forecasts], line=dict(width=0),
                                 fill="tonexty", fillcolor="rgba(99,110,250,0.18)",
                                 name=f"5-95% band, {h} bars ahead"), row=1, col=1)
        fig.add_trace(go.Scatter(x=target_time, y=[f.close() for f in forecasts], line=dict(color="#636efa", width=1),
                                 name=f"forecast mean close, {h} bars ahead"), row=1, col=1)
    fills = pd.DataFrame(result.journal.fills)
    orders = pd.DataFrame(result.journal.orders)
    if not fills.empty and not orders.empty:
        sides = fills.merge(orders[["ref", "side"]], on="ref", how="left")
        for side, color, symbol in (("buy", "green", "triangle-up"), ("sell", "red", "triangle-down")):
            part = sides[sides["side"] == side]
            fig.add_trace(go.Scatter(x=part["ts"], y=part["price"], mode="markers", name=side,
                                     marker=dict(color=color, symbol=symbol, size=9)), row=1, col=1)
    fig.add_trace(go.Scatter(x=result.equity.index, y=result.equity["equity"], name="equity",
                             line=dict(color="black", width=1)), row=2, col=1)
    fig.update_layout(title=f"{result.symbol} {result.timeframe}: candles, Kronos forecasts and trades",
                      xaxis_rangeslider_visible=False, height=800, template="plotly_white")
    fig.write_html(str(path), include_plotlyjs=True, full_html=True)


def default_report_dir(base: Path, result: BacktestResult) -> Path:
    label = result.run_id[:12] if result.run_id else pd.Timestamp.now("UTC").strftime("%Y%m%dT%H%M%S")
    return base / f"{result.symbol.replace('/', '')}-{result.timeframe}-{label}"

