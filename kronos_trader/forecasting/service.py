"""Forecast service: candle windows in, stored forecast summaries out (the summaries, their
P(up), seed and neutral-forecast rules are the value types of `values.py`).

This is the one forecast entry point: the CLI `forecast`, the web workbench, `evaluate`,
the backtest and the live runner all call `ForecastService`, so the same window with the
same settings gives the same numbers everywhere.

A decision at bar t may use only data up to the close of bar t, so the window for bar t is
the `lookback` bars ending at t, and its future stamps come from the window alone through
`data.calendar.future_stamps` (sessions inferred from the window, or a named exchange).
Each window's sampling seed derives from the global seed and the window's end time
(`window_seed`), so a forecast does not depend on which other windows share its batch: a
stored forecast equals a recomputed one, and a rerun or a parameter sweep reads rows
instead of recomputing.

Degenerate windows never give NaN: values the model's float32 normalisation cannot hold
are a one-line error, and a flat window (zero variance of the close) gets the neutral
forecast: every path stays at the last close, so P(up) is 0.5 (a tie counts half up, half
down) and the expected return 0.
"""
from __future__ import annotations

import hashlib
import json
import time
import warnings
from typing import Hashable, Iterable, Iterator, Sequence

import numpy as np
import pandas as pd

from kronos import QUANTILES
from kronos.hub import window_warnings as trained_window_warnings
from kronos_trader.config import ForecastSettings, Settings, forecast_settings
from kronos_trader.data import frame_hash, infer_bar_interval, validate_candles
from kronos_trader.data.calendar import AUTO, check_calendar, future_stamps
from kronos_trader.store import Store

from .calibration import RollingCalibrator
from .models import LoadedModel, load_model
from .probability import with_p_up
from .progress import batch_progress
from .pup_calibration import recalibrate_requests
from .values import CLOSE, WindowForecast, WindowRequest, neutral_forecast, prob_up, window_seed


class ForecastWindowWarning(UserWarning):
    """A request far outside the window the model was trained on."""


def window_warnings(model: LoadedModel, settings: ForecastSettings) -> list[str]:
    """Warnings for a lookback or horizon far from the model card's training window
    (`kronos.hub.window_warnings`, the predictor's own rule)."""
    trained = getattr(model, "trained_window", None)  # stand-in models in tests may not have one
    return trained_window_warnings(trained, settings.lookback, settings.horizon, model.name)


