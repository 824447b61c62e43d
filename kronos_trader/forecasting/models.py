"""Model loading for the trader: a named or local Kronos pair and its identity.

The identity (name + a hash of the weights) keys stored forecasts, so a changed checkpoint
never reuses forecasts made by another.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache

import torch

from kronos import KronosPredictor


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
    # the service warns once per configuration (`window_warnings`), not the predictor per call
    predictor = KronosPredictor.from_pretrained(name, device=resolve_device(device), precision=precision,
                                                warn_window=False)
    if max_context is not None:
        predictor.max_context = min(predictor.max_context, max_context)
    suffix = "" if precision == "float32" else f"+{precision}"
    return LoadedModel(predictor, name, f"{name}@{weights_hash(predictor)[:16]}{suffix}",
                       predictor.trained_window)


