"""`kronos-trader sweep`: search strategy and risk parameters over stored forecasts.

The space, sampler, objective, walk-forward split and executor come from the `sweep:`
section of config.yaml; flags override them. `--param NAME=a,b,c` gives a list of values,
`--param NAME=low:high[:step]` a range.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
import yaml


def parse_param(text: str) -> tuple[str, Any]:
    """'strategy.params.long_threshold=0.5:0.7:0.05' -> (name, {low, high, step}); 'x=a,b' -> (name, [a, b])."""
    name, sep, values = text.partition("=")
    if not sep or not name.strip() or not values.strip():
        raise ValueError(f"--param {text!r}: expected NAME=v1,v2,... or NAME=low:high[:step]")
    if ":" in values and "," not in values:
        parts = [yaml.safe_load(v) for v in values.split(":")]
        if len(parts) not in (2, 3):
            raise ValueError(f"--param {text!r}: a range is low:high or low:high:step")
        return name.strip(), dict(zip(("low", "high", "step"), parts))
    return name.strip(), [yaml.safe_load(v) for v in values.split(",")]


def register(app: typer.Typer) -> None:
    from kronos_trader.commands.common import ConfigOption, console, friendly

    @app.command()
    @friendly
    def sweep(
        config: Optional[Path] = ConfigOption,
        param: Optional[list[str]] = typer.Option(None, help="NAME=v1,v2 or NAME=low:high[:step] (repeatable; "
                                                  "replaces sweep.params)"),
        sampler: Optional[str] = typer.Option(None, help="grid or tpe"),
        trials: Optional[int] = typer.Option(None, help="TPE trials"),
        objective: Optional[str] = typer.Option(None, help="sharpe, sortino, calmar, total_return, annual_return"),
        max_drawdown: Optional[float] = typer.Option(None, help="drawdown cap, e.g. 0.2"),
        walk_forward: Optional[float] = typer.Option(None, help="optimise on this fraction, score on the rest"),
        name: Optional[str] = typer.Option(None, help="study name (resumes a study of that name)"),
        symbols: Optional[str] = typer.Option(None, help="comma-separated symbols, each optionally SYMBOL=FILE"),
        data: Optional[Path] = typer.Option(None, help="candle file (one symbol)"),
        symbol: Optional[str] = typer.Option(None),
        timeframe: Optional[str] = typer.Option(None),
        start: Optional[str] = typer.Option(None),
        end: Optional[str] = typer.Option(None),
        model: Optional[str] = typer.Option(None),
        db: Optional[str] = typer.Option(None, help="SQLAlchemy URL (forecasts and the study)"),
        executor: Optional[str] = typer.Option(None, help="local or ray"),
        ray_address: Optional[str] = typer.Option(None, help="host:port of a Ray cluster"),
        workers: Optional[int] = typer.Option(None, help="trials and forecast shards at once on Ray (locally: "
                                              "start the same command in more processes)"),
        screen: Optional[int] = typer.Option(None, help="screen the grid with the vectorised replay, re-run this "
                                             "many best points through Backtrader"),
        top: int = typer.Option(10, help="trials shown"),
        progress: bool = typer.Option(True, help="show progress bars"),
        refit_every: Optional[str] = typer.Option(None, help="trade on walk-forward fine-tuned folds: refit every N "
                                                             "bars or period (30D)"),
        train_bars: Optional[int] = typer.Option(None, help="bars before each refit a fold trains on"),
    ) -> None:
        """Grid or Optuna TPE search over strategy and risk parameters; resumable."""
        from kronos_trader.config import load_settings
        from kronos_trader.store import open_store

        overrides = {"data.path": str(data) if data else None, "data.symbol": symbol, "data.timeframe": timeframe,
                     "data.start": start, "data.end": end, "model.name": model, "database.url": db,
                     "data.symbols": symbols, "sweep.sampler": sampler, "sweep.trials": trials,
                     "sweep.objective": objective, "sweep.max_drawdown": max_drawdown,
                     "sweep.walk_forward": walk_forward, "sweep.name": name, "sweep.executor": executor,
                     "sweep.ray_address": ray_address, "sweep.workers": workers,
                     "sweep.screen": screen,
                     "finetune.refit_every": refit_every, "finetune.train_bars": train_bars}
        if param:
            overrides["sweep.params"] = dict(parse_param(p) for p in param)
        settings = load_settings(config, overrides)
        if settings.sweep.executor == "local" and settings.sweep.workers > 1:
            console.print(f"note: sweep.workers {settings.sweep.workers} applies to --executor ray; the local "
                          f"executor runs one trial at a time. To use more cores, run this same command in more "
                          f"terminals (or machines on one database): they share the study.")
        from kronos_trader.sweep.report import load_sweep_data, print_sweep
        from kronos_trader.sweep.study import run_sweep

        summary = run_sweep(settings, load_sweep_data(settings, open_store(settings.database.url)), progress)
        print_sweep(summary, settings, console, top)

    @app.command("sweep-dashboard")
    @friendly
    def sweep_dashboard(
        config: Optional[Path] = ConfigOption,
        db: Optional[str] = typer.Option(None, help="SQLAlchemy URL of the project database"),
        host: str = typer.Option("127.0.0.1", help="address to bind (this machine only by default)"),
        port: int = typer.Option(8080),
    ) -> None:
        """Optuna's dashboard on the stored sweeps. They live in the project database's journal
        table, which `optuna-dashboard URL` cannot read (it expects Optuna's own tables)."""
        from kronos_trader.config import load_settings
        from kronos_trader.store import safe_url
        from kronos_trader.sweep.storage import study_storage

        try:
            import optuna_dashboard
        except ImportError:
            raise ValueError("sweep-dashboard needs optuna-dashboard: pip install -e '.[dashboard]'") from None
        settings = load_settings(config, {"database.url": db})
        storage = study_storage(settings.database.url)
        console.print(f"optuna-dashboard for the sweeps in {safe_url(settings.database.url)} on "
                      f"http://{host}:{port} (Ctrl-C stops it)")
        optuna_dashboard.run_server(storage, host=host, port=port)
