"""Backtest report: terminal tables, equity/drawdown PNG, trades CSV, summary JSON and an
interactive HTML report (Plotly; opens offline).

Beside the trading metrics it shows the skill of the forecasts the run traded on (from
`result.skill`, scored by `kronos_trader.evaluation.skill`), a per-trade log with the exit
reason, the monthly returns and the settings that produced the run. The HTML stays small
over long spans: candles are aggregated to at most MAX_CANDLES, lines thinned to
MAX_POINTS, and the Plotly library is written once beside the report folders
(`plotly.min.js`) instead of into every chart.
"""
from __future__ import annotations

import html
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from kronos import HUB_MODELS
from kronos_trader.data import SYNTHETIC_LABEL, data_hash, infer_bar_interval, is_synthetic, titled
from kronos_trader.data.display import format_significant, price_digits

from kronos_trader.evaluation.calibration_report import plot_calibration
from kronos_trader.evaluation.skill import BASELINE_LABELS

from .breakdown import print_breakdown, result_breakdown
from .metrics import ANNUALISE_MIN_DAYS, ANNUALISED, drawdown, format_metric, monthly_returns
from .engine import BacktestResult

ROWS = [("total_return", "Total return", "pct"), ("annual_return", "Annual return", "pct"),
        ("sharpe", "Sharpe", "num"), ("period_sharpe", "Period Sharpe", "num"), ("sortino", "Sortino", "num"),
        ("max_drawdown", "Max drawdown", "pct"),
        ("calmar", "Calmar", "num"), ("win_rate", "Win rate", "share"), ("trades", "Trades", "int"),
        ("profit_factor", "Profit factor", "num"), ("expectancy", "Expectancy / trade", "money"),
        ("avg_win", "Average win", "money"), ("avg_loss", "Average loss", "money"),
        ("avg_holding_hours", "Average holding (h)", "num"), ("longest_losing_streak", "Longest losing streak", "int"),
        ("exposure", "Exposure", "share"), ("fees", "Fees", "money")]
MAX_CANDLES = 1500   # candles drawn (aggregated above this)
MAX_POINTS = 2000    # points per line (thinned above this)
HUB_TRAINING_END = pd.Timestamp("2024-07-01")  # the published hub models' training data reaches about mid-2024
EXIT_REASONS = ("signal", "stop-loss", "take-profit", "gate", "open")  # open: still held, marked at the end


def metrics_table(result: BacktestResult) -> Table:
    table = Table(title=f"Backtest {series_title(result)} ({len(result.candles)} bars)")
    table.add_column("Metric")
    table.add_column("Strategy", justify="right")
    table.add_column("Buy & hold", justify="right")
    marked = short_span_note(result.metrics) is not None
    for key, label, kind in ROWS:
        if key == "period_sharpe" and result.metrics["strategy"].get(key) is None:
            continue  # a run stored before period figures existed
        strategy, hold = result.metrics["strategy"].get(key), result.metrics["buy_and_hold"].get(key)
        if key == "avg_holding_hours":
            unit, hours = holding_unit(result.timeframe)
            label = f"Average holding ({unit})"
            strategy, hold = (None if v is None else v / hours for v in (strategy, hold))
        table.add_row(label + (" *" if marked and key in ANNUALISED else ""), format_metric(strategy, kind), format_metric(hold, kind))
    return table


def holding_unit(timeframe: str) -> tuple[str, float]:
    """The unit holding times read in for this bar size, and its length in hours."""
    tf = str(timeframe or "")
    if tf.endswith("m") and tf[:-1].isdigit():
        return "minutes", 1 / 60
    if tf.endswith(("d", "D")):
        return "days", 24.0
    if tf.endswith(("w", "W")):
        return "weeks", 24.0 * 7
    if tf.endswith("M"):
        return "days", 24.0
    return "hours", 1.0


def series_title(result) -> str:
    """"BTC/USDT 1h", marked when the candles are the bundled synthetic sample."""
    return titled(f"{result.symbol} {result.timeframe}", result.candles)