class ForecastService:
    """Batched, stored forecasts for the windows ending at chosen bars of a series."""

    def __init__(self, model: LoadedModel, settings: ForecastSettings, store: Store | None = None,
                 progress: bool = True, calendar: str = AUTO):
        if settings.lookback > model.max_context:
            raise ValueError(f"lookback {settings.lookback} exceeds the model's context of {model.max_context} bars")
        if settings.horizon > model.max_context:
            raise ValueError(f"forecast horizon {settings.horizon} exceeds the model's context of "
                             f"{model.max_context} bars")
        self.model, self.settings, self.store, self.progress = model, settings, store, progress
        self.calendar = check_calendar(calendar)
        self.warnings = window_warnings(model, settings)
        for message in self.warnings:
            warnings.warn(message, ForecastWindowWarning, stacklevel=2)
        self.computed = 0  # windows computed by the model (not read from the store), for reports
        self.reused = 0
        self._memory: dict[str, WindowForecast] = {}  # this process's forecasts by window hash
        self._probed: set[str] = set()  # computed by `probe`, not yet asked for

    @classmethod
    def from_settings(cls, settings: Settings, store: Store | None = None, progress: bool = True,
                      model: LoadedModel | None = None, **forecast: object) -> "ForecastService":
        """The service for a whole config: its model, `forecast` section (with `forecast`
        overrides, e.g. a web request's lookback) and `data.calendar`."""
        if model is None:
            model = load_model(settings.model.name, settings.model.device, settings.model.max_context,
                               settings.model.precision)
        fs = forecast_settings({**settings.forecast.model_dump(), **forecast}) if forecast else settings.forecast
        return cls(model, fs, store, progress, settings.data.calendar)

    @property
    def settings_hash(self) -> str:
        s = self.settings
        key = {"lookback": s.lookback, "horizon": s.horizon, "sample_count": s.sample_count, "T": s.temperature,
               "top_k": s.top_k, "top_p": s.top_p, "seed": s.seed, "max_context": self.model.max_context,
               "quantiles": list(QUANTILES), "calendar": self.calendar, "v": 3}
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()

    def decision_positions(self, n_bars: int, first: int | None = None) -> list[int]:
        """Bars at which a forecast is due: every `every` bars once the lookback is full."""
        start = self.settings.lookback - 1 if first is None else max(first, self.settings.lookback - 1)
        return list(range(start, n_bars, self.settings.every))

    def forecast_at(self, candles: pd.DataFrame, positions: Sequence[int], symbol: str, timeframe: str,
                    interval: pd.Timedelta | None = None) -> dict[int, WindowForecast]:
        """Forecasts for the windows ending at each bar position (only past bars each)."""
        interval = interval if interval is not None else infer_bar_interval(candles.index)
        return self.forecast_many([WindowRequest(p, candles, p, symbol, timeframe, interval) for p in positions])

    def forecast_many(self, requests: Sequence["WindowRequest"]) -> dict[Hashable, WindowForecast]:
        """Forecasts for windows of any number of series (e.g. the newest bar of every pair
        in a live cycle), reusing stored ones and computing the rest in batched calls.

        With conformal calibration each forecast's spread is rescaled from the coverage of
        the `calibration_window` forecasts before it on the same series (only outcomes known
        at its window end): the same result whether it is computed in a backtest or live.
        """
        s = self.settings
        recalibrate = s.p_up_calibration != "none"
        if s.calibration == "none" and not recalibrate:
            out = self._raw_many(requests)
        else:
            history = self._calibration_history(requests)
            raw = self._raw_many(list(requests) + history)
            out = {r.key: raw[r.key] for r in requests} if s.calibration == "none" else \
                calibrate_requests(requests, history, raw, s)
        out = {key: with_p_up(f, s.p_up) for key, f in out.items()}  # P(up) estimator
        if recalibrate:  # P(up) through a map fitted on past forecasts' outcomes (pup_calibration.py)
            out = recalibrate_requests(requests, history, {k: with_p_up(f, s.p_up) for k, f in raw.items()}, out,
                                       s.p_up_calibration, s.p_up_min_history, s.every * s.calibration_window)
        return out

    def _calibration_history(self, requests: Sequence["WindowRequest"]) -> list["WindowRequest"]:
        """The earlier decision bars whose forecasts calibrate the requested ones."""
        s, extra = self.settings, {}
        for r in requests:
            first = max(s.lookback - 1, r.position - s.every * s.calibration_window)
            start = first + (r.position - first) % s.every
            for p in range(start, r.position, s.every):
                extra.setdefault((id(r.candles), p), WindowRequest(("history", id(r.candles), p), r.candles, p,
                                                                   r.symbol, r.timeframe, r.interval))
        return list(extra.values())

    def to_compute(self, requests: Sequence["WindowRequest"]) -> list["WindowRequest"]:
        """The requests (one per distinct window) that are neither stored nor in memory: what a
        forecast pass over them would compute."""
        _, hashes = self._windows(requests)
        self._recall(hashes.values())
        pending: dict[str, WindowRequest] = {}
        for r in requests:
            if hashes[r.key] not in self._memory:
                pending.setdefault(hashes[r.key], r)
        return list(pending.values())

    def probe(self, requests: Sequence["WindowRequest"]) -> float:
        """Compute (and store) the raw forecasts of `requests` (one batch of the run) now, for a
        time estimate; return the seconds taken. The pass that asks for them later counts them
        as computed, not reused, so the probe costs the run nothing."""
        before = self.computed, self.reused
        started = time.perf_counter()
        self._raw_many(requests, probing=True)
        self.computed, self.reused = before
        return time.perf_counter() - started

    def _windows(self, requests: Sequence["WindowRequest"]) -> tuple[dict, dict]:
        """Each request's window and its hash (each series validated once)."""
        lookback = self.settings.lookback
        valid: dict[int, tuple[pd.DataFrame, np.ndarray, np.ndarray]] = {}
        windows, hashes = {}, {}
        for r in requests:
            if r.position < lookback - 1 or r.position >= len(r.candles):
                raise ValueError(f"{r.symbol} {r.timeframe}: bar {r.position} has fewer than {lookback} bars of "
                                 f"history (series has {len(r.candles)} bars)")
            if id(r.candles) not in valid:
                frame = validate_candles(r.candles, f"{r.symbol} {r.timeframe}")
                valid[id(r.candles)] = (frame, frame.index.as_unit("ns").asi8, frame.to_numpy(dtype=np.float64))
            frame, stamps, values = valid[id(r.candles)]
            rows = slice(r.position - lookback + 1, r.position + 1)
            windows[r.key], hashes[r.key] = frame.iloc[rows], frame_hash(stamps[rows], values[rows])
        return windows, hashes

    def _recall(self, hashes: Iterable[str]) -> None:
        """Read the stored forecasts of `hashes` not yet in memory."""
        unknown = list({h for h in hashes if h not in self._memory})
        if self.store is not None and unknown:
            for h, row in self.store.get_forecasts(self.model.model_id, self.settings_hash, unknown).items():
                self._memory[h] = WindowForecast.from_payload(row.window_end, row.payload, row.id)

    def _raw_many(self, requests: Sequence["WindowRequest"], probing: bool = False
                  ) -> dict[Hashable, WindowForecast]:
        windows, hashes = self._windows(requests)
        self._recall(hashes.values())
        todo: dict[pd.Timedelta, dict[str, WindowRequest]] = {}
        for r in requests:
            if hashes[r.key] not in self._memory:  # the same window twice is computed once
                todo.setdefault(r.interval, {}).setdefault(hashes[r.key], r)
        probed = self._probed & set(hashes.values())  # computed for this pass by `probe`
        self.computed += len(probed)
        self._probed -= probed
        self.reused += sum(1 for r in requests if hashes[r.key] in self._memory and hashes[r.key] not in probed)
        for interval, group in todo.items():
            self._compute_and_store(list(group.values()), [windows[r.key] for r in group.values()],
                                    list(group), interval)
            if probing:
                self._probed.update(group)
        return {r.key: self._memory[hashes[r.key]] for r in requests}

    def forecast_latest(self, candles: pd.DataFrame, symbol: str, timeframe: str,
                        interval: pd.Timedelta | None = None) -> WindowForecast:
        """The forecast from the window ending at the last bar (calibrated if configured)."""
        if len(candles) < self.settings.lookback:
            raise ValueError(f"{symbol} {timeframe}: {len(candles)} bars, fewer than the lookback of "
                             f"{self.settings.lookback}")
        last = len(candles) - 1
        return self.forecast_at(candles, [last], symbol, timeframe, interval)[last]

    def forecast_series(self, candles: pd.DataFrame, symbol: str, timeframe: str,
                        first: int | None = None) -> dict[int, WindowForecast]:
        """All forecasts a backtest over `candles` needs, in as few model calls as possible."""
        return self.forecast_at(candles, self.decision_positions(len(candles), first), symbol, timeframe)

    # --- internals ------------------------------------------------------------------------
    def _compute_and_store(self, requests: list["WindowRequest"], windows: list[pd.DataFrame], hashes: list[str],
                           interval: pd.Timedelta) -> None:
        """Compute and store batch by batch: a run stopped (Ctrl-C, a crash) keeps every
        batch that completed, and a rerun reads them back."""
        for done in self._compute(windows, interval, [f"{r.symbol} {r.timeframe}" for r in requests]):
            self.computed += len(done)
            ids: dict = {}
            if self.store is not None:
                self.store.add_forecasts([self._row(f, hashes[i], requests[i].symbol, requests[i].timeframe)
                                          for i, f in done])
                ids = self.store.get_forecasts(self.model.model_id, self.settings_hash, [hashes[i] for i, _ in done])
            for i, f in done:
                h = hashes[i]
                # through the stored form, so a fresh forecast equals one read back later
                self._memory[h] = WindowForecast.from_payload(f.window_end, f.to_payload(),
                                                              ids[h].id if h in ids else None)

    def _compute(self, windows: list[pd.DataFrame], interval: pd.Timedelta, labels: list[str]
                 ) -> Iterator[list[tuple[int, WindowForecast]]]:
        """(position in `windows`, forecast) pairs, one list per model batch (flat windows first)."""
        if not windows:
            return
        s = self.settings
        flat = []
        model_windows = []
        for i, (w, label) in enumerate(zip(windows, labels)):
            stamps = future_stamps(w.index, s.horizon, self.calendar, interval)
            if _is_flat(w, label):
                flat.append((i, neutral_forecast(w, interval, stamps, s.sample_count)))
            else:
                model_windows.append((i, w, stamps))
        if flat:
            yield flat
        batches = [model_windows[i:i + s.batch_windows] for i in range(0, len(model_windows), s.batch_windows)]
        for batch in batch_progress(batches, self.progress and len(batches) > 1, len(model_windows),
                                    s.batch_windows):
            ends = [w.index[-1] + interval for _, w, _ in batch]
            results = self.model.predictor.forecast_batch(
                [w for _, w, _ in batch], [w.index for _, w, _ in batch], [st for _, _, st in batch],
                pred_len=s.horizon, T=s.temperature, top_k=s.top_k, top_p=s.top_p, sample_count=s.sample_count,
                verbose=False, seed=[window_seed(s.seed, e) for e in ends])
            done = []
            for (i, w, stamps), end, f in zip(batch, ends, results):
                last_close = float(w["close"].iloc[-1])
                close_paths = f.paths[:, :, CLOSE].astype(float)
                done.append((i, WindowForecast(
                    window_end=end, bar_open=w.index[-1], last_close=last_close,
                    mean=f.mean.to_numpy(dtype=float),
                    quantiles={q: v[:, CLOSE].astype(float) for q, v in zip(f.quantile_levels, f.quantile_values)},
                    p_up=prob_up(close_paths, last_close), close_paths=close_paths, stamps=stamps)))
            yield done

    def _row(self, f: WindowForecast, window_hash: str, symbol: str, timeframe: str) -> dict:
        s = self.settings
        return {"model_id": self.model.model_id, "data_hash": window_hash, "settings_hash": self.settings_hash,
                "symbol": symbol, "timeframe": timeframe, "window_end": f.window_end, "horizon": s.horizon,
                "sample_count": s.sample_count, "seed": s.seed, "payload": f.to_payload()}


