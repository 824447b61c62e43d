"""The bundled sample: synthetic BTC/USDT 1h candles at Q4-2024-like prices, made by
`scripts/make_sample_data.py` so demos and tests run offline.

Its prices look like a real market's, so every output made from it (console, equity.png,
chart.html, summary.json, forecast tables and charts) says it is synthetic: frames loaded
from the sample carry ``attrs["synthetic"]``, which pandas keeps through slicing.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

__all__ = ["SAMPLE_DATA_PATH", "SYNTHETIC_LABEL", "is_sample_path", "is_synthetic", "mark_synthetic",
           "titled"]

# Located relative to this package so it works from a checkout or an install.
SAMPLE_DATA_PATH: Path = Path(__file__).resolve().parent.parent / "assets" / "sample" / "BTCUSDT-1h.csv"
SYNTHETIC_LABEL = "synthetic sample, not market prices"


def is_sample_path(path) -> bool:
    try:
        return Path(path).resolve() == SAMPLE_DATA_PATH
    except (OSError, TypeError):
        return False


def mark_synthetic(frame: pd.DataFrame) -> pd.DataFrame:
    frame.attrs["synthetic"] = True
    return frame


def is_synthetic(frame) -> bool:
    return bool(getattr(frame, "attrs", {}).get("synthetic"))


def titled(name: str, frame) -> str:
    """`name` (e.g. "BTC/USDT 1h"), with "(synthetic sample, not market prices)" when
    `frame` came from the bundled sample."""
    return f"{name} ({SYNTHETIC_LABEL})" if is_synthetic(frame) else name