def synthetic_warning(result) -> str | None:
    if not is_synthetic(result.candles):
        return None
    return (f"{result.symbol} {result.timeframe} here is the bundled {SYNTHETIC_LABEL}: the figures show how the "
            f"tool works, not how the model trades a real market")


def short_span_note(metrics: dict) -> str | None:
    """The footnote of the starred (annualised) rows when the span is too short for them."""
    strategy = metrics.get("strategy", {})
    if strategy.get("annualised_reliable", True):
        return None
    days = strategy.get("span_days") or 0.0
    return (f"* annualised from a {days:.0f}-day span (under {ANNUALISE_MIN_DAYS} days): an extrapolation, "
            f"not an expectation; read the period figures (total return, period Sharpe, max drawdown)")


def exit_reason(reason: str | None) -> str:
    """The decision reason of a closing order, in one word."""
    text = (reason or "").strip()
    for kind in ("stop-loss", "take-profit", "gate"):
        if text.startswith(kind):
            return kind
    return "signal"


def trade_log(result: BacktestResult) -> pd.DataFrame:
    """Round trips with holding time and exit reason (the reason of the order whose fill
    closed the trade)."""
    trades = result.trades.copy()
    if trades.empty:
        return trades.assign(holding_hours=pd.Series(dtype=float), exit_reason=pd.Series(dtype=str))
    orders = {o.ref: o for o in result.journal.orders}
    closing = {(orders[f["ref"]].symbol, pd.Timestamp(f["ts"])): orders[f["ref"]].reason
               for f in result.journal.fills if f["ref"] in orders}
    trades["holding_hours"] = (pd.to_datetime(trades["exit_time"]) - pd.to_datetime(trades["entry_time"])) \
        .dt.total_seconds() / 3600
    return label_exits(trades, closing)


def label_exits(trades: pd.DataFrame, closing: dict[tuple[str, pd.Timestamp], str | None]) -> pd.DataFrame:
    """Each trade's exit reason: the reason of the order whose fill closed it, found by
    (symbol, fill time); a trade still open at the end (marked to market) reads "open"."""
    out = trades.copy()
    out["exit_reason"] = [exit_reason(closing.get((t.symbol, pd.Timestamp(t.exit_time))))
                          for t in trades.itertuples(index=False)]
    if "status" in out:
        out.loc[out["status"] == "open", "exit_reason"] = "open"
    return out


def training_warning(result: BacktestResult) -> str | None:
    """A published hub model backtested over dates its weights may have been trained on."""
    name = str(result.settings.model.name) if result.settings is not None else ""
    if name not in HUB_MODELS and not name.startswith("NeoQuasar/"):
        return None
    start = pd.Timestamp(result.equity.index[0] if len(result.equity) else result.candles.index[0])
    start = start.tz_localize(None) if start.tzinfo is not None else start
    if start >= HUB_TRAINING_END:
        return None
    return (f"{name} was trained on data reaching about {HUB_TRAINING_END:%B %Y}; this backtest starts "
            f"{start:%Y-%m-%d}, so its forecasts may have seen these prices: read the results as in-sample")


def run_settings(result: BacktestResult) -> dict:
    """What produced the run: model and weights hash, forecast sampling, strategy, costs, data."""
    s = result.settings
    c = result.candles
    out = {"data": {"symbol": result.symbol, "timeframe": result.timeframe, "bars": len(c),
                    "first_bar": str(c.index[0]), "last_bar": str(c.index[-1]), "data_hash": data_hash(c)}}
    if s is None:
        return out
    f = s.forecast
    out.update({
        "model": {"name": str(s.model.name), "model_id": result.model_id,
                  "weights_hash": (result.model_id or "").partition("@")[2] or None},
        "forecast": {"lookback": f.lookback, "horizon": f.horizon, "samples": f.sample_count,
                     "sampling": {"temperature": f.temperature, "top_k": f.top_k, "top_p": f.top_p, "seed": f.seed},
                     "every": f.every, "calibration": f.calibration},
        "strategy": s.strategy.model_dump(mode="json"),
        "costs": {"commission": s.costs.commission, "slippage": s.costs.slippage,
                  "stop_loss": s.risk.stop_loss, "take_profit": s.risk.take_profit, "cash": s.backtest.cash},
        "precision": s.model.precision, "calendar": s.data.calendar,
    })
    out["data"]["source"] = str(s.data.path) if s.data.path else None
    return out


