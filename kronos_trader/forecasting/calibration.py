"""Conformal-style calibration of the spread of forecast sample paths, per horizon step.

Sampled paths are often too narrow (nucleus sampling cuts the tails) or too wide. For each
step h we pick a factor c_h so that the central `level` band of the paths, widened or
narrowed by c_h around their median, would have covered `level` of past outcomes, and then
scale every path's deviation from the per-step median by c_h.

Scaling works on log prices (prices stay positive) and on the close: each path's close at
step h moves to median * (close / median) ** c_h, and its open, high, low and amount move by
the same ratio, so the bar keeps its shape (high >= open/close >= low) and volume is kept.

`RollingCalibrator` does this walk-forward: a forecast made at time t is calibrated only
with past forecasts whose target closes were already known at t (no future data).
"""
from __future__ import annotations

import math
from bisect import bisect_left
from dataclasses import dataclass
from datetime import datetime
from typing import Sequence

import numpy as np
import pandas as pd

__all__ = ["fit_spread_scale", "apply_spread_scale", "conformity_scores", "conformal_quantile",
           "RollingCalibrator", "PRICE_COLUMNS", "CLOSE", "AMOUNT"]

PRICE_COLUMNS = (0, 1, 2, 3)  # open, high, low, close in the (samples, steps, 6) layout
CLOSE, AMOUNT = 3, 5
MIN_SCALE, MAX_SCALE = 0.05, 50.0
_TINY = 1e-12


def _log(x: np.ndarray) -> np.ndarray:
    return np.log(np.maximum(np.asarray(x, dtype=np.float64), _TINY))


