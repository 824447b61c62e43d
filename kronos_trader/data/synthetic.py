"""SYNTHETIC market generator: plausible crypto-like candles, no real data.

Used for the bundled sample, tests, and demos that must run offline. The
numbers are NOT market history; they only mimic its stylised facts so that
strategies and the forecasting pipeline see realistic structure:

* volatility clustering (GARCH(1,1) variance recursion),
* fat tails (unit-variance Student-t shocks),
* regimes (a Markov chain over bull / range / bear states with their own
  drift, volatility and activity level),
* consistent OHLC from an intrabar Brownian bridge (high >= max(open, close),
  low <= min(open, close), next open == previous close, prices > 0),
* volume driven by the size of the shock relative to its volatility and by
  the volatility level, with hour-of-day and day-of-week seasonality,
* amount = volume * mean(open, high, low, close) (the Kronos convention).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .bars import parse_interval
from .schema import CANONICAL_COLUMNS, INDEX_NAME

__all__ = ["Regime", "DEFAULT_REGIMES", "generate_market"]

_HOUR = pd.Timedelta(hours=1)
_HOURS_PER_YEAR = 24 * 365
# Activity per weekday (Mon..Sun): crypto trades 24/7 but weekends are quieter.
_WEEKDAY_VOLUME = np.array([1.0, 1.08, 1.1, 1.08, 1.04, 0.82, 0.78])
_WEEKDAY_VOL = np.array([1.0, 1.03, 1.04, 1.03, 1.02, 0.92, 0.9])
_PEAK_HOUR_UTC = 15  # US/EU overlap


@dataclass(frozen=True)
class Regime:
    """One market state: yearly log drift and multipliers on volatility and volume."""

    name: str
    annual_drift: float
    vol_scale: float
    volume_scale: float


DEFAULT_REGIMES: tuple[Regime, ...] = (
    Regime("bull", annual_drift=0.6, vol_scale=0.9, volume_scale=1.05),
    Regime("range", annual_drift=0.0, vol_scale=0.7, volume_scale=0.8),
    Regime("bear", annual_drift=-0.6, vol_scale=1.35, volume_scale=1.3),
)


def generate_market(
    n_bars: int,
    interval: str | pd.Timedelta = "1h",
    start: str | pd.Timestamp = "2023-01-01",
    seed: int = 0,
    start_price: float = 30000.0,
    *,
    hourly_vol: float = 0.007,
    tail_df: float = 6.0,
    garch_alpha: float = 0.08,
    garch_beta: float = 0.90,
    regimes: Sequence[Regime] = DEFAULT_REGIMES,
    mean_regime_hours: float = 24 * 10,
    base_volume: float = 1000.0,
    substeps: int = 12,
) -> pd.DataFrame:
    """Return ``n_bars`` SYNTHETIC candles in the canonical frame format.

    ``hourly_vol`` is the long-run standard deviation of 1h log returns (bars of
    other lengths scale by sqrt(time)); GARCH parameters apply per bar.
    ``base_volume`` is the mean traded quantity per hour. The same arguments
    (including ``seed``) always give an identical frame.
    """
    _check_args(n_bars, start_price, hourly_vol, tail_df, garch_alpha, garch_beta, regimes, substeps)
    step = parse_interval(interval)
    bar_hours = step / _HOUR
    stamps = pd.date_range(_naive_utc(start), periods=n_bars, freq=step).as_unit("ns")
    index = pd.DatetimeIndex(stamps, freq=None, name=INDEX_NAME)  # canonical frames carry no freq
    rng = np.random.default_rng(seed)

    state = _regime_path(rng, n_bars, len(regimes), bar_hours, mean_regime_hours)
    drift = np.array([r.annual_drift for r in regimes])[state] * bar_hours / _HOURS_PER_YEAR
    shocks = rng.standard_t(tail_df, n_bars) * np.sqrt((tail_df - 2) / tail_df)
    base_var = hourly_vol**2 * bar_hours
    garch_sd = np.sqrt(_garch_variance(shocks, base_var, garch_alpha, garch_beta))
    vol_season, volume_season = _seasonality(index, bar_hours)
    sigma = garch_sd * np.array([r.vol_scale for r in regimes])[state] * vol_season
    returns = drift + sigma * shocks

    opens, highs, lows, closes = _ohlc(rng, start_price, returns, sigma, substeps)
    activity = _activity_noise(rng, n_bars)
    surprise = np.abs(shocks) / np.mean(np.abs(shocks))
    volume = (
        base_volume
        * bar_hours
        * volume_season
        * np.array([r.volume_scale for r in regimes])[state]
        * np.sqrt(garch_sd / np.sqrt(base_var))
        * (0.4 + 0.6 * surprise)
        * activity
    )
    amount = volume * (opens + highs + lows + closes) / 4.0
    columns = dict(zip(CANONICAL_COLUMNS, (opens, highs, lows, closes, volume, amount), strict=True))
    return pd.DataFrame(columns, index=index).astype(np.float64)


def _check_args(
    n_bars: int,
    start_price: float,
    hourly_vol: float,
    tail_df: float,
    alpha: float,
    beta: float,
    regimes: Sequence[Regime],
    substeps: int,
) -> None:
    """Fail fast on arguments that would give a degenerate or exploding market."""
    if int(n_bars) != n_bars or n_bars < 1:
        raise ValueError(f"n_bars must be a positive integer, got {n_bars!r}")
    if not start_price > 0 or not hourly_vol > 0:
        raise ValueError("start_price and hourly_vol must be positive")
    if not tail_df > 2:
        raise ValueError("tail_df must be > 2 so the shocks have a variance")
    if alpha < 0 or beta < 0 or alpha + beta >= 1:
        raise ValueError("GARCH needs alpha >= 0, beta >= 0 and alpha + beta < 1")
    if not regimes:
        raise ValueError("at least one regime is required")
    if substeps < 1:
        raise ValueError("substeps must be >= 1")


def _naive_utc(start: str | pd.Timestamp) -> pd.Timestamp:
    stamp = pd.Timestamp(start)
    return stamp.tz_convert("UTC").tz_localize(None) if stamp.tz is not None else stamp


def _regime_path(
    rng: np.random.Generator, n: int, n_regimes: int, bar_hours: float, mean_hours: float
) -> np.ndarray:
    """Markov chain: stay with prob exp(-bar/mean duration), else jump to another state."""
    first = rng.integers(n_regimes)
    switch = rng.random(n) > np.exp(-bar_hours / mean_hours)
    switch[0] = False
    jumps = rng.integers(1, max(n_regimes, 2), n) * switch
    return (first + np.cumsum(jumps)) % n_regimes


def _garch_variance(shocks: np.ndarray, base_var: float, alpha: float, beta: float) -> np.ndarray:
    """GARCH(1,1) conditional variance targeting ``base_var``; capped to stay sane."""
    omega = base_var * (1.0 - alpha - beta)
    cap = 50.0 * base_var
    out = np.empty(len(shocks))
    h = base_var
    for t, z in enumerate(shocks.tolist()):
        out[t] = h
        h = min(omega + alpha * h * z * z + beta * h, cap)
    return out


def _seasonality(index: pd.DatetimeIndex, bar_hours: float) -> tuple[np.ndarray, np.ndarray]:
    """(volatility, volume) multipliers by hour of day and weekday, mean ~1."""
    weekday = index.day_of_week.to_numpy()
    vol = _WEEKDAY_VOL[weekday] / _WEEKDAY_VOL.mean()
    volume = _WEEKDAY_VOLUME[weekday] / _WEEKDAY_VOLUME.mean()
    if bar_hours < 24:  # hour of day means nothing for daily bars
        hour = index.hour.to_numpy() + index.minute.to_numpy() / 60.0
        wave = np.cos(2 * np.pi * (hour - _PEAK_HOUR_UTC) / 24)
        vol = vol * (1 + 0.2 * wave)
        volume = volume * (1 + 0.45 * wave)
    return vol, volume


def _ohlc(
    rng: np.random.Generator, start_price: float, returns: np.ndarray, sigma: np.ndarray, substeps: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Chain bars close-to-open and take high/low from a Brownian bridge inside each bar."""
    closes = start_price * np.exp(np.cumsum(returns))
    opens = np.concatenate(([start_price], closes[:-1]))
    walk = np.cumsum(rng.standard_normal((len(returns), substeps)), axis=1)
    walk *= (sigma / np.sqrt(substeps))[:, None]
    frac = np.arange(1, substeps + 1) / substeps
    bridge = walk - frac * walk[:, -1:] + frac * returns[:, None]
    highs = np.maximum(opens * np.exp(np.maximum(bridge.max(axis=1), 0.0)), np.maximum(opens, closes))
    lows = np.minimum(opens * np.exp(np.minimum(bridge.min(axis=1), 0.0)), np.minimum(opens, closes))
    return opens, highs, lows, closes


def _activity_noise(rng: np.random.Generator, n: int, phi: float = 0.7, sd: float = 0.25) -> np.ndarray:
    """Persistent log-normal volume noise with mean 1 (AR(1) in logs)."""
    innovations = rng.standard_normal(n) * sd * np.sqrt(1 - phi**2)
    level = np.empty(n)
    prev = rng.standard_normal() * sd
    for t, e in enumerate(innovations.tolist()):
        prev = phi * prev + e
        level[t] = prev
    return np.exp(level - 0.5 * sd**2)
