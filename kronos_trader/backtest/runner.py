"""The backtest job: candles -> batched forecasts -> Backtrader run -> metrics -> database.

What a run loads (one symbol's candles, or a portfolio's), what it is called, walk-forward
fine-tuning around it, and the database records; the run itself is one path for one symbol
or several (`portfolio.run_portfolio_backtest`). Forecasts for every decision bar are
computed (or read back) in one batched pass with a progress bar before Cerebro starts, and
handed to the indicators.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from kronos_trader.config import Settings, SymbolSource
from kronos_trader.data import SAMPLE_DATA_PATH, is_synthetic, load_candles, validate_candles
from kronos_trader.data.naming import series_names
from kronos_trader.evaluation.finetune_report import compare_finetune
from kronos_trader.forecasting.finetune import FinetunedForecasts, build_finetuned, plan_refits
from kronos_trader.forecasting.service import ForecastService
from kronos_trader.store import Store
from kronos_trader.version import code_version

from .engine import BacktestResult
from .portfolio import check_bars, check_one_timeframe, run_portfolio_backtest
from .run_catalog import run_name

SAMPLE_SERIES = ("BTC/USDT", "1h")  # what the bundled sample stands for


def load_backtest_candles(settings: Settings, store: Store | None) -> tuple[pd.DataFrame, str]:
    """Candles from the configured file; else those stored for the symbol and timeframe
    (by `kronos-trader fetch`); else, for BTC/USDT 1h, the bundled synthetic sample.
    Returns (candles, source label).

    With a start, the `lookback` bars before it are kept as history, so the first decision
    falls on the start bar itself. `data.sample_start` (the demo's quarter) applies to the
    bundled sample only: a user's file or stored series is used whole unless `data.start`.
    """
    data = settings.data
    stored = pd.DataFrame()
    if data.path is None and store is not None:
        stored = store.load_candles(data.source, data.symbol, data.timeframe, None, data.end)
    if not stored.empty:
        stored.index.name = "timestamp"
        if stored["amount"].isna().any():  # not stored by every source: estimate it as usual
            stored = stored.drop(columns="amount")
        candles, label = validate_candles(stored, f"database {data.symbol} {data.timeframe}"), f"db:{data.source}"
    elif data.path is None and (data.symbol, data.timeframe) != SAMPLE_SERIES:
        raise ValueError(f"no stored candles for {data.source} {data.symbol} {data.timeframe}: run "
                         f"`kronos-trader fetch` first, or pass --data FILE")
    else:
        path = Path(data.path) if data.path is not None else SAMPLE_DATA_PATH
        candles, label = load_candles(path), f"file:{path.name}"
        if data.end:
            candles = candles.loc[:data.end]
    start = data.start or (data.sample_start if data.path is None and stored.empty else None)
    if start:
        first = int(candles.index.searchsorted(pd.Timestamp(start)))
        if first >= len(candles):
            name = "data.start" if data.start else "data.sample_start"
            raise ValueError(f"{name} {start} is after the last bar ({candles.index[-1]})")
        candles = candles.iloc[max(0, first - settings.forecast.lookback + 1):]
    return candles, label


def symbol_sources(settings: Settings, symbols: list[str] | None = None) -> list[SymbolSource]:
    """The symbols of a portfolio run: the --symbols list, else data.symbols from config."""
    if symbols:
        return [SymbolSource(symbol=s.split("=")[0].strip(), path=s.partition("=")[2].strip() or None)
                for s in symbols]
    return list(settings.data.symbols)


def load_portfolio_candles(settings: Settings, sources: list[SymbolSource],
                           store: Store | None) -> dict[str, pd.DataFrame]:
    """Each symbol's candles (its file, else stored ones, as for one symbol), each kept
    whole: a bar one symbol lacks is not cut from the others (Backtrader replays feeds of
    different lengths; a symbol without a bar at a decision bar is simply not decided
    there). Symbols of different bar sizes are refused: resample them to one timeframe
    first, so no feed's bar stands for a longer one."""
    if len({s.symbol for s in sources}) != len(sources):
        raise ValueError("data.symbols: a symbol is listed twice")
    panel = {}
    for source in sources:
        data = settings.data.model_copy(update={"symbol": source.symbol, "path": source.path})
        panel[source.symbol], _ = load_backtest_candles(settings.model_copy(update={"data": data}), store)
    check_one_timeframe(panel)
    return panel


def backtest_names(settings: Settings, candles: pd.DataFrame, symbol: str | None = None,
                   timeframe: str | None = None) -> tuple[str, str]:
    """Symbol and timeframe that label the run: data.symbol/timeframe for stored candles and
    the bundled sample; for a --data file the --symbol/--timeframe flags, else its file
    name, else a neutral name and the bars' interval (never an invented BTC/USDT)."""
    if settings.data.path is None:
        return symbol or settings.data.symbol, timeframe or settings.data.timeframe
    return series_names(settings.data.path, candles, symbol, timeframe)


def check_refits(settings: Settings, candles: pd.DataFrame | dict[str, pd.DataFrame],
                 service: ForecastService | None) -> None:
    """Walk-forward fine-tuning settings fail in one line before anything is computed."""
    if settings.finetune.refit_every is not None and service is not None:
        f, bars = service.settings, max(map(len, candles.values())) if isinstance(candles, dict) else len(candles)
        plan_refits(candles, settings.finetune, service.decision_positions(bars)[0], f.lookback, f.horizon)


def run_backtest(settings: Settings, candles: pd.DataFrame | dict[str, pd.DataFrame], symbol: str, timeframe: str,
                 store: Store | None, progress: bool = True, name: str | None = None,
                 service: ForecastService | None = None) -> BacktestResult:
    """Run the configured strategy over `candles` and (with a store) persist everything.

    One path for every run: a feed per symbol and shared cash (`run_portfolio_backtest`);
    a single symbol's candles are the one-symbol case. With a dict of candles by symbol (or
    a cross-sectional policy) it is a portfolio backtest. Stored runs are named after what
    ran (`run_catalog.run_name`) unless `name` is given."""
    panel = candles if isinstance(candles, dict) else {symbol: candles}
    name = name or run_name(list(panel), timeframe, settings.strategy.name)
    zero_shot = None
    if settings.finetune.refit_every is not None and not isinstance(service, FinetunedForecasts):
        check_bars(panel, settings.forecast.lookback)
        if service is None:
            service = ForecastService.from_settings(settings, store, progress)
        # walk-forward fine-tuned folds decide: one fold model per refit point, trained on every
        # symbol's bars before it. The zero-shot service stays for the comparison (a sweep hands
        # in folds already built, and compares nothing per trial)
        zero_shot, service = service, build_finetuned(service, panel, settings.finetune, None, progress)
    result = run_portfolio_backtest(settings, panel, timeframe, store, progress, service)
    if zero_shot is not None:  # scored on the first symbol, as the skill is
        first_symbol, first = next(iter(panel.items()))
        result.finetune = compare_finetune(zero_shot.forecast_series(first, first_symbol, timeframe),
                                           result.forecasts, first, service.fold_of, service.summary())
    if store is not None:
        result.run_id = _persist(store, settings, result, name)
    return result


def _persist(store: Store, settings: Settings, result: BacktestResult, name: str) -> str:
    run_id = store.create_run("backtest", name, settings.model_dump(mode="json"), code_version())
    try:
        orders, fills = result.journal.stored(run_id)
        store.record_decisions(run_id, result.journal.signals, orders, fills=fills)
        store.record_equity_many(run_id, result.equity.reset_index().to_dict("records"))
        if not result.trades.empty:  # open ones too, marked at the last bar (as counted in the metrics)
            store.record_trades(run_id, result.trades.to_dict("records"))
        result.orders = pd.DataFrame([{**o.row(), "ref": o.ref} for o in orders])
        store.finish_run(run_id, "finished", {**result.metrics, "symbol": result.symbol,
                                              "timeframe": result.timeframe, "bars": len(result.candles),
                                              "first_bar": str(result.candles.index[0]),
                                              "last_bar": str(result.candles.index[-1]),
                                              "synthetic": is_synthetic(result.candles),
                                              "forecast_skill": result.skill.to_dict() if result.skill else None})
    except Exception:
        store.finish_run(run_id, "failed")
        raise
    return run_id
