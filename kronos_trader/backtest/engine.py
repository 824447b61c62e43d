"""The pieces every backtest runs on: fractional fees, the equity recorder, Cerebro's run
and the result it gives. Single-symbol and portfolio backtests are one path
(`portfolio.run_portfolio_backtest`: a single-symbol run is its one-symbol case); the job
around it (loading, fine-tuning, the database) is `runner.run_backtest`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from kronos_trader.config import Settings
from kronos_trader.evaluation.calibration_report import PUpCalibration, score_p_up_forecasts
from kronos_trader.evaluation.cross_section import CrossSectionalIC
from kronos_trader.evaluation.finetune_report import FinetuneComparison
from kronos_trader.evaluation.skill import SkillReport
from kronos_trader.forecasting.values import WindowForecast

from .compat import bt, num2timestamps
from .strategy import Journal


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
    panel: dict[str, pd.DataFrame] = field(default_factory=dict)  # every symbol's candles (one: a single symbol)
    symbol_forecasts: dict[str, dict[int, WindowForecast]] = field(default_factory=dict)  # by symbol (all)
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
        if self._p_up_calibration is None and self.settings is not None and len(self.panel) <= 1:
            kind = "logistic" if self.settings.forecast.p_up_calibration == "logistic" else "isotonic"
            self._p_up_calibration = score_p_up_forecasts(self.forecasts.values(), self.candles, kind=kind)
        return self._p_up_calibration


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
