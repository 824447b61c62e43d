"""The backtest job: candles -> batched forecasts -> Backtrader run -> metrics -> database.

Forecasts for every decision bar are computed (or read back) in one batched pass with a
progress bar before Cerebro starts; the indicator then only looks them up.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from kronos_trader.config import Settings
from kronos_trader.data import SAMPLE_DATA_PATH, infer_bar_interval, is_synthetic, load_candles, validate_candles
from kronos_trader.data.calendar import bars_per_year
from kronos_trader.data.naming import series_names
from kronos_trader.decision import Policy, load_policy
from kronos_trader.evaluation.calibration_report import PUpCalibration, score_p_up_forecasts
from kronos_trader.evaluation.cross_section import CrossSectionalIC
from kronos_trader.evaluation.finetune_report import FinetuneComparison, compare_finetune
from kronos_trader.evaluation.skill import SkillReport, score_run
from kronos_trader.forecasting.finetune import FinetunedForecasts, build_finetuned, plan_refits
from kronos_trader.forecasting.service import ForecastService
from kronos_trader.forecasting.values import WindowForecast
from kronos_trader.store import Store
from kronos_trader.version import code_version

from .compat import bt, num2timestamps
from .metrics import summarize
from .run_catalog import run_name
from .strategy import Journal, PolicyStrategy, frame_feed


class FractionalCommission(bt.CommInfoBase):
    """Percentage fees with fractional sizes (crypto): Backtrader's default rounds sizes
    down to whole units, which buys nothing at BTC prices."""

    params = (("stocklike", True), ("commtype", bt.CommInfoBase.COMM_PERC), ("percabs", True))

    def getsize(self, price, cash):
        return self.p.leverage * (cash / price)


class EquityRecorder(bt.Analyzer):
    """Account value, cash and position value at each bar's close."""

    def start(self):
        self.rows = []

    def prenext(self):
        """Bars before the first forecast are history, not part of the backtest."""

    def next(self):
        # the strategy's clock: the newest bar of any feed (a portfolio's first feed may lack one)
        value, cash = self.strategy.broker.getvalue(), self.strategy.broker.getcash()
        self.rows.append((self.strategy.datetime[0], value, cash, value - cash))

    def frame(self, interval: pd.Timedelta) -> pd.DataFrame:
        stamps, value, cash, position = zip(*self.rows) if self.rows else ((), (), (), ())
        index = num2timestamps(list(stamps)) + interval
        return pd.DataFrame({"equity": value, "cash": cash, "position_value": position},
                            index=pd.DatetimeIndex(index, name="ts"))


@dataclass
class BacktestResult:
    run_id: str | None
    symbol: str
    timeframe: str
    candles: pd.DataFrame
    equity: pd.DataFrame
    trades: pd.DataFrame
    journal: Journal
    forecasts: dict[int, WindowForecast]
    metrics: dict[str, dict[str, float]]
    forecasts_computed: int = 0
    forecasts_reused: int = 0
    orders: pd.DataFrame = field(default_factory=pd.DataFrame)
    panel: dict[str, pd.DataFrame] = field(default_factory=dict)  # every symbol's candles (portfolio runs)
    symbol_forecasts: dict[str, dict[int, WindowForecast]] = field(default_factory=dict)  # (portfolio runs)
    skill: SkillReport | None = None  # the skill of the forecasts it traded on (resolved ones)
    settings: Settings | None = None  # what produced the run (for the report)
    model_id: str | None = None
    finetune: FinetuneComparison | None = None  # zero-shot vs walk-forward fine-tuned (with --refit-every)
    cross_section: CrossSectionalIC | None = None  # IC / rank IC across symbols (portfolio runs of 3+)
    _p_up_calibration: PUpCalibration | None = field(default=None, repr=False)

    @property
    def p_up_calibration(self) -> PUpCalibration | None:
        """Reliability, Brier and ECE of P(up) before/after recalibration (single-symbol runs).
        Scored on first read: sweep trials never read it, and each would refit the maps."""
        if self._p_up_calibration is None and self.settings is not None and not self.panel:
            kind = "logistic" if self.settings.forecast.p_up_calibration == "logistic" else "isotonic"
            self._p_up_calibration = score_p_up_forecasts(self.forecasts.values(), self.candles, kind=kind)
        return self._p_up_calibration


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


