"""kronos-trader command line: thin shells that parse, call a service and render.

Every expected failure (bad config, bad data, missing model, exchange or database error)
is printed as one line and exits with status 1: no tracebacks for user mistakes.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from kronos_trader.commands.common import ConfigOption, console, err_console, friendly, print_json  # noqa: F401
from kronos_trader.commands.run_options import with_run_flags

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,  # plain help: no "<bool>"
                  context_settings={"help_option_names": ["-h", "--help"]},
                  help="Backtests and paper trading driven by Kronos candlestick forecasts.")


def _print_version(value: bool) -> None:
    if value:
        from kronos_trader import __version__

        typer.echo(f"kronos-trader {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                       help="print the version and exit")) -> None:
    """Backtests and paper trading driven by Kronos candlestick forecasts."""


@app.command()
@friendly
def forecast(
    config: Optional[Path] = ConfigOption,
    data: Optional[Path] = typer.Option(None, help="CSV/Parquet/Feather candles (default: bundled sample)"),
    model: Optional[str] = typer.Option(None, help="model name or directory"),
    lookback: Optional[int] = typer.Option(None, help="history bars"),
    horizon: Optional[int] = typer.Option(None, help="bars to forecast"),
    samples: Optional[int] = typer.Option(None, help="sample paths"),
    seed: Optional[int] = typer.Option(None),
    symbol: Optional[str] = typer.Option(None, help="what --data holds (default: from its file name)"),
    timeframe: Optional[str] = typer.Option(None, help="its bar size (default: file name, else the bars)"),
    out: Path = typer.Option(Path("reports/forecast"), help="folder for the CSV and the fan chart PNG"),
    as_json: bool = typer.Option(False, "--json", help="print the forecast as JSON (for scripts)"),
) -> None:
    """Forecast the next bars of a series from its latest window."""
    from kronos_trader.commands.forecast import run_forecast
    from kronos_trader.config import load_settings

    settings = load_settings(config, {"data.path": str(data) if data else None, "model.name": model,
                                      "forecast.lookback": lookback, "forecast.horizon": horizon,
                                      "forecast.sample_count": samples, "forecast.seed": seed})
    run_forecast(settings, out, console, symbol, timeframe, as_json)


@app.command()
@friendly
@with_run_flags
def backtest(
    config: Optional[Path] = ConfigOption,
    symbol: Optional[str] = typer.Option(None, help="symbol (with --start/--end: read stored candles)"),
    symbols: Optional[str] = typer.Option(None, help="several symbols, one portfolio: A,B or A=FILE,B=FILE"),
    timeframe: Optional[str] = typer.Option(None),
    model: Optional[str] = typer.Option(None, help="model name or directory"),
    db: Optional[str] = typer.Option(None, help="SQLAlchemy database URL"),
    report_dir: Optional[Path] = typer.Option(None, help="where report folders go"),
    progress: bool = typer.Option(True, help="show progress bars"),
    refit_every: Optional[str] = typer.Option(None, help="walk-forward fine-tuning: refit every N bars or period "
                                                         "(30D)"),
    train_bars: Optional[int] = typer.Option(None, help="bars before each refit a fold trains on"),
    as_json: bool = typer.Option(False, "--json", help="print the summary (summary.json) on stdout, for scripts"),
    overrides: Optional[dict] = None,
) -> None:
    """Backtest the configured strategy on Kronos forecasts and write a report."""
    from kronos_trader.backtest.report import default_report_dir, print_report, summary_json, write_report
    from kronos_trader.backtest.runner import backtest_names, check_refits, load_backtest_candles, run_backtest
    from kronos_trader.config import load_settings
    from kronos_trader.store import open_store

    settings = load_settings(config, {"data.symbol": symbol, "data.timeframe": timeframe, "model.name": model,
                                      "database.url": db, "data.symbols": symbols,
                                      "backtest.report_dir": str(report_dir) if report_dir else None,
                                      "finetune.refit_every": refit_every, "finetune.train_bars": train_bars,
                                      **(overrides or {})})
    store = open_store(settings.database.url)
    if settings.data.symbols:
        from kronos_trader.backtest.runner import load_portfolio_candles

        candles = load_portfolio_candles(settings, list(settings.data.symbols), store)
        names = (settings.data.symbol, settings.data.timeframe)
    else:
        candles, _ = load_backtest_candles(settings, store)
        names = backtest_names(settings, candles, symbol, timeframe)
    from kronos_trader.backtest.preamble import estimate_run, interrupted_line, run_preamble
    from kronos_trader.forecasting.service import ForecastService

    service = ForecastService.from_settings(settings, store, progress)
    check_refits(settings, candles, service)
    try:
        (err_console if as_json else console).print(  # --json: stdout holds the JSON only
            run_preamble(settings, candles, *names, service.model.name, estimate_run(service, candles, *names)),
            highlight=False, soft_wrap=True)
        result = run_backtest(settings, candles, *names, store, progress, service=service)
    except KeyboardInterrupt:
        err_console.print(interrupted_line(service.computed, store.url if store else None), highlight=False,
                          soft_wrap=True)
        raise typer.Exit(130) from None
    folder = write_report(result, default_report_dir(Path(settings.backtest.report_dir), result))
    if as_json:
        print_json(summary_json(result))
        err_console.print(f"report: {folder}", highlight=False)
    else:
        print_report(result, folder, console)


@app.command("lookahead-check")
@friendly
def lookahead_check(
    config: Optional[Path] = ConfigOption,
    data: Optional[Path] = typer.Option(None, help="candles (default: bundled sample)"),
    model: Optional[str] = typer.Option(None),
    bars: int = typer.Option(600, help="bars of the series to use (from its start)"),
    cut: float = typer.Option(0.6, help="cut point as a fraction of the bars"),
    sensitivity_bars: int = typer.Option(40, help="decision bars rerun with shorter/longer lookbacks (0: skip)"),
    progress: bool = typer.Option(True, help="show progress bars"),
    refit_every: Optional[str] = typer.Option(None, help="check walk-forward fine-tuning: refit every N bars or "
                                                         "period"),
    train_bars: Optional[int] = typer.Option(None, help="bars before each refit a fold trains on"),
    symbols: Optional[str] = typer.Option(None, help="check a portfolio: A=FILE,B=FILE (each cut at the same time)"),
) -> None:
    """Prove no look-ahead: perturb the data after a cut and compare everything before it;
    then report how often decisions change with a shorter or longer lookback."""
    from kronos_trader.backtest.lookahead import check_lookahead, check_lookback_sensitivity
    from kronos_trader.backtest.runner import load_backtest_candles
    from kronos_trader.config import load_settings

    settings = load_settings(config, {"data.path": str(data) if data else None, "model.name": model,
                                      "finetune.refit_every": refit_every, "finetune.train_bars": train_bars,
                                      "data.symbols": symbols})
    if settings.data.symbols:
        from kronos_trader.backtest.runner import load_portfolio_candles

        panel = {s: c.iloc[:bars] for s, c in load_portfolio_candles(settings, list(settings.data.symbols),
                                                                     None).items()}
        report = check_lookahead(settings, panel, cut, progress=progress)
        candles = next(iter(panel.values()))
    else:
        candles, _ = load_backtest_candles(settings, None)
        report = check_lookahead(settings, candles.iloc[:bars], cut, progress=progress)
    console.print(report.describe())
    if sensitivity_bars > 0:
        console.print(check_lookback_sensitivity(settings, candles.iloc[:bars], sensitivity_bars,
                                                 progress=progress).describe())
    if not report.passed:
        raise typer.Exit(2)


@app.command()
@friendly
def fetch(
    config: Optional[Path] = ConfigOption,
    exchange: Optional[str] = typer.Option(None, help="ccxt exchange id (default: paper.exchange)"),
    symbol: Optional[str] = typer.Option(None),
    timeframe: Optional[str] = typer.Option(None),
    start: str = typer.Option(..., help="first bar open time, e.g. 2024-01-01"),
    end: Optional[str] = typer.Option(None, help="last bar open time (default: the last closed bar)"),
    api_url: Optional[str] = typer.Option(None, help="exchange REST base URL override"),
    db: Optional[str] = typer.Option(None, help="SQLAlchemy database URL"),
) -> None:
    """Download closed candles through ccxt (paginated) into the database."""
    import pandas as pd

    from kronos_trader.config import load_settings
    from kronos_trader.exchange import fetch_closed_candles, make_client
    from kronos_trader.store import open_store

    settings = load_settings(config, {"data.symbol": symbol, "data.timeframe": timeframe, "database.url": db,
                                      "paper.exchange": exchange, "paper.api_url": api_url})
    client = make_client(settings.paper.exchange, api_url=settings.paper.api_url)
    candles = fetch_closed_candles(client, settings.data.symbol, settings.data.timeframe, pd.Timestamp(start),
                                   pd.Timestamp(end) if end else None)
    store = open_store(settings.database.url)
    count = store.upsert_candles(settings.paper.exchange, settings.data.symbol, settings.data.timeframe, candles)
    first, last = (candles.index[0], candles.index[-1]) if len(candles) else ("-", "-")
    console.print(f"stored {count} candles of {settings.data.symbol} {settings.data.timeframe} from "
                  f"{settings.paper.exchange} ({first} .. {last}) in {store.url}")


def _register_commands() -> None:
    """Commands living in their own modules (training, evaluation, paper trading, web)."""
    from kronos_trader.commands import evaluate as evaluate_cmd
    from kronos_trader.commands import init as init_cmd
    from kronos_trader.commands import mcp_server as mcp_cmd
    from kronos_trader.commands import paper as paper_cmd
    from kronos_trader.commands import run_options as run_options_cmd
    from kronos_trader.commands import runs as runs_cmd
    from kronos_trader.commands import sweep as sweep_cmd
    from kronos_trader.commands import train as train_cmd
    from kronos_trader.commands import web as web_cmd

    for module in (evaluate_cmd, paper_cmd, web_cmd, train_cmd, sweep_cmd, run_options_cmd, runs_cmd, init_cmd,
                   mcp_cmd):
        module.register(app)
    from kronos_trader.commands import replay as replay_cmd

    replay_cmd.register(app)


_register_commands()


def main() -> None:  # pragma: no cover - console script entry
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
