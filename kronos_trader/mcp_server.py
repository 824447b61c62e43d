"""A Model Context Protocol server (the official `mcp` SDK) so agents can ask for forecasts.

Tools: `forecast` (a stored series, the bundled sample or posted candles in; the summary
out), `backtest` (a short run on stored or sample data, not persisted; metrics and skill
out), `skill` (a stored run's forecast skill) and `paper_status` (a paper/live run's
positions, equity, last decision and gate). Resources: the latest backtest's summary and
the latest paper run's status. Everything is read-only; nothing places an order. Bad
input is a tool error with one line, never a traceback.
"""
from __future__ import annotations

import json
from typing import Any

from mcp.server.fastmcp import FastMCP
from mcp.server.fastmcp.exceptions import ToolError
from mcp.types import ToolAnnotations

from kronos_trader.config import Settings
from kronos_trader.text import one_line

READ_ONLY = ToolAnnotations(readOnlyHint=True, destructiveHint=False, openWorldHint=False)
MAX_BACKTEST_BARS = 2000


def _user_errors() -> tuple[type[BaseException], ...]:
    from kronos import CheckpointError
    from kronos_trader.data import CandleDataError
    from kronos_trader.store import StoreError

    return ValueError, CandleDataError, CheckpointError, StoreError, KeyError, FileNotFoundError