def _is_flat(window: pd.DataFrame, label: str) -> bool:
    """True for a window whose close never moves; a one-line error for values the model's
    float32 normalisation (mean, std, scaled values) cannot hold."""
    values = window.to_numpy(dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        v32 = values.astype(np.float32)
        mean, std = v32.mean(axis=0), v32.std(axis=0)
        scaled = (v32 - mean) / (std + 1e-5)
    if not (np.isfinite(v32).all() and np.isfinite(mean).all() and np.isfinite(std).all()
            and np.isfinite(scaled).all()):
        row, col = np.unravel_index(np.argmax(np.abs(values)), values.shape)
        raise ValueError(f"{label}: value {values[row, col]:.6g} in column {window.columns[col]} at "
                         f"{window.index[row]} overflows the model's float32 normalisation; rescale the series "
                         f"(e.g. prices in thousands)")
    close = values[:, CLOSE]
    return bool(close.max() == close.min())


def calibrate_requests(requests: Sequence[WindowRequest], history: Sequence[WindowRequest],
                       raw: dict[Hashable, WindowForecast], settings: ForecastSettings) -> dict:
    """Walk each series forward in time, calibrating the requested forecasts with the
    `calibration_window` forecasts before them (conformal spread scaling, 90% level)."""
    out: dict[Hashable, WindowForecast] = {}
    series: dict[int, list[WindowRequest]] = {}
    for r in [*history, *requests]:
        series.setdefault(id(r.candles), []).append(r)
    wanted = {r.key for r in requests}
    for items in series.values():
        first = items[0]
        closes = first.candles["close"].set_axis(first.candles.index + first.interval)
        calibrator = RollingCalibrator(level=0.9, min_history=10, max_history=settings.calibration_window)
        done: set[int] = set()
        for r in sorted(items, key=lambda r: r.position):
            f = raw[r.key]
            if f.close_paths is None:
                raise ValueError("stored forecasts without sample paths cannot be calibrated: rerun them")
            if r.key in wanted:
                paths, _ = calibrator.calibrate(f.window_end, f.close_paths, closes)
                out[r.key] = f.with_close_paths(paths)
            if r.position not in done:
                done.add(r.position)
                known = list(f.stamps + r.interval) if f.stamps is not None else \
                    [f.window_end + r.interval * (h + 1) for h in range(f.horizon)]  # close times
                calibrator.add(f.window_end, f.close_paths, known)
    return out
