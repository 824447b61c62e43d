"""Kronos forecast columns for a freqtrade strategy's dataframe.

`KronosColumns(self.config, model=..., lookback=..., horizon=...).add(dataframe, metadata)`
adds, on each candle's row, the forecast made at that candle's close from the `lookback`
candles ending at it (rows without a full lookback are NaN):

- ``kronos_p_up``: P(close `step` bars ahead > this close), ``kronos_pred_return``: the
  mean path's return at `step`, ``kronos_lower`` / ``kronos_upper``: quantiles of that close;
- with ``calibration: conformal``, the same four with ``_calibrated`` (each rescaled from
  the coverage of the `calibration_window` forecasts before it, NaN until that many exist);
- with a ``gate``, ``kronos_gate_open``: 1 while the skill gate is open, else 0.

Everything goes through `ForecastService` and its store (default
``<user_data_dir>/kronos_forecasts.sqlite``), so a window forecast once is read back by every
later backtest, hyperopt epoch or analysis. In backtesting and the analysis commands all rows
are forecast in batches; in dry-run and live only the newest closed candle (freqtrade drops
the forming one) gets a row, forecast once. What calibration and the gate need before it (the
`calibration_window` earlier forecasts, the rows the gate's verdict depends on) is computed in
one batch at the first candle, then read back. Earlier rows show the values they got when
they were the newest (NaN for candles before the bot started).

Every value depends on a fixed number of candles before its row, so freqtrade's
lookahead-analysis and recursive-analysis find no bias once `startup_candle_count` covers
`required_startup` (the constructor says what to set otherwise).
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
from pydantic import ValidationError

from kronos_trader.config import ForecastSettings, GateSettings, ModelSettings
from kronos_trader.data.calendar import check_calendar
from kronos_trader.exchange.timeframes import timeframe_to_timedelta
from kronos_trader.forecasting.models import LoadedModel, load_model
from kronos_trader.forecasting.service import ForecastService
from kronos_trader.forecasting.values import WindowForecast
from kronos_trader.gate import GateRule, SkillLedger
from kronos_trader.store import Store, open_store
from kronos_trader.text import one_line

log = logging.getLogger(__name__)

try:  # freqtrade prints its own exceptions as one line and stops the command
    from freqtrade.exceptions import OperationalException as _ErrorBase
except ImportError:  # pragma: no cover - reported by KronosColumns itself
    _ErrorBase = RuntimeError

COLUMNS = ("kronos_p_up", "kronos_pred_return", "kronos_lower", "kronos_upper")
CALIBRATED = tuple(f"{name}_calibrated" for name in COLUMNS)
GATE_COLUMN = "kronos_gate_open"
TRADE_MODES = ("live", "dry_run")
DB_FILE = "kronos_forecasts.sqlite"
_FORECAST_FIELDS = tuple(ForecastSettings.model_fields)
_MODEL_FIELDS = ("device", "precision", "max_context")
_OTHER_FIELDS = ("db", "calendar", "step", "lower_q", "upper_q", "gate")
OPTIONS = ("model", *_FORECAST_FIELDS, *_MODEL_FIELDS, *_OTHER_FIELDS)


class KronosFreqtradeError(_ErrorBase, ValueError):
    """A one-line problem with the Kronos columns. freqtrade stops on it with one error line:
    as an OperationalException from its commands, and (a ValueError) without a traceback
    from the strategy callbacks it wraps, such as `bot_start`."""


@dataclass(frozen=True)
class _Options:
    model: ModelSettings
    forecast: ForecastSettings
    db: str
    calendar: str
    step: int
    lower_q: float
    upper_q: float
    gate: GateSettings | None


_services: dict[tuple, ForecastService] = {}
_seen: dict[tuple, dict[pd.Timestamp, np.ndarray]] = {}  # live: each row's values when it was the newest
_KEEP = 5000  # rows kept per pair (freqtrade's dataframes hold about 1,000)
_stores: dict[str, Store] = {}


class KronosColumns:
    """Adds Kronos forecast columns to a freqtrade dataframe (see the module docstring).

    Options come from the keyword arguments, then the config's ``"kronos"`` section, then
    the defaults of `ForecastSettings`: `model` (bundled name, hub name or a pair
    directory), `device`, `precision`, the forecast settings (`lookback`, `horizon`,
    `sample_count`, `seed`, `every`, `calibration`, `p_up`, ...), `db` (SQLAlchemy URL of
    the forecast store), `calendar`, `step` (horizon step shown; default the last),
    `lower_q` / `upper_q` (0.05 / 0.95) and `gate` (the skill gate's settings, a dict).

    Construction checks everything a run needs (freqtrade installed, timeframe,
    `startup_candle_count`, model) and raises `KronosFreqtradeError` with one line; build it
    in the strategy's `bot_start` to fail before freqtrade loads any data.
    """

    def __init__(self, config: Mapping[str, Any], model: str | None = None, lookback: int | None = None,
                 horizon: int | None = None, **options: Any):
        try:
            import freqtrade  # noqa: F401
        except ImportError:
            raise KronosFreqtradeError("kronos_trader.freqtrade runs inside freqtrade, which is not installed here: "
                                       "pip install 'kronos-trader[freqtrade]'") from None
        given = {"model": model, "lookback": lookback, "horizon": horizon, **options}
        self.options = _options(config, {k: v for k, v in given.items() if v is not None})
        o = self.options
        self.timeframe = str(config.get("timeframe") or "")
        self.interval = _interval(self.timeframe)
        self.live = str(config.get("runmode", "")) in TRADE_MODES
        s = o.forecast
        if o.step > s.horizon:
            raise KronosFreqtradeError(f"Kronos step {o.step} exceeds the forecast horizon {s.horizon}")
        self.rule = None if o.gate is None else GateRule(o.gate.rule, o.gate.window, o.gate.step, o.gate.vol_window)
        if self.rule is not None and (o.gate.step or s.horizon) > s.horizon:
            raise KronosFreqtradeError(f"Kronos gate step {o.gate.step} exceeds the forecast horizon {s.horizon}")
        self.first_raw = s.lookback - 1
        self.first_calibrated = self.first_raw + (s.every * s.calibration_window if s.calibration != "none" else 0)
        self.gate_rows = s.every * (o.gate.window + math.ceil((o.gate.step or s.horizon) / s.every)
                                    + o.gate.vol_window + 2) if o.gate is not None else 0
        self.first_gate = self.first_calibrated + self.gate_rows
        self.required_startup = self.first_gate if o.gate is not None else self.first_calibrated
        startup = int(config.get("startup_candle_count") or 0)
        if startup < self.required_startup:
            raise KronosFreqtradeError(
                f"startup_candle_count is {startup}, too few candles for Kronos ({_needs(self)}): "
                f"set startup_candle_count = {self.required_startup} in the strategy")
        self._raw_settings = s.model_copy(update={"calibration": "none"})
        self.raw  # loads the model and opens the store now: their errors belong to the start

    # --- the services, rebuilt in each process (hyperopt pickles the strategy to its workers)
    @property
    def raw(self) -> ForecastService:
        """The model's own forecasts (the base columns)."""
        return _service(self.options, self._raw_settings)

    @property
    def calibrated(self) -> ForecastService | None:
        """Calibrated forecasts, when configured."""
        s = self.options.forecast
        return _service(self.options, s) if s.calibration != "none" else None

    # --- the columns --------------------------------------------------------------------
    def add(self, dataframe: pd.DataFrame, metadata: Mapping[str, Any]) -> pd.DataFrame:
        """The dataframe with the Kronos columns (a value per row, NaN without a forecast)."""
        pair = str(metadata.get("pair", "?"))
        candles = _candles(dataframe, pair, self.timeframe)
        n, s = len(candles), self.options.forecast
        started = time.perf_counter()
        computed = self._computed()
        first = max(0, n - 1 - self.gate_rows) if self.live else 0
        due = [p for p in range(max(first, self.first_raw), n) if (p - self.first_raw) % s.every == 0]
        raw = self._forecast(self.raw, candles, due, pair)
        self._write(dataframe, COLUMNS, raw, n)
        decide = raw
        if self.calibrated is not None:
            decide = self._forecast(self.calibrated, candles, [p for p in due if p >= self.first_calibrated], pair)
            self._write(dataframe, CALIBRATED, decide, n)
        if self.rule is not None:
            dataframe[GATE_COLUMN] = self._gate(decide, first, n)
        if self.live:
            self._carry(dataframe, candles.index, pair)
        new = self._computed() - computed
        if not self.live:
            log.info("Kronos %s %s: %d candles, %d forecast rows, %d windows computed by the model, the rest read "
                     "from the store (%.2f s)", pair, self.timeframe, n, len(due), new, time.perf_counter() - started)
        elif due and due[-1] == n - 1:
            newest = decide.get(n - 1) or raw[n - 1]
            log.info("Kronos %s %s candle %s: P(up) %.4f, expected return %+.4f (%d window%s forecast in %.2f s)",
                     pair, self.timeframe, candles.index[-1], newest.prob_up(self.options.step),
                     newest.expected_return(self.options.step), new, "" if new == 1 else "s",
                     time.perf_counter() - started)
        return dataframe

    def _carry(self, dataframe: pd.DataFrame, stamps: pd.DatetimeIndex, pair: str) -> None:
        """Live: keep each row's values from when its candle was the newest, and show them on
        the rows of later candles' dataframes (a strategy reading the previous row, e.g. a
        crossing, sees what a backtest sees once the bot has run that long; nothing is
        recomputed)."""
        names = [c for c in (*COLUMNS, *CALIBRATED, GATE_COLUMN) if c in dataframe]
        seen = _seen.setdefault((repr(self.options), self.timeframe, pair), {})
        values = dataframe[names].to_numpy(dtype=np.float64, copy=True)
        for i, stamp in enumerate(stamps):
            if not np.isnan(values[i]).all():
                seen.setdefault(stamp, values[i].copy())
            elif stamp in seen:
                values[i] = seen[stamp]
        for stamp in sorted(seen)[:-_KEEP]:
            del seen[stamp]
        dataframe[names] = values

    def _computed(self) -> int:
        calibrated = self.calibrated
        return self.raw.computed + (calibrated.computed if calibrated is not None else 0)

    def _forecast(self, service: ForecastService, candles: pd.DataFrame, positions: list[int],
                  pair: str) -> dict[int, WindowForecast]:
        if not positions:
            return {}
        try:
            return service.forecast_at(candles, positions, pair, self.timeframe, self.interval)
        except ValueError as exc:
            raise KronosFreqtradeError(f"Kronos forecast for {pair} {self.timeframe}: {one_line(exc)}") from None

    def _write(self, dataframe: pd.DataFrame, names: tuple[str, ...], found: dict[int, WindowForecast],
               n: int) -> None:
        o = self.options
        values = np.full((n, len(names)), np.nan)
        for position, f in found.items():
            values[position] = (f.prob_up(o.step), f.expected_return(o.step), f.quantile(o.lower_q, o.step),
                                f.quantile(o.upper_q, o.step))
        for i, name in enumerate(names):
            dataframe[name] = values[:, i]

    def _gate(self, forecasts: dict[int, WindowForecast], first: int, n: int) -> np.ndarray:
        """1/0 per row from a gate fed the forecasts from row `first` on in time order; NaN
        until it has seen the `gate_rows` candles its verdict depends on (so any start gives
        the same value)."""
        ledger = SkillLedger(self.rule)
        out = np.full(n, np.nan)
        for position in sorted(forecasts):
            ledger.observe(forecasts[position])
            if position >= max(self.first_gate, first + self.gate_rows):
                out[position] = 1.0 if ledger.verdict().open else 0.0
        return out


# --- options, checks ---------------------------------------------------------------------
def _options(config: Mapping[str, Any], given: Mapping[str, Any]) -> _Options:
    section = config.get("kronos") or {}
    if not isinstance(section, Mapping):
        raise KronosFreqtradeError("the config's \"kronos\" section must be a mapping of Kronos options")
    merged = {**section, **given}
    unknown = sorted(set(merged) - set(OPTIONS))
    if unknown:
        raise KronosFreqtradeError(f"unknown Kronos option(s) {', '.join(unknown)}; known: {', '.join(OPTIONS)}")
    try:
        model = ModelSettings(name=merged.get("model", ModelSettings().name),
                              **{k: merged[k] for k in _MODEL_FIELDS if k in merged})
        forecast = ForecastSettings(**{k: merged[k] for k in _FORECAST_FIELDS if k in merged})
        gate = merged.get("gate")
        gate = None if gate is None else GateSettings.model_validate(gate)
        calendar = check_calendar(merged.get("calendar", "auto"))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise KronosFreqtradeError(f"Kronos option {where}: {first['msg']}") from None
    except ValueError as exc:
        raise KronosFreqtradeError(f"Kronos option calendar: {one_line(exc)}") from None
    step = int(merged.get("step") or forecast.horizon)
    lower_q, upper_q = float(merged.get("lower_q", 0.05)), float(merged.get("upper_q", 0.95))
    from kronos import QUANTILES

    for name, q in (("lower_q", lower_q), ("upper_q", upper_q)):
        if q not in QUANTILES:
            raise KronosFreqtradeError(f"Kronos option {name} {q:g} is not a forecast quantile "
                                       f"({', '.join(f'{v:g}' for v in QUANTILES)})")
    db = merged.get("db") or _default_db(config)
    return _Options(model, forecast, str(db), calendar, step, lower_q, upper_q, gate)


def _default_db(config: Mapping[str, Any]) -> str:
    directory = Path(config.get("user_data_dir") or ".")
    directory.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(directory / DB_FILE).resolve()}"


