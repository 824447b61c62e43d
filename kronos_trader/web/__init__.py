"""Web UI for kronos-trader: forecast workbench, backtest reports and paper-trading monitor.

`create_app(settings)` builds the FastAPI application; `kronos-trader web` serves it with
uvicorn on 127.0.0.1:7070 by default. Everything it serves is local (Plotly.js comes from
the installed `plotly` package), so it works offline.
"""
from __future__ import annotations

from .app import create_app

__all__ = ["create_app"]
