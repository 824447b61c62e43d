"""Numbers for people: prices and price errors with the digits their level needs."""
from __future__ import annotations

import math

import numpy as np

__all__ = ["price_digits", "format_significant", "round_significant"]


def price_digits(prices) -> int:
    """Decimals that keep about 6 significant digits at this price level: 2 for BTC at
    60,000, 5 for EUR/USD at 1.23456, 8 for a coin at 0.00012345."""
    values = np.abs(np.asarray(prices, dtype=float)).ravel()
    values = values[np.isfinite(values) & (values > 0)]
    if not len(values):
        return 2
    return int(min(12, max(2, 5 - math.floor(math.log10(float(np.median(values)))))))


def format_significant(value: float, digits: int = 4) -> str:
    """`value` with `digits` significant digits and no exponent: 523.5, 0.0004213."""
    if value is None or not math.isfinite(value):
        return "n/a"
    if value == 0:
        return "0"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(value))))
    return f"{value:,.{decimals}f}"


def round_significant(values, digits: int = 12) -> np.ndarray:
    """Values rounded to `digits` significant digits, for stored and served forecasts: compact,
    and as precise at 0.0000123456789 as at 65,000.1234567 (fixed decimals are not)."""
    a = np.asarray(values, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        magnitude = np.floor(np.log10(np.abs(np.where(a == 0, 1.0, a))))
        scale = 10.0 ** (digits - 1 - magnitude)
        out = np.round(a * scale) / scale
    return np.where(np.isfinite(out), out, a)
