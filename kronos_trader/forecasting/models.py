"""Model loading for the trader: a named or local Kronos pair and its identity.

The identity (name + a hash of the weights) keys stored forecasts, so a changed checkpoint
never reuses forecasts made by another.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

from kronos import KronosPredictor
from kronos.hub import BUNDLED_DIR, PAIR_FILE


@dataclass(frozen=True)
class LoadedModel:
    predictor: KronosPredictor
    name: str
    model_id: str  # name@sha256-prefix of the weights
    trained_window: tuple[int, int] | None = None  # (lookback, horizon) its card says it was trained on

    @property
    def max_context(self) -> int:
        return self.predictor.max_context

    @property
    def precision(self) -> str:
        return "bf16" if self.predictor.dtype == torch.bfloat16 else "float32"


def resolve_device(device: str = "auto") -> str:
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"model.device is {device!r} but this torch build has no usable CUDA device "
                         f"(torch {torch.__version__}); use cpu or auto")
    if device != "auto":
        return device
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def weights_hash(predictor: KronosPredictor) -> str:
    """sha256 over the tokenizer's and model's tensors (names, shapes and bytes)."""
    digest = hashlib.sha256()
    for module in (predictor.tokenizer, predictor.model):
        for key, tensor in sorted(module.state_dict().items()):
            digest.update(key.encode())
            digest.update(str(tuple(tensor.shape)).encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


@lru_cache(maxsize=4)
def load_model(name: str, device: str = "auto", max_context: int | None = None,
               precision: str = "float32") -> LoadedModel:
    """Load a pair by name ('kronos-nano', 'kronos-small', ...) or directory, once per process.
    Reduced precision changes the forecasts, so it is part of the model's identity."""
    predictor = KronosPredictor.from_pretrained(name, device=resolve_device(device), precision=precision)
    predictor.trained_window = None  # the service warns once per configuration (`window_warnings`), not per call
    if max_context is not None:
        predictor.max_context = min(predictor.max_context, max_context)
    suffix = "" if precision == "float32" else f"+{precision}"
    return LoadedModel(predictor, name, f"{name}@{weights_hash(predictor)[:16]}{suffix}", trained_window(name))


def trained_window(name: str) -> tuple[int, int] | None:
    """(lookback, horizon) of the training windows, where the pair's card (`kronos.json`:
    ``"trained_window": {"lookback": 256, "horizon": 32}``) states them."""
    for directory in (BUNDLED_DIR / name.lower(), Path(name).expanduser()):
        card = directory / PAIR_FILE
        if card.is_file():
            try:
                window = json.loads(card.read_text()).get("trained_window") or {}
                return int(window["lookback"]), int(window["horizon"])
            except (ValueError, KeyError, TypeError, AttributeError):
                return None
    return None
