"""Shared fixtures: small random-weight Kronos models built from the official configs."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from kronos import MODEL_CONFIGS, TOKENIZER_CONFIGS, Kronos, KronosTokenizer


def make_candles(n: int, seed: int = 0, start: str = "2024-01-01", freq: str = "h") -> pd.DataFrame:
    """A random-walk OHLCV frame with a DatetimeIndex."""
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    open_ = np.r_[close[0], close[:-1]]
    spread = np.abs(rng.normal(0, 0.004, n)) * close
    return pd.DataFrame({"open": open_, "high": np.maximum(open_, close) + spread,
                         "low": np.minimum(open_, close) - spread, "close": close,
                         "volume": rng.gamma(2.0, 50.0, n)},
                        index=pd.date_range(start, periods=n, freq=freq, name="timestamps"))


@pytest.fixture(scope="session")
def mini_pair() -> tuple[KronosTokenizer, Kronos]:
    """Kronos-mini architecture with its 2k tokenizer, random weights, eval mode."""
    torch.manual_seed(0)
    tokenizer = KronosTokenizer(**TOKENIZER_CONFIGS["Kronos-Tokenizer-2k"]).eval()
    model = Kronos(**MODEL_CONFIGS["Kronos-mini"]).eval()
    return tokenizer, model


@pytest.fixture
def candles() -> pd.DataFrame:
    return make_candles(200)