class Tools:
    """The tools' work, on one config; the model loads once per process (warm after the first call)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._store = None

    def store(self):
        from kronos_trader.store import open_store

        if self._store is None:
            self._store = open_store(self.settings.database.url)
        return self._store

    def model(self, name: str | None):
        from kronos_trader.forecasting.models import load_model
        from kronos_trader.web.services.models import model_choices

        m = self.settings.model
        if name is None or name == m.name:
            return load_model(m.name, m.device, m.max_context, m.precision)
        choices = model_choices(list(self.settings.web.model_dirs), m.name)
        choice = next((c for c in choices if c.id == name), None)
        if choice is None:
            raise ValueError(f"unknown model '{name}'; choose one of: {', '.join(c.id for c in choices)}")
        return load_model(choice.load_name, m.device, m.max_context, m.precision)

    def series(self, symbol: str | None, timeframe: str | None, source: str | None):
        """Stored candles of the series, else (BTC/USDT 1h) the bundled sample."""
        from kronos_trader.backtest.runner import load_backtest_candles

        data = self.settings.data.model_copy(update={
            "symbol": symbol or self.settings.data.symbol, "timeframe": timeframe or self.settings.data.timeframe,
            "source": source or self.settings.data.source, "path": None, "start": None, "sample_start": None})
        candles, label = load_backtest_candles(self.settings.model_copy(update={"data": data}), self.store())
        return candles, data.symbol, data.timeframe, label

    def forecast(self, candles: dict[str, list] | None, symbol: str | None, timeframe: str | None,
                 source: str | None, model: str | None, skill_windows: int, **sampling: Any) -> dict:
        from kronos_trader.data import infer_bar_interval
        from kronos_trader.serve import candles_from_columns, forecast_summary
        from kronos_trader.web.services.serialize import format_interval

        if candles is not None:
            columns = dict(candles)
            if "timestamps" not in columns:
                raise ValueError("candles needs 'timestamps' beside open, high, low, close (volume, amount optional)")
            unknown = set(columns) - {"timestamps", "open", "high", "low", "close", "volume", "amount"}
            if unknown:
                raise ValueError(f"candles: unknown column {sorted(unknown)[0]!r}")
            frame = candles_from_columns(columns.pop("timestamps"), columns, "candles")
            timeframe = timeframe or format_interval(infer_bar_interval(frame.index))
            symbol = symbol or "candles"
        else:
            frame, symbol, timeframe, _ = self.series(symbol, timeframe, source)
        return forecast_summary(self.settings, self.model(model), frame, symbol, timeframe, skill_windows,
                                **sampling)

    def backtest(self, symbol: str | None, timeframe: str | None, source: str | None, bars: int,
                 model: str | None) -> dict:
        from kronos_trader.backtest.report import summary_json
        from kronos_trader.backtest.runner import run_backtest
        from kronos_trader.forecasting.service import ForecastService

        if not 1 <= bars <= MAX_BACKTEST_BARS:
            raise ValueError(f"bars must be 1..{MAX_BACKTEST_BARS}, got {bars}")
        candles, symbol, timeframe, label = self.series(symbol, timeframe, source)
        lookback = self.settings.forecast.lookback
        candles = candles.iloc[-(bars + lookback - 1):]
        service = ForecastService.from_settings(self.settings, None, False, self.model(model))
        result = run_backtest(self.settings, candles, symbol, timeframe, None, progress=False, service=service)
        summary = json.loads(summary_json(result))
        skill = result.skill.verdict() if result.skill is not None else "no forecast resolved"
        return {"data": label, "symbol": symbol, "timeframe": timeframe, "bars": bars, "start": summary["start"],
                "end": summary["end"], "metrics": summary["metrics"], "forecast_skill": summary["forecast_skill"],
                "verdict": skill, "exit_reasons": summary["exit_reasons"], "warnings": summary["warnings"]}

    def skill(self, run_id: str) -> dict:
        from kronos_trader.evaluation.skill import SkillReport

        run = self.store().get_run(run_id)
        if run is None:
            raise ValueError(f"no run '{run_id}' in {self.store().url}")
        stored = (run.summary or {}).get("forecast_skill")
        if not stored:
            raise ValueError(f"run '{run_id}' ({run.kind}) has no forecast skill stored")
        report = SkillReport.from_dict(stored)
        return {"run_id": run.id, "kind": run.kind, "name": run.name, **report.to_dict(), "verdict": report.verdict()}

    def paper_status(self, run_id: str | None) -> dict:
        from kronos_trader.live.gate_state import gate_status
        from kronos_trader.live.status import find_run, run_status, status_dict

        store = self.store()
        run = find_run(store, run_id)
        if run is None or run.kind not in ("paper", "live"):
            raise ValueError(f"no paper or live run{' ' + run_id if run_id else ''} in {store.url}")
        return status_dict(run_status(store, run), gate_status(store, run.id))

    def latest_backtest(self) -> dict:
        runs = self.store().list_runs("backtest")
        if not runs:
            return {"note": f"no backtest stored in {self.store().url} yet: run `kronos-trader backtest`"}
        run = runs[0]
        return {"run_id": run.id, "name": run.name, "started_at": str(run.started_at), **(run.summary or {})}


def build_server(settings: Settings, port: int = 7071) -> FastMCP:
    """The MCP server on one config (streamable HTTP binds 127.0.0.1:`port`)."""
    tools = Tools(settings)
    server = FastMCP("kronos-trader", host="127.0.0.1", port=port, log_level="WARNING",
                     instructions="Kronos candlestick forecasts (quantiles, P(up)), short backtests and "
                                  "paper-trading status. Read-only: nothing here places orders. Forecast skill is "
                                  "scored against random-walk baselines; trust a forecast only where it beats them.")

    def guarded(work, *args, **kwargs) -> dict:
        try:
            return work(*args, **kwargs)
        except _user_errors() as exc:
            raise ToolError(one_line(exc)) from None

    @server.tool(annotations=READ_ONLY)
    def forecast(symbol: str | None = None, timeframe: str | None = None, source: str | None = None,
                 candles: dict[str, list[float | str | None]] | None = None, model: str | None = None,
                 horizon: int | None = None, lookback: int | None = None, sample_count: int | None = None,
                 seed: int | None = None, skill_windows: int = 0) -> dict:
        """Forecast the bars after the last one: pass `candles` ({"timestamps": [...], "open": [...], "high",
        "low", "close", optional "volume", "amount"}, oldest first), or a stored series by `symbol` and
        `timeframe` (BTC/USDT 1h falls back to the bundled synthetic sample). Returns bar stamps, the mean
        path, close quantiles, P(up) per step; `skill_windows` > 0 also scores that many recent forecasts
        against random-walk baselines."""
        return guarded(tools.forecast, candles, symbol, timeframe, source, model, skill_windows, horizon=horizon,
                       lookback=lookback, sample_count=sample_count, seed=seed)

    @server.tool(annotations=READ_ONLY)
    def backtest(symbol: str | None = None, timeframe: str | None = None, source: str | None = None,
                 bars: int = 300, model: str | None = None) -> dict:
        """Backtest the configured strategy over the last `bars` bars of a stored series (or the bundled
        sample); nothing is stored. Returns strategy and buy-and-hold metrics and the forecast skill."""
        return guarded(tools.backtest, symbol, timeframe, source, bars, model)

    @server.tool(annotations=READ_ONLY)
    def skill(run_id: str) -> dict:
        """The forecast-skill table of a stored backtest or paper run (CRPS skill against random walks,
        band coverage, direction hit rate with its 95% interval) and a one-line verdict."""
        return guarded(tools.skill, run_id)

    @server.tool(annotations=READ_ONLY)
    def paper_status(run_id: str | None = None) -> dict:
        """A paper/live run (default: the latest): equity, balances, open orders, per pair the position,
        last forecast and decision, and the skill gate's state."""
        return guarded(tools.paper_status, run_id)

    @server.resource("kronos://reports/backtest/latest", mime_type="application/json")
    def latest_backtest() -> str:
        """The latest stored backtest's summary: metrics, forecast skill, exit reasons."""
        return json.dumps(tools.latest_backtest(), default=str)

    @server.resource("kronos://reports/paper/latest", mime_type="application/json")
    def latest_paper() -> str:
        """The latest paper/live run's status."""
        try:
            return json.dumps(tools.paper_status(None), default=str)
        except ValueError as exc:
            return json.dumps({"note": one_line(exc)})

    return server