def print_report(result: BacktestResult, folder: Path | None, console: Console | None = None) -> None:
    console = console or Console()
    console.print(metrics_table(result))
    if short_span_note(result.metrics):
        console.print(short_span_note(result.metrics))
    if result.skill is not None:
        console.print(result.skill.table(f"Forecast skill: {result.skill.windows} resolved forecasts of the run "
                                         f"({result.skill.pending} still open); RW = random walk"))
        console.print(result.skill.verdict())
    if result.p_up_calibration is not None:
        console.print(result.p_up_calibration.table())
    if result.cross_section is not None:
        console.print(result.cross_section.describe())
    if result.finetune is not None:
        console.print(result.finetune.table())
        console.print(result.finetune.verdict())
    trades = trade_log(result)
    print_breakdown(result, trades, console)
    if len(trades):
        counts = trades["exit_reason"].value_counts()
        console.print("exits: " + ", ".join(f"{k} {int(counts.get(k, 0))}" for k in EXIT_REASONS))
    for warning in (training_warning(result), synthetic_warning(result)):
        if warning:
            console.print(f"[yellow]warning:[/yellow] {warning}")
    console.print(f"forecasts: {result.forecasts_computed} computed, {result.forecasts_reused} reused from the "
                  f"database")
    if result.run_id:
        console.print(f"run id: {result.run_id}")
    if folder is not None:
        console.print(f"report: {folder}")


def summary_json(result: BacktestResult, trades: pd.DataFrame | None = None,
                 monthly: pd.DataFrame | None = None) -> str:
    """The run's summary (summary.json, and `backtest --json`): metrics, skill, exits, settings."""
    trades = trade_log(result) if trades is None else trades
    if monthly is None:
        monthly = monthly_returns(result.equity["equity"]) if len(result.equity) > 1 else pd.DataFrame()
    summary = {"run_id": result.run_id, "symbol": result.symbol, "timeframe": result.timeframe,
               "bars": len(result.candles), "start": str(result.candles.index[0]),
               "end": str(result.candles.index[-1]), "forecasts_computed": result.forecasts_computed,
               "forecasts_reused": result.forecasts_reused, "metrics": result.metrics,
               "forecast_skill": result.skill.to_dict() if result.skill is not None else None,
               "exit_reasons": {k: int((trades["exit_reason"] == k).sum()) if len(trades) else 0
                                for k in EXIT_REASONS},
               "monthly_returns": {str(y): {str(m): (None if pd.isna(v) else float(v)) for m, v in row.items()}
                                   for y, row in monthly.iterrows()},
               "breakdown": result_breakdown(result, trades),
               "settings": run_settings(result), "synthetic": is_synthetic(result.candles),
               "warnings": [w for w in [training_warning(result), synthetic_warning(result),
                                        short_span_note(result.metrics)] if w]}
    if result.finetune is not None:
        summary["finetune"] = result.finetune.to_dict()
    if result.cross_section is not None:
        summary["cross_sectional"] = result.cross_section.to_dict()
    if result.p_up_calibration is not None:
        summary["p_up_calibration"] = result.p_up_calibration.to_dict()
    return json.dumps(_finite(summary), indent=2, default=_json_default)


def write_report(result: BacktestResult, folder: Path) -> Path:
    """Write the report files into `folder` (created) and return it."""
    folder.mkdir(parents=True, exist_ok=True)
    trades = trade_log(result)
    trades.to_csv(folder / "trades.csv", index=False)
    monthly = monthly_returns(result.equity["equity"]) if len(result.equity) > 1 else pd.DataFrame()
    if result.p_up_calibration is not None:
        plot_calibration(result.p_up_calibration, folder / "calibration.png", f"{result.symbol} {result.timeframe}: "
                         f"P(up) and PIT")
    (folder / "summary.json").write_text(summary_json(result, trades, monthly))
    _equity_png(result, folder / "equity.png")
    _chart_html(result, folder / "chart.html", trades, monthly)
    return folder


