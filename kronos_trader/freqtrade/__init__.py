"""Kronos forecasts inside freqtrade (the optional extra ``kronos-trader[freqtrade]``).

In a strategy: ``dataframe = KronosColumns(self.config, model=..., lookback=...,
horizon=...).add(dataframe, metadata)`` (see `columns`). A ready strategy,
`kronos_directional.KronosDirectional`, is copied into ``user_data/strategies/`` with
``python -m kronos_trader.freqtrade user_data/strategies``.
"""
from pathlib import Path

from .columns import CALIBRATED, COLUMNS, GATE_COLUMN, KronosColumns, KronosFreqtradeError

__all__ = ["KronosColumns", "KronosFreqtradeError", "COLUMNS", "CALIBRATED", "GATE_COLUMN", "STRATEGY_FILE"]

STRATEGY_FILE = Path(__file__).with_name("kronos_directional.py")  # the ready strategy, copied as it is
