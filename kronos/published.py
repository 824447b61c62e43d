"""The published Kronos code itself, as a baseline and a parity oracle.

The published model code is on PyPI as `kronos-model-arch==0.1.0` (top-level package
`model`, MIT). Its dependency pins are old, so it is installed with `--no-deps` plus
`einops` (the `bench` extra and `.ci/run` do this). Benchmarks time it in the same run
as ours, and tests compare tokens and greedy forecasts with it. Nothing else in `kronos`
imports this module: the package never needs the published code to run.
"""
from __future__ import annotations

import importlib.util

import numpy as np
import torch

from .model import Kronos
from .tokenizer import KronosTokenizer

PACKAGE = "kronos-model-arch==0.1.0"
INSTALL_HINT = f"pip install --no-deps {PACKAGE} einops"


def available() -> bool:
    """Whether the published package (top-level `model`) and einops can be imported."""
    return importlib.util.find_spec("model") is not None and importlib.util.find_spec("einops") is not None


def _module():
    if not available():
        raise ImportError(f"the published Kronos code is not installed: {INSTALL_HINT}")
    import model.kronos  # the published package's own name

    return model.kronos


def published_pair(tokenizer: KronosTokenizer, model: Kronos):
    """The published classes built from the same configs and loaded with the same weights
    (strict), in eval mode."""
    pub = _module()
    p_tok = pub.KronosTokenizer(**tokenizer.config.to_dict())
    p_tok.load_state_dict(tokenizer.state_dict(), strict=True)
    p_model = pub.Kronos(**model.config.to_dict())
    p_model.load_state_dict(model.state_dict(), strict=True)
    return p_tok.eval(), p_model.eval()


@torch.no_grad()
def published_encode(p_tok, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The published tokenizer's (s1, s2) ids for normalised rows (B, T, 6)."""
    s1, s2 = p_tok.encode(x, half=True)
    return s1, s2


def published_forecast(p_tok, p_model, x: torch.Tensor, x_stamp: torch.Tensor, y_stamp: torch.Tensor,
                       max_context: int, pred_len: int, T: float = 1.0, top_k: int = 0, top_p: float = 0.9,
                       sample_count: int = 1) -> np.ndarray:
    """The published `auto_regressive_inference` (mean path in normalised space), (B, pred_len, 6)."""
    pub = _module()
    preds = pub.auto_regressive_inference(p_tok, p_model, x, x_stamp, y_stamp, max_context, pred_len, 5, T, top_k,
                                          top_p, sample_count, False)
    return preds[:, -pred_len:, :]