def backtest_names(settings: Settings, candles: pd.DataFrame, symbol: str | None = None,
                   timeframe: str | None = None) -> tuple[str, str]:
    """Symbol and timeframe that label the run: data.symbol/timeframe for stored candles and
    the bundled sample; for a --data file the --symbol/--timeframe flags, else its file
    name, else a neutral name and the bars' interval (never an invented BTC/USDT)."""
    if settings.data.path is None:
        return symbol or settings.data.symbol, timeframe or settings.data.timeframe
    return series_names(settings.data.path, candles, symbol, timeframe)


def configure_broker(cerebro: bt.Cerebro, settings: Settings) -> None:
    """Cash from `backtest:`, fees and slippage from the `costs:` shared with live trading."""
    cerebro.broker.setcash(settings.backtest.cash)
    cerebro.broker.addcommissioninfo(FractionalCommission(commission=settings.costs.commission))
    if settings.costs.slippage:
        cerebro.broker.set_slippage_perc(settings.costs.slippage, slip_open=True, slip_match=True)


def run_cerebro(cerebro: bt.Cerebro, journal: Journal, interval: pd.Timedelta) -> tuple[pd.DataFrame, pd.DataFrame,
                                                                                      float]:
    """Run a configured Cerebro: its equity curve, the journal's round trips and the fees paid."""
    cerebro.addanalyzer(EquityRecorder, _name="equity")
    strategy = cerebro.run()[0]
    equity = strategy.analyzers.equity.frame(interval)
    trades = pd.DataFrame(journal.trades, columns=["symbol", "entry_time", "exit_time", "side", "size",
                                                   "entry_price", "exit_price", "pnl", "pnl_pct", "fees",
                                                   "status"])
    return equity, trades, sum(f["fee"] for f in journal.fills)


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

    With a dict of candles by symbol (or a cross-sectional policy) it is one portfolio
    backtest with a feed per symbol and shared cash (backtest/portfolio.py). Stored runs are
    named after what ran (`run_catalog.run_name`) unless `name` is given."""
    policy = load_policy(settings.strategy.name, settings.strategy.params, settings.strategy.gate)
    name = name or run_name(list(candles) if isinstance(candles, dict) else [symbol], timeframe,
                            settings.strategy.name)
    if isinstance(candles, dict) or not isinstance(policy, Policy):
        from .portfolio import run_portfolio_backtest

        panel = candles if isinstance(candles, dict) else {symbol: candles}
        return run_portfolio_backtest(settings, panel, timeframe, store, progress, name, service)
    if len(candles) <= settings.forecast.lookback:
        raise ValueError(f"{symbol}: {len(candles)} bars is not more than the lookback of "
                         f"{settings.forecast.lookback} bars")
    zero_shot = None
    if service is None:
        service = ForecastService.from_settings(settings, store, progress)
    if settings.finetune.refit_every is not None and not isinstance(service, FinetunedForecasts):
        # walk-forward fine-tuned folds decide; the zero-shot service stays for the comparison (a
        # sweep hands in folds already built, and compares nothing per trial)
        zero_shot, service = service, build_finetuned(service, candles, settings.finetune,
                                                      service.decision_positions(len(candles))[0], progress)
    interval = infer_bar_interval(candles.index)
    forecasts = service.forecast_series(candles, symbol, timeframe)
    computed, reused = service.computed, service.reused

    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(frame_feed(candles, symbol))
    configure_broker(cerebro, settings)
    journal = Journal()
    cerebro.addstrategy(PolicyStrategy, policy=policy, service=service, journal=journal,
                        stop_loss=settings.risk.stop_loss, take_profit=settings.risk.take_profit,
                        indicator={"symbol": symbol, "timeframe": timeframe})
    equity, trades, fees = run_cerebro(cerebro, journal, interval)
    closes = candles["close"].copy()
    closes.index = closes.index + interval
    first = equity.index[0] if len(equity) else closes.index[0]
    metrics = summarize(equity, trades, closes.loc[first:], fees, interval,
                        bars_per_year(candles.index, settings.data.calendar))
    result = BacktestResult(None, symbol, timeframe, candles, equity, trades, journal, forecasts, metrics,
                            computed, reused, skill=score_run(forecasts.values(), candles), settings=settings,
                            model_id=service.model.model_id)
    if zero_shot is not None:
        result.finetune = compare_finetune(zero_shot.forecast_series(candles, symbol, timeframe), forecasts, candles,
                                           service.fold_of, service.summary())
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
