"""Kronos, the foundation model for financial candlesticks: checkpoint-compatible with the
published release, with exact KV-cached generation and probabilistic forecasts.

The plain model (`modules`, `model`, `tokenizer`) computes what the published code computes;
the fast path (`fast`, `linear`) runs generation; `KronosPredictor(cached=...)` chooses."""
from .runtime import configure_waits

configure_waits()  # before torch loads its OpenMP runtime (see runtime.py)

from .configs import HUB_MODELS, MODEL_CONFIGS, TOKENIZER_CONFIGS, KronosConfig, TokenizerConfig
from .generation import Sampling, generate_cached, generate_reference, generate_tokens
from .hub import CheckpointError, resolve_spec
from .model import Kronos
from .predictor import QUANTILES, Forecast, KronosPredictor
from .tokenizer import KronosTokenizer

__all__ = ["Kronos", "KronosTokenizer", "KronosPredictor", "KronosConfig", "TokenizerConfig", "Forecast", "Sampling",
           "CheckpointError", "generate_cached", "generate_reference", "generate_tokens", "resolve_spec",
           "HUB_MODELS", "MODEL_CONFIGS", "TOKENIZER_CONFIGS", "QUANTILES"]
