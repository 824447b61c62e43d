"""kronos-trader: backtests and paper trading driven by Kronos forecasts.

OpenMP's idle threads must sleep rather than spin on a busy machine, and libgomp reads its
wait policy once, when torch loads; `kronos` sets it on import (kronos/runtime.py), but most
commands import torch before kronos, so the policy is set here too (without importing
torch: `kronos_trader.store` stays light).
"""
import os as _os
import sys as _sys

if "torch" not in _sys.modules:
    _os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.2.0"  # the one place: pyproject.toml reads it (tool.setuptools.dynamic)
