"""KronosDirectional: a freqtrade strategy that trades on Kronos' P(up), with hysteresis.

Copy this file into ``user_data/strategies/`` (``python -m kronos_trader.freqtrade
user_data/strategies``) and run ``freqtrade backtesting --strategy KronosDirectional``.
Kronos options (model, lookback, horizon, sample_count, calibration, gate, db, ...) come from
the config's ``"kronos"`` section; `startup_candle_count` must cover the lookback (the
strategy stops at start with the value to set when it does not).

Like `strategies.directional:Directional`: enter long when P(up) > `long_threshold`, keep the
long while P(up) > `hold_long_above` (shorts mirrored, with `can_short` on futures). With
calibration the calibrated P(up) decides; with a gate, nothing is entered while it is closed
and open trades are exited.
"""
from __future__ import annotations

from freqtrade.strategy import DecimalParameter, IStrategy
from pandas import DataFrame, Series

from kronos_trader.freqtrade import KronosColumns


class KronosDirectional(IStrategy):
    INTERFACE_VERSION = 3
    timeframe = "1h"
    can_short = False
    minimal_roi = {"0": 100.0}  # exits come from the forecast (and the stoploss)
    stoploss = -0.10
    use_exit_signal = True
    process_only_new_candles = True
    startup_candle_count = 255  # Kronos' default lookback of 256 candles, less the row itself

    long_threshold = DecimalParameter(0.5, 0.8, default=0.55, decimals=3, space="buy")
    hold_long_above = DecimalParameter(0.3, 0.6, default=0.5, decimals=3, space="sell")
    short_threshold = DecimalParameter(0.2, 0.5, default=0.45, decimals=3, space="buy")
    hold_short_below = DecimalParameter(0.4, 0.7, default=0.5, decimals=3, space="sell")

    def bot_start(self, **kwargs) -> None:
        self.kronos = KronosColumns(self.config)  # checks model, timeframe and startup candles now

    def populate_indicators(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        return self.kronos.add(dataframe, metadata)

    def _p_up(self, dataframe: DataFrame) -> Series:
        name = "kronos_p_up_calibrated" if "kronos_p_up_calibrated" in dataframe else "kronos_p_up"
        return dataframe[name]

    def _gate_open(self, dataframe: DataFrame) -> Series:
        return dataframe["kronos_gate_open"] == 1 if "kronos_gate_open" in dataframe else Series(True, dataframe.index)

    def populate_entry_trend(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        p_up, gate = self._p_up(dataframe), self._gate_open(dataframe)
        dataframe.loc[gate & (p_up > self.long_threshold.value), ["enter_long", "enter_tag"]] = (1, "kronos_up")
        if self.can_short:
            dataframe.loc[gate & (p_up < self.short_threshold.value), ["enter_short", "enter_tag"]] = (1, "kronos_down")
        return dataframe

    def populate_exit_trend(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        p_up, closed = self._p_up(dataframe), ~self._gate_open(dataframe)
        dataframe.loc[(p_up <= self.hold_long_above.value) | closed, ["exit_long", "exit_tag"]] = (1, "kronos_exit")
        if self.can_short:
            dataframe.loc[(p_up >= self.hold_short_below.value) | closed, ["exit_short", "exit_tag"]] = (1, "kronos_exit")
        return dataframe