def _finite(value):
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


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
    top.set_title(f"{series_title(result)}: equity")
    top.legend(loc="upper left")
    top.grid(alpha=0.3)
    bottom.fill_between(equity.index, drawdown(equity) * 100, 0, color="tab:red", alpha=0.4, label="strategy")
    bottom.plot(hold.index, drawdown(hold) * 100, color="tab:gray", alpha=0.7, label="buy & hold")
    bottom.set_ylabel("drawdown %")
    bottom.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _thin(n: int, limit: int = MAX_POINTS) -> slice:
    return slice(None, None, max(1, math.ceil(n / limit)))


def _aggregate_candles(c: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """At most MAX_CANDLES candles: consecutive bars merged (open first, high max, low min,
    close last). Returns the frame and how many bars each candle holds."""
    per = max(1, math.ceil(len(c) / MAX_CANDLES))
    if per == 1:
        return c, 1
    group = np.arange(len(c)) // per
    agg = c.groupby(group).agg(open=("open", "first"), high=("high", "max"), low=("low", "min"),
                               close=("close", "last"))
    agg.index = c.index[::per][:len(agg)]
    return agg, per


def _plotly_js(folder: Path) -> str:
    """The Plotly library, written once beside the report folders; charts refer to it."""
    from plotly.offline import get_plotlyjs

    target = folder.parent / "plotly.min.js"
    if not target.is_file():
        target.write_text(get_plotlyjs(), encoding="utf-8")
    return "../plotly.min.js"


def _chart_html(result: BacktestResult, path: Path, trades: pd.DataFrame, monthly: pd.DataFrame) -> None:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    candles, per = _aggregate_candles(result.candles)
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.72, 0.28], vertical_spacing=0.03)
    label = "candles" if per == 1 else f"candles ({per} bars each)"
    fig.add_trace(go.Candlestick(x=candles.index, open=candles["open"], high=candles["high"], low=candles["low"],
                                 close=candles["close"], name=label), row=1, col=1)
    forecasts = sorted(result.forecasts.values(), key=lambda f: f.window_end)
    forecasts = forecasts[_thin(len(forecasts))]
    if forecasts:
        h = forecasts[0].horizon
        interval = forecasts[0].window_end - forecasts[0].bar_open
        target_time = [f.stamps[-1] if f.stamps is not None else f.bar_open + interval * h
                       for f in forecasts]  # the bar the forecast is about (its calendar stamp)
        fig.add_trace(go.Scatter(x=target_time, y=[round(f.quantile(0.95), 6) for f in forecasts], line=dict(width=0),
                                 showlegend=False, hoverinfo="skip"), row=1, col=1)
        fig.add_trace(go.Scatter(x=target_time, y=[round(f.quantile(0.05), 6) for f in forecasts], line=dict(width=0),
                                 fill="tonexty", fillcolor="rgba(99,110,250,0.18)",
                                 name=f"5-95% band, {h} bars ahead"), row=1, col=1)
        fig.add_trace(go.Scatter(x=target_time, y=[round(f.close(), 6) for f in forecasts],
                                 line=dict(color="#636efa", width=1), name=f"forecast mean close, {h} bars ahead"),
                      row=1, col=1)
    if len(trades):
        # one marker per trade entry and exit (not per fill), thinned when there are very many
        part = trades.iloc[_thin(len(trades), MAX_POINTS // 2)]
        d = price_digits(part["entry_price"])
        text = [f"{r.side} {r.size:.6g} @ {r.entry_price:,.{d}f} -> {r.exit_price:,.{d}f}<br>PnL {r.pnl:+,.2f} "
                f"({r.exit_reason})" for r in part.itertuples()]
        fig.add_trace(go.Scatter(x=part["entry_time"], y=part["entry_price"].round(6), mode="markers", name="entry",
                                 marker=dict(color="green", symbol="triangle-up", size=8), text=text,
                                 hoverinfo="text+x"), row=1, col=1)
        fig.add_trace(go.Scatter(x=part["exit_time"], y=part["exit_price"].round(6), mode="markers", name="exit",
                                 marker=dict(color="red", symbol="triangle-down", size=8), text=text,
                                 hoverinfo="text+x"), row=1, col=1)
    equity = result.equity["equity"].iloc[_thin(len(result.equity))]
    fig.add_trace(go.Scatter(x=equity.index, y=equity.round(4), name="equity", line=dict(color="black", width=1)),
                  row=2, col=1)
    hold = _hold_curve(result).iloc[_thin(len(result.equity))]
    fig.add_trace(go.Scatter(x=hold.index, y=hold.round(4), name="buy & hold", line=dict(color="gray", width=1,
                                                                                        dash="dot")), row=2, col=1)
    fig.update_yaxes(title_text="price", row=1, col=1)
    fig.update_yaxes(title_text="equity (quote currency)", row=2, col=1)
    fig.update_xaxes(title_text="time (UTC)", row=2, col=1)
    fig.update_layout(title=f"{series_title(result)}: candles, Kronos forecasts and trades",
                      xaxis_rangeslider_visible=False, height=800, template="plotly_white")
    parts = [fig.to_html(include_plotlyjs=_plotly_js(path.parent), full_html=False)]
    if result.skill is not None and result.skill.steps:
        parts.append(_skill_html(result))
    if result.p_up_calibration is not None and result.p_up_calibration.steps:
        parts.append(_calibration_html(result.p_up_calibration))
    if result.finetune is not None:
        parts.append(f"<h2>Walk-forward fine-tuning</h2><p id='finetune-verdict'>{html.escape(result.finetune.verdict())}"
                     f".</p>")
    if not monthly.empty:
        parts.append(_monthly_html(monthly))
    parts.append(_trades_html(trades))
    warnings = [w for w in (synthetic_warning(result), training_warning(result)) if w]
    body = "".join(f"<p style='color:#a60'><b>Warning:</b> {w}</p>" for w in warnings) + "\n".join(parts)
    path.write_text(f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{series_title(result)} "
                    f"backtest</title><style>body{{font-family:sans-serif;margin:1em}} table{{border-collapse:collapse;"
                    f"font-size:13px}} td,th{{border:1px solid #ccc;padding:2px 6px;text-align:right}}</style></head>"
                    f"<body>{body}</body></html>", encoding="utf-8")


def _cell(value, spec: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return format(value, spec)


def _skill_html(result: BacktestResult) -> str:
    skill = result.skill
    head = ("<tr><th>step</th><th>forecaster</th><th>MAE</th><th>CRPS</th><th>CRPS skill vs RW</th>"
            "<th>CRPS skill vs RW+vol</th><th>cov 50%</th><th>cov 90%</th><th>hit rate</th><th>95% CI</th>"
            "<th>rank corr</th></tr>")
    rows = []
    for step, r in skill.steps.items():
        m = r["model"]
        rows.append(f"<tr><td>{step}</td><td>Kronos</td><td>{format_significant(m['mae'])}</td>"
                    f"<td>{format_significant(m['crps'])}</td><td>{_cell(m['crps_skill_random_walk'], '+.3f')}</td>"
                    f"<td>{_cell(m['crps_skill_random_walk_vol'], '+.3f')}</td>"
                    f"<td>{_cell(m['coverage_50'], '.1%')}</td>"
                    f"<td>{_cell(m['coverage_90'], '.1%')}</td><td>{_cell(m['hit_rate'], '.1%')}</td>"
                    f"<td>{_cell(m['hit_low'], '.1%')}-{_cell(m['hit_high'], '.1%')}</td>"
                    f"<td>{_cell(m['rank_corr'], '+.3f')}</td></tr>")
        for name, label in BASELINE_LABELS.items():
            b = r[name]
            rows.append(f"<tr><td></td><td>{label}</td><td>{format_significant(b['mae'])}</td><td>{format_significant(b['crps'])}"
                        f"</td><td></td><td></td><td>{_cell(b.get('coverage_50'), '.1%')}</td>"
                        f"<td>{_cell(b.get('coverage_90'), '.1%')}</td><td></td><td></td><td></td></tr>")
    return (f"<h2>Forecast skill</h2><p>{skill.windows} forecasts resolved ({skill.pending} still open), scored "
            f"against random walks on the same windows. {skill.verdict()}.</p>"
            f"<table id='forecast-skill'>{head}{''.join(rows)}</table>")


def _calibration_html(report) -> str:
    rows = "".join(f"<tr><td>{h}</td><td>{_cell(r['brier_raw'], '.4f')}</td><td>{_cell(r['brier_recalibrated'], '.4f')}"
                   f"</td><td>{_cell(r['bss_raw'], '+.3f')}</td><td>{_cell(r['bss_recalibrated'], '+.3f')}</td>"
                   f"<td>{_cell(r['ece_raw'], '.3f')}</td><td>{_cell(r['ece_recalibrated'], '.3f')}</td></tr>"
                   for h, r in report.steps.items())
    return ("<h2>P(up) calibration</h2><p>The model's P(up) (share of its paths above the last close) before and "
            f"after walk-forward {report.kind} recalibration; BSS is the Brier skill against climatology (the "
            "base rate of up moves known at each forecast).</p><table id='p-up-calibration'><tr><th>step</th>"
            "<th>Brier</th><th>Brier recal.</th><th>BSS</th><th>BSS recal.</th><th>ECE</th><th>ECE recal.</th></tr>"
            f"{rows}</table><img src='calibration.png' alt='reliability diagram and PIT histogram' width='900'>")


def _monthly_html(monthly: pd.DataFrame) -> str:
    import plotly.graph_objects as go

    z = monthly.to_numpy(dtype=float)
    text = [[_cell(v, "+.1%") if np.isfinite(v) else "" for v in row] for row in z]
    fig = go.Figure(go.Heatmap(z=np.round(z * 100, 2), x=[pd.Timestamp(2000, m, 1).strftime("%b") for m in
                                                            monthly.columns], y=[str(y) for y in monthly.index],
                               text=text, texttemplate="%{text}", colorscale="RdYlGn", zmid=0,
                               showscale=False, hovertemplate="%{y} %{x}: %{text}<extra></extra>"))
    fig.update_layout(title="Monthly returns (strategy)", height=160 + 40 * len(monthly), template="plotly_white")
    return "<div id='monthly-returns'>" + fig.to_html(include_plotlyjs=False, full_html=False) + "</div>"


def _trades_html(trades: pd.DataFrame) -> str:
    if trades.empty:
        return "<h2>Trades</h2><p>No closed trades.</p>"
    cols = ["entry_time", "exit_time", "side", "size", "entry_price", "exit_price", "pnl", "fees", "holding_hours",
            "exit_reason"]
    head = "".join(f"<th>{c.replace('_', ' ')}</th>" for c in cols)
    rows = []
    d = price_digits(trades["entry_price"])
    for r in trades[cols].itertuples(index=False):
        cells = [str(r.entry_time), str(r.exit_time), r.side, f"{r.size:.6g}", f"{r.entry_price:,.{d}f}",
                 f"{r.exit_price:,.{d}f}", f"{r.pnl:+,.2f}", f"{r.fees:,.2f}", f"{r.holding_hours:.1f}", r.exit_reason]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return f"<h2>Trades ({len(trades)})</h2><table id='trades'><tr>{head}</tr>{''.join(rows)}</table>"


def default_report_dir(base: Path, result: BacktestResult) -> Path:
    label = result.run_id[:12] if result.run_id else pd.Timestamp.now("UTC").strftime("%Y%m%dT%H%M%S")
    return base / f"{result.symbol.replace('/', '')}-{result.timeframe}-{label}"

