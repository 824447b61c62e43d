"""Small data factories shared by tests."""
from __future__ import annotations

import numpy as np
import pandas as pd


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


TINY_TOKENIZER = dict(d_in=6, d_model=32, n_heads=2, ff_dim=64, n_enc_layers=2, n_dec_layers=2, ffn_dropout_p=0.0,
                      attn_dropout_p=0.0, resid_dropout_p=0.0, s1_bits=10, s2_bits=10, beta=0.05, gamma0=1.0,
                      gamma=1.1, zeta=0.05, group_size=4)
TINY_MODEL = dict(s1_bits=10, s2_bits=10, n_layers=2, d_model=32, n_heads=2, ff_dim=64, ffn_dropout_p=0.0,
                  attn_dropout_p=0.0, resid_dropout_p=0.0, token_dropout_p=0.0, learn_te=True)


def save_tiny_pair(directory, max_context: int = 128, seed: int = 0):
    """A random-weight Kronos pair directory (tokenizer/, model/, kronos.json) for fast tests."""
    import json
    from pathlib import Path

    import torch

    from kronos import Kronos, KronosTokenizer

    directory = Path(directory)
    torch.manual_seed(seed)
    KronosTokenizer(**TINY_TOKENIZER).save_pretrained(directory / "tokenizer")
    Kronos(**TINY_MODEL).save_pretrained(directory / "model")
    (directory / "kronos.json").write_text(json.dumps({"max_context": max_context}))
    return directory