def _interval(timeframe: str) -> pd.Timedelta:
    if not timeframe:
        raise KronosFreqtradeError("the strategy has no timeframe: set timeframe (e.g. \"1h\") in the strategy "
                                   "or config")
    try:
        return timeframe_to_timedelta(timeframe)
    except ValueError as exc:
        raise KronosFreqtradeError(f"Kronos cannot forecast timeframe {timeframe!r}: {one_line(exc)}; use a "
                                   f"fixed-length one such as 5m, 1h, 4h or 1d") from None


def _needs(columns: KronosColumns) -> str:
    o = columns.options
    parts = [f"{o.forecast.lookback} candles of lookback"]
    if o.forecast.calibration != "none":
        parts.append(f"{o.forecast.calibration_window} earlier forecasts for calibration")
    if o.gate is not None:
        parts.append(f"{columns.gate_rows} candles for the skill gate")
    return ", ".join(parts)


def _service(o: _Options, settings: ForecastSettings) -> ForecastService:
    """One ForecastService per model, settings and store in this process (the model loads once)."""
    key = (o.model.model_dump_json(), settings.model_dump_json(), o.db, o.calendar)
    if key not in _services:
        model = _load(o.model)
        if o.db not in _stores:
            try:
                _stores[o.db] = open_store(o.db)
            except Exception as exc:  # any driver error: say which database
                raise KronosFreqtradeError(f"Kronos forecast store {o.db}: {one_line(exc)}") from None
        try:
            _services[key] = ForecastService(model, settings, _stores[o.db], progress=True, calendar=o.calendar)
        except ValueError as exc:
            raise KronosFreqtradeError(f"Kronos settings: {one_line(exc)}") from None
    return _services[key]


def _load(model: ModelSettings) -> LoadedModel:
    try:
        return load_model(model.name, model.device, model.max_context, model.precision)
    except Exception as exc:  # CheckpointError, a bad device, an unreadable directory: one line
        raise KronosFreqtradeError(f"Kronos model {model.name!r}: {one_line(exc)}") from None


def _candles(dataframe: pd.DataFrame, pair: str, timeframe: str) -> pd.DataFrame:
    """freqtrade's candles (UTC `date` column, OHLCV) as the canonical frame the service takes."""
    missing = [c for c in ("date", "open", "high", "low", "close", "volume") if c not in dataframe.columns]
    if missing:
        raise KronosFreqtradeError(f"{pair} {timeframe}: the dataframe has no {', '.join(missing)} column")
    stamps = pd.DatetimeIndex(dataframe["date"])
    stamps = stamps.tz_convert("UTC").tz_localize(None) if stamps.tz is not None else stamps
    return pd.DataFrame({c: dataframe[c].to_numpy(dtype=np.float64) for c in ("open", "high", "low", "close",
                                                                              "volume")},
                        index=stamps.as_unit("ns").rename("timestamp"))


