"""Backtrader integration: Kronos forecasts as an indicator, a strategy that runs any
decision policy on them, a forecast-driven sizer, and the backtest job."""
from .analyzers import ForecastUsage
from .compat import bt, use_headless_plotting
from .indicator import KronosIndicator
from .engine import BacktestResult, FractionalCommission
from .runner import run_backtest
from .strategy import ForecastSizer, Journal, PolicyStrategy, frame_feed

__all__ = ["bt", "use_headless_plotting", "KronosIndicator", "PolicyStrategy", "ForecastSizer", "ForecastUsage",
           "Journal", "FractionalCommission", "BacktestResult", "run_backtest", "frame_feed"]
