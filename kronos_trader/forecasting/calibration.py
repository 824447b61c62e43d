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
from dataclasses import dataclass, field
from typing import Any, Sequence

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


@dataclass
class _Past:
    made_at: Any
    closes: np.ndarray      # (samples, steps) close paths
    known_at: np.ndarray    # (steps,) when each step's close becomes known


@dataclass
class RollingCalibrator:
    """Walk-forward calibration that never looks at the future.

    Register each forecast with `add(made_at, paths, known_at)`: `made_at` is when the
    forecast was made (its window end), `known_at[h]` when the close of step h becomes known
    (e.g. the bar's close time, or a bar position). `scale(now, closes)` fits factors on the
    registered forecasts made before `now`, using only their steps with `known_at <= now`
    and only entries of `closes` (indexed by the time they became known) up to `now`.
    `calibrate` applies them; `run` does add/calibrate over a time-ordered list.
    """

    level: float = 0.9
    min_history: int = 10     # outcomes a step needs before its factor departs from 1
    max_history: int | None = None  # use only the most recent forecasts
    history: list[_Past] = field(default_factory=list)

    def add(self, made_at, paths: np.ndarray, known_at: Sequence) -> None:
        paths = np.asarray(paths, dtype=np.float64)
        closes = paths[..., CLOSE] if paths.ndim == 3 else paths
        known = np.asarray(list(known_at))
        if len(known) != closes.shape[1]:
            raise ValueError(f"known_at has {len(known)} entries for {closes.shape[1]} steps")
        if self.history and _lt(made_at, self.history[-1].made_at):
            raise ValueError("forecasts must be added in time order")
        self.history.append(_Past(made_at, closes, known))

    def scale(self, now, closes: pd.Series, steps: int | None = None) -> np.ndarray:
        """Factors for a forecast made at `now` (steps: its number of steps)."""
        visible = closes[closes.index <= now]  # nothing after `now` is ever read
        past = [p for p in self.history if _lt(p.made_at, now)]
        if self.max_history is not None:
            past = past[-self.max_history:]
        paths, outcomes = [], []
        for p in past:
            known = np.array([not _lt(now, when) for when in p.known_at])
            y = visible.reindex(p.known_at).to_numpy(dtype=np.float64)
            paths.append(p.closes)
            outcomes.append(np.where(known, y, np.nan))
        n = steps if steps is not None else (past[-1].closes.shape[1] if past else 0)
        if not paths:
            return np.ones(n)
        fitted = fit_spread_scale(paths, outcomes, self.level, min_count=self.min_history)
        if len(fitted) < n:
            fitted = np.concatenate([fitted, np.ones(n - len(fitted))])
        return fitted[:n] if steps is not None else fitted

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


def _lt(a, b) -> bool:
    return bool(a < b)
