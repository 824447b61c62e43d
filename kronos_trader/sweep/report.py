"""Loading a sweep's candles and showing its trials (terminal table; the web reads the same)."""
from __future__ import annotations

import math
from typing import Any

from rich.console import Console
from rich.table import Table

from kronos_trader.backtest.runner import load_backtest_candles, load_portfolio_candles
from kronos_trader.config import Settings
from kronos_trader.store import Store

from .study import MAX_REPEATS, SweepSummary, interrupted, oos_value, ranked_trials, storage_label
from .trial import SweepData


def load_sweep_data(settings: Settings, store: Store | None) -> SweepData:
    """The configured symbols (data.symbols / --symbols), else the single data.symbol."""
    if settings.data.symbols:
        panel = load_portfolio_candles(settings, list(settings.data.symbols), store)
    else:
        candles, _ = load_backtest_candles(settings, store)
        panel = {settings.data.symbol: candles}
    return SweepData(panel, settings.data.timeframe)


INTERRUPTED = "interrupted (its process stopped); the point was run again"


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, str):
        return value
    return str(value)


def _pct(value: Any) -> str:
    """Returns and drawdowns as percentages, as the backtest report shows them."""
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return f"{value:.2%}" if numeric else _fmt(value)


def trial_rows(study, limit: int | None = None) -> list[dict[str, Any]]:
    """One row per trial, best first: out-of-sample score (walk-forward), in-sample score,
    parameters, headline metrics, state and error."""
    rows = []
    for t in ranked_trials(study)[:limit]:
        metrics = t.user_attrs.get("oos_metrics") or t.user_attrs.get("metrics") or {}
        rows.append({"number": t.number, "oos": oos_value(t), "value": t.value, "params": t.params,
                     "screen": t.user_attrs.get("screen_value"),
                     "total_return": metrics.get("total_return"), "max_drawdown": metrics.get("max_drawdown"),
                     "trades": metrics.get("trades"), "state": t.state.name.lower(),
                     "error": t.user_attrs.get("error") or (INTERRUPTED if interrupted(t) else None)})
    return rows


def screen_line(summary: SweepSummary, rows: list[dict[str, Any]]) -> str:
    """How fast the screening pass was and how close it came to the exact re-runs."""
    screen = summary.screen
    pairs = [(float(r["screen"]), r["value"]) for r in rows
             if r["state"] == "complete" and r["screen"] is not None and r["value"] is not None]
    gap = max((abs(a - b) for a, b in pairs if math.isfinite(a) and math.isfinite(b)), default=None)
    agreement = f"; largest gap to Backtrader on the re-run points {gap:.3g}" if gap is not None else ""
    return (f"screened {len(screen.scores)} points in {screen.seconds:.2f} s ({screen.rate:,.0f} points/s); the "
            f"best {len([r for r in rows if r['screen'] is not None])} re-run exactly through Backtrader{agreement}")


def print_sweep(summary: SweepSummary, settings: Settings, console: Console, top: int = 10) -> None:
    study, sweep = summary.study, settings.sweep
    walk = sweep.walk_forward is not None
    rows = trial_rows(study, top)
    value = _pct if sweep.objective in ("total_return", "annual_return") else _fmt
    table = Table(title=f"sweep {study.study_name}: {sweep.objective}" + (
        f" (optimised on the first {sweep.walk_forward:.0%}, scored on the rest)" if walk else ""))
    if walk:
        table.add_column(f"out-of-sample {sweep.objective}", justify="right")
    table.add_column("#", justify="right")
    table.add_column(f"{'in-sample ' if walk else ''}{sweep.objective}", justify="right")
    screened = any(row["screen"] is not None for row in rows)
    if screened:
        table.add_column(f"screen {sweep.objective}", justify="right")
    names = list(sweep.params)
    for name in names:
        table.add_column(name.removeprefix("strategy.params."), justify="right")
    for column in ("return", "max dd", "trades", "state"):
        table.add_column(column + (" (oos)" if walk and column in ("return", "max dd", "trades") else ""),
                         justify="right")
    for row in rows:
        cells = ([value(row["oos"])] if walk else []) + [str(row["number"]), value(row["value"])]
        cells += [value(row["screen"])] if screened else []
        cells += [_fmt(row["params"].get(n)) for n in names]
        cells += [_pct(row["total_return"]), _pct(row["max_drawdown"]), _fmt(row["trades"]),
                  row["state"] if not row["error"] else f"failed: {row['error']}"]
        table.add_row(*cells)
    console.print(table)
    for note in summary.notes:
        console.print(f"note: {note}", highlight=False)
    trial_warnings = sorted({w for t in study.trials for w in t.user_attrs.get("warnings", [])})
    for warning in trial_warnings:
        console.print(f"[yellow]warning (trials):[/yellow] {warning}", highlight=False)
    if sweep.min_trades:
        console.print(f"trials with fewer than {sweep.min_trades} trades score -inf (sweep.min_trades)")
    console.print(f"{summary.trials_run} trials run in {summary.trial_seconds:.1f} s ({summary.failed} failed), "
                  f"{len(study.trials)} in the study; forecasts: {summary.forecasts_computed} computed, "
                  f"{summary.forecasts_reused} reused in {summary.forecast_seconds:.1f} s; "
                  f"stored in {storage_label(settings)}")
    if summary.screen is not None:
        console.print(screen_line(summary, rows))
    if summary.exhausted:
        console.print(f"TPE proposed only finished points {MAX_REPEATS} times in a row: the space has no new "
                      f"point left (stopped with {sum(1 for r in trial_rows(study) if r['state'] == 'complete')} "
                      f"distinct trials)")
    if rows and rows[0]["state"] == "complete":
        best = rows[0]
        lead = f"out-of-sample {sweep.objective} {value(best['oos'])}, in-sample " if walk else f"{sweep.objective} "
        console.print(f"best trial #{best['number']}: {lead}{value(best['value'])} with "
                      + ", ".join(f"{k}={_fmt(v)}" for k, v in best["params"].items()))
