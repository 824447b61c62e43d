"""Forecast scores: point errors, direction, CRPS and interval coverage.

Sample-based scores take samples on the LAST axis. CRPS uses the energy (ensemble) form
E|X - y| - E|X - X'| / 2; with `fair=True` the spread term averages over distinct pairs
only, an unbiased estimate of the CRPS of the distribution the samples come from, which
makes a 32-sample forecast comparable with a closed-form normal baseline.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["mae", "rmse", "direction_accuracy", "crps_ensemble", "crps_normal", "central_interval",
           "normal_interval", "coverage", "normal_ppf"]


def mae(pred, actual) -> float:
    return float(np.mean(np.abs(np.asarray(pred, float) - np.asarray(actual, float))))


def rmse(pred, actual) -> float:
    return float(np.sqrt(np.mean((np.asarray(pred, float) - np.asarray(actual, float)) ** 2)))


def direction_accuracy(pred_change, actual_change) -> float:
    """Share of cases whose predicted and actual moves have the same sign; cases where
    either is exactly 0 (no call, or no move) are left out. NaN when none is left."""
    p, a = np.sign(np.asarray(pred_change, float)), np.sign(np.asarray(actual_change, float))
    used = (p != 0) & (a != 0)
    return float(np.mean(p[used] == a[used])) if used.any() else float("nan")


def crps_ensemble(samples, actual, fair: bool = True) -> np.ndarray:
    """CRPS of each ensemble (samples on the last axis) against its outcome."""
    x = np.sort(np.asarray(samples, dtype=np.float64), axis=-1)
    y = np.asarray(actual, dtype=np.float64)
    m = x.shape[-1]
    skill = np.mean(np.abs(x - y[..., None]), axis=-1)
    if m < 2:
        return skill
    # sum over ordered pairs |x_i - x_j| = 2 * sum_i (2i - m - 1) x_(i), with x sorted, i = 1..m
    weights = 2 * np.arange(1, m + 1) - m - 1
    pair_sum = 2 * np.sum(weights * x, axis=-1)
    spread = pair_sum / (m * (m - 1) if fair else m * m)
    return skill - 0.5 * spread


def crps_normal(mu, sigma, actual) -> np.ndarray:
    """Closed-form CRPS of N(mu, sigma^2); sigma 0 gives the absolute error."""
    mu, sigma, y = (np.asarray(v, dtype=np.float64) for v in (mu, sigma, actual))
    safe = np.where(sigma > 0, sigma, 1.0)
    z = (y - mu) / safe
    pdf = np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    cdf = 0.5 * (1 + _erf(z / math.sqrt(2)))
    value = safe * (z * (2 * cdf - 1) + 2 * pdf - 1 / math.sqrt(math.pi))
    return np.where(sigma > 0, value, np.abs(y - mu))


def central_interval(samples, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper ends of the central `level` band of samples (last axis)."""
    lo, hi = np.quantile(np.asarray(samples, dtype=np.float64), [(1 - level) / 2, (1 + level) / 2], axis=-1)
    return lo, hi


def normal_ppf(p: float) -> float:
    """Standard normal quantile (Acklam's rational approximation, |error| < 1.2e-9)."""
    if not 0 < p < 1:
        raise ValueError(f"p must be in (0, 1), got {p}")
    a = (-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02, 1.383577518672690e+02,
         -3.066479806614716e+01, 2.506628277459239e+00)
    b = (-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02, 6.680131188771972e+01,
         -1.328068155288572e+01)
    c = (-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00, -2.549732539343734e+00,
         4.374664141464968e+00, 2.938163982698783e+00)
    d = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00, 3.754408661907416e+00)
    low = 0.02425
    if p < low:
        q = math.sqrt(-2 * math.log(p))
        return (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / \
            ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1)
    if p > 1 - low:
        return -normal_ppf(1 - p)
    q = p - 0.5
    r = q * q
    return (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q / \
        (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1)


def normal_interval(mu, sigma, level: float) -> tuple[np.ndarray, np.ndarray]:
    z = normal_ppf((1 + level) / 2)
    mu, sigma = np.asarray(mu, dtype=np.float64), np.asarray(sigma, dtype=np.float64)
    return mu - z * sigma, mu + z * sigma


def coverage(lower, upper, actual) -> float:
    """Share of outcomes inside [lower, upper]."""
    y = np.asarray(actual, dtype=np.float64)
    return float(np.mean((y >= np.asarray(lower)) & (y <= np.asarray(upper))))


def _erf(x: np.ndarray) -> np.ndarray:
    from math import erf

    return np.vectorize(erf, otypes=[np.float64])(x)
