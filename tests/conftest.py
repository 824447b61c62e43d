"""Shared fixtures: small random-weight Kronos models built from the official configs."""
from __future__ import annotations

import pandas as pd
import pytest
import torch

from factories import make_candles
from kronos import MODEL_CONFIGS, TOKENIZER_CONFIGS, Kronos, KronosTokenizer

pytest_plugins = ["conftest_postgres"]


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