def _band(log_paths: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-step median and lower/upper ends of the central `level` band of (samples, steps)."""
    lo, med, hi = np.quantile(log_paths, [(1 - level) / 2, 0.5, (1 + level) / 2], axis=0)
    return med, lo, hi


def conformity_scores(paths: np.ndarray, realized: np.ndarray, level: float = 0.9) -> np.ndarray:
    """How far (in band half-widths) each outcome lies from the median, per step.

    A score <= c means the outcome lies inside the band scaled by c around the median; the
    side of the band the outcome falls on is used, so skewed bands are handled. Outcomes
    that are NaN (not yet known) give NaN.
    """
    log_paths, y = _log(paths), _log(realized)
    med, lo, hi = _band(log_paths, level)
    up = y >= med
    width = np.where(up, hi - med, med - lo)
    dist = np.abs(y - med)
    with np.errstate(divide="ignore", invalid="ignore"):
        score = np.where(width > _TINY, dist / np.maximum(width, _TINY), np.where(dist > _TINY, np.inf, 0.0))
    return np.where(np.isnan(np.asarray(realized, dtype=np.float64)), np.nan, score)


def conformal_quantile(scores: np.ndarray, level: float) -> float:
    """The finite-sample conformal quantile: the ceil((n+1) * level)-th smallest score (the
    largest when n is too small), so at least `level` of exchangeable new outcomes fall within."""
    scores = np.asarray(scores, dtype=np.float64)
    scores = scores[~np.isnan(scores)]
    n = len(scores)
    if n == 0:
        return 1.0
    value = float(np.sort(scores)[min(n, math.ceil((n + 1) * level)) - 1])
    return value if np.isfinite(value) else MAX_SCALE  # outcomes off zero-width bands: widest allowed


def fit_spread_scale(paths: Sequence[np.ndarray], realized: Sequence[np.ndarray], level: float = 0.9,
                     min_count: int = 1, bounds: tuple[float, float] = (MIN_SCALE, MAX_SCALE)) -> np.ndarray:
    """Per-step factors c_h from past forecasts and their outcomes.

    `paths[i]` is forecast i's close paths (samples, steps), `realized[i]` the closes that
    followed (steps,; NaN where not known, and it may be shorter). c_h is chosen so that the
    median-centred band scaled by c_h covers `level` of the past outcomes at step h. Steps
    with fewer than `min_count` outcomes get 1 (no change); factors are clipped to `bounds`.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if len(paths) != len(realized):
        raise ValueError(f"{len(paths)} forecasts but {len(realized)} outcome rows")
    if not paths:
        return np.ones(0)
    steps = max(np.asarray(p).shape[-1] for p in paths)
    columns: list[list[float]] = [[] for _ in range(steps)]
    for p, y in zip(paths, realized):
        p = np.asarray(p, dtype=np.float64)
        if p.ndim != 2:
            raise ValueError(f"each entry of paths must be (samples, steps), got shape {p.shape}")
        y = np.asarray(y, dtype=np.float64)[:p.shape[1]]
        p = p[:, :len(y)]
        for h, s in enumerate(conformity_scores(p, y, level)):
            if not np.isnan(s):
                columns[h].append(s)
    out = np.ones(steps)
    for h, scores in enumerate(columns):
        if len(scores) >= max(1, min_count):
            out[h] = conformal_quantile(np.asarray(scores), level)
    return np.clip(out, *bounds)


def apply_spread_scale(paths: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Scale each path's (log) deviation from the per-step median close by `scale[h]`.

    `paths` is (samples, steps, 6) (open, high, low, close, volume, amount) or (samples,
    steps) closes. Open/high/low/close and amount of a path move by the same ratio as its
    close, so bars keep their shape and prices stay positive; volume is unchanged.
    """
    paths = np.asarray(paths, dtype=np.float64)
    scale = np.asarray(scale, dtype=np.float64)
    closes = paths if paths.ndim == 2 else paths[..., CLOSE]
    if closes.shape[1] != len(scale):
        if len(scale) < closes.shape[1]:
            scale = np.concatenate([scale, np.full(closes.shape[1] - len(scale), scale[-1] if len(scale) else 1.0)])
        else:
            scale = scale[:closes.shape[1]]
    log_close = _log(closes)
    med = np.median(log_close, axis=0)
    new_log = med + scale[None, :] * (log_close - med)
    ratio = np.exp(new_log - log_close)
    if paths.ndim == 2:
        return closes * ratio
    out = paths.copy()
    for col in (*PRICE_COLUMNS, AMOUNT):
        out[..., col] = paths[..., col] * ratio
    return out


def _time_key(value) -> float:
    """A number that orders times: Timestamps/datetimes by nanoseconds, numbers as they are."""
    if isinstance(value, (pd.Timestamp, np.datetime64, datetime)):
        return float(pd.Timestamp(value).value)
    return float(value)


@dataclass
class _Past:
    made_at: float
    known_keys: np.ndarray   # (steps,) ordering keys of when each step's close is known
    known_at: list           # the same times as given (to look the closes up)
    med: np.ndarray          # per-step median of the log close paths
    lo: np.ndarray           # per-step lower/upper ends of the central band (log)
    hi: np.ndarray
    scores: np.ndarray       # per-step conformity score, NaN until the outcome is known


class RollingCalibrator:
    """Walk-forward calibration that never looks at the future.

    Register each forecast with `add(made_at, paths, known_at)`: `made_at` is when the
    forecast was made (its window end), `known_at[h]` when the close of step h becomes known
    (e.g. the bar's close time, or a bar position). `scale(now, closes)` fits factors on the
    forecasts made before `now`, using only their steps with `known_at <= now`, whose closes
    are read from `closes` (indexed by the time each became known) only at those times.
    Scores are computed once per (forecast, step) and kept, so past closes must not be
    revised between calls. `calibrate` applies the factors; `run` does add/calibrate over a
    time-ordered list of forecasts.
    """

    def __init__(self, level: float = 0.9, min_history: int = 10, max_history: int | None = None):
        if not 0 < level < 1:
            raise ValueError(f"level must be in (0, 1), got {level}")
        self.level, self.min_history, self.max_history = level, int(min_history), max_history
        self.history: list[_Past] = []
        self._made: list[float] = []  # made_at keys of `history`, ascending
        self._pending: list[_Past] = []  # forecasts with steps whose outcome is not scored yet

    def add(self, made_at, paths: np.ndarray, known_at: Sequence) -> None:
        paths = np.asarray(paths, dtype=np.float64)
        closes = paths[..., CLOSE] if paths.ndim == 3 else paths
        known = list(known_at)
        if len(known) != closes.shape[1]:
            raise ValueError(f"known_at has {len(known)} entries for {closes.shape[1]} steps")
        key = _time_key(made_at)
        if self.history and key < self.history[-1].made_at:
            raise ValueError("forecasts must be added in time order")
        med, lo, hi = _band(_log(closes), self.level)
        past = _Past(key, np.array([_time_key(k) for k in known]), known, med, lo, hi,
                     np.full(closes.shape[1], np.nan))
        self.history.append(past)
        self._made.append(key)
        self._pending.append(past)

    def _score_known(self, now: float, closes: pd.Series) -> None:
        still = []
        for p in self._pending:
            todo = np.isnan(p.scores) & (p.known_keys <= now) & (p.made_at < now)
            if todo.any():
                steps = np.flatnonzero(todo)
                y = closes.reindex([p.known_at[h] for h in steps]).to_numpy(dtype=np.float64)
                ly = _log(y)
                up = ly >= p.med[steps]
                width = np.where(up, p.hi[steps] - p.med[steps], p.med[steps] - p.lo[steps])
                dist = np.abs(ly - p.med[steps])
                with np.errstate(divide="ignore", invalid="ignore"):
                    score = np.where(width > _TINY, dist / np.maximum(width, _TINY),
                                     np.where(dist > _TINY, np.inf, 0.0))
                p.scores[steps] = np.where(np.isnan(y), np.nan, score)
            if np.isnan(p.scores).any():
                still.append(p)
        self._pending = still

    def scale(self, now, closes: pd.Series, steps: int | None = None) -> np.ndarray:
        """Factors for a forecast made at `now` (`steps`: its number of steps)."""
        key = _time_key(now)
        self._score_known(key, closes)
        count = bisect_left(self._made, key)  # forecasts made before `now`
        first = 0 if self.max_history is None else max(0, count - self.max_history)
        past = self.history[first:count]
        n = steps if steps is not None else (len(past[-1].scores) if past else 0)
        out = np.ones(n)
        if not past:
            return out
        width = max(len(p.scores) for p in past)
        scores = np.full((len(past), width), np.nan)
        keys = np.full((len(past), width), np.inf)
        for i, p in enumerate(past):
            scores[i, :len(p.scores)], keys[i, :len(p.scores)] = p.scores, p.known_keys
        scores[keys > key] = np.nan  # never a score of an outcome after `now`
        for h in range(min(n, width)):
            column = scores[:, h]
            column = column[~np.isnan(column)]
            if len(column) >= max(1, self.min_history):
                out[h] = conformal_quantile(column, self.level)
        return np.clip(out, MIN_SCALE, MAX_SCALE)

    def calibrate(self, now, paths: np.ndarray, closes: pd.Series) -> tuple[np.ndarray, np.ndarray]:
        """(calibrated paths, factors) for a forecast made at `now`."""
        paths = np.asarray(paths)
        factors = self.scale(now, closes, steps=paths.shape[1])
        return apply_spread_scale(paths, factors), factors

    def run(self, made_at: Sequence, paths: Sequence[np.ndarray], known_at: Sequence[Sequence],
            closes: pd.Series) -> tuple[list[np.ndarray], np.ndarray]:
        """Calibrate time-ordered forecasts one by one, each with the ones before it only.
        Returns the calibrated paths and the factors used (forecasts x steps)."""
        out, used = [], []
        for t, p, k in zip(made_at, paths, known_at):
            calibrated, factors = self.calibrate(t, p, closes)
            out.append(calibrated)
            used.append(factors)
            self.add(t, p, k)
        return out, np.array(used)
