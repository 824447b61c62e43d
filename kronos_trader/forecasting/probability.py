"""P(up) from a forecast's sample paths, and what resolution it has.

The empirical estimate, the share of paths whose close ends above the last close, can only
take the values 0, 1/n, ..., 1 for n sample paths: with 8 paths, thresholds 0.5 and 0.6
decide identically (both mean "at least 5 of 8 paths up"). The kernel estimate smooths the
paths' returns with a Gaussian kernel (Scott's bandwidth, as scipy's gaussian_kde) and
integrates it above zero: P(up) = mean_i Phi(r_i / h). It varies continuously with the
paths, so every threshold means something, and it agrees with the empirical share as n
grows. It is computed from the stored paths when read, so stored forecasts serve both.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Literal

import numpy as np
from scipy.special import ndtr

PUpMethod = Literal["empirical", "kernel"]
P_UP_METHODS: tuple[str, ...] = ("empirical", "kernel")


class PUpResolutionWarning(UserWarning):
    """A policy's P(up) threshold falls between two values P(up) can take (`threshold_warnings`):
    its own class, so a caller that says it once (a sweep, for its whole space) filters it by class."""


def kernel_p_up(close_paths: np.ndarray, last_close: float) -> np.ndarray:
    """Kernel-smoothed P(close > last close) per step, from (samples x horizon) paths."""
    returns = np.asarray(close_paths, dtype=np.float64) / last_close - 1.0
    n = returns.shape[0]
    empirical = (returns > 0).mean(axis=0)
    if n < 2:
        return empirical
    bandwidth = returns.std(axis=0, ddof=1) * n ** (-1.0 / 5.0)  # Scott's factor for one dimension
    with np.errstate(divide="ignore", invalid="ignore"):
        smooth = ndtr(returns / bandwidth).mean(axis=0)
    return np.where(bandwidth > 0, smooth, empirical)  # all paths equal: nothing to smooth


def with_p_up(forecast, method: str):
    """The forecast with P(up) estimated by `method` ("empirical" leaves it as computed)."""
    if method == "empirical":
        return forecast
    if method != "kernel":
        raise ValueError(f"forecast.p_up must be one of {', '.join(P_UP_METHODS)}, got {method!r}")
    if forecast.close_paths is None:
        raise ValueError("stored forecasts without sample paths cannot give a kernel P(up): rerun them")
    return dataclasses.replace(forecast, p_up=kernel_p_up(forecast.close_paths, forecast.last_close))


def p_up_gap(threshold: float, sample_count: int, method: str = "empirical") -> tuple[float, float] | None:
    """The two neighbouring values P(up) can take around `threshold` when it falls strictly
    between them (every threshold in that gap decides the same), else None."""
    if method != "empirical" or not 0.0 < threshold < 1.0:
        return None
    scaled = threshold * sample_count
    if abs(scaled - round(scaled)) < 1e-9:
        return None
    low = math.floor(scaled)
    return low / sample_count, (low + 1) / sample_count


def threshold_warnings(thresholds: dict[str, float], sample_count: int, method: str = "empirical") -> list[str]:
    """One line for each threshold that falls between the values P(up) can take."""
    lines = []
    for name, value in thresholds.items():
        gap = p_up_gap(value, sample_count, method)
        if gap is not None:
            lines.append(f"{name} {value:g} falls between {gap[0]:g} and {gap[1]:g}, neighbouring values of "
                         f"P(up) from {sample_count} sample paths: every threshold in between decides the same "
                         f"(use more samples or forecast.p_up: kernel)")
    return lines
