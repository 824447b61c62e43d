"""Kronos, the foundation model for financial candlesticks: checkpoint-compatible with the
published release, with exact KV-cached generation and probabilistic forecasts."""
from .configs import MODEL_CONFIGS, PAIRINGS, TOKENIZER_CONFIGS
from .generation import Sampling, generate_cached, generate_reference
from .hub import HUB_MODELS, CheckpointError, resolve_spec
from .model import Kronos
from .predictor import QUANTILES, Forecast, KronosPredictor
from .tokenizer import KronosTokenizer

__all__ = ["Kronos", "KronosTokenizer", "KronosPredictor", "Forecast", "Sampling", "CheckpointError",
           "generate_cached", "generate_reference", "resolve_spec", "HUB_MODELS", "MODEL_CONFIGS",
           "TOKENIZER_CONFIGS", "PAIRINGS", "QUANTILES"]
