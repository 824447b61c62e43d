"""`kronos-trader web`: serve the web UI (forecast workbench, backtests, paper trading).

    kronos-trader web                      # http://127.0.0.1:7070
    kronos-trader web --port 8080 --db sqlite:///other.db
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    """Add the `web` command to the main CLI."""
    app.command("web", help="Serve the web UI: forecast workbench, backtest reports, paper-trading monitor.")(web)


def web(
    host: Optional[str] = typer.Option(None, "--host", help="address to bind (default: web.host, 127.0.0.1)"),
    port: Optional[int] = typer.Option(None, "--port", min=1, max=65535, help="port (default: web.port, 7070)"),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="settings file (default: ./config.yaml)"),
    db: Optional[str] = typer.Option(None, "--db", help="database URL (default: database.url)"),
) -> None:
    from kronos_trader.commands.common import make_console, one_line_warnings
    from kronos_trader.config import ConfigError, load_settings

    err = make_console(stderr=True)
    try:
        settings = load_settings(config, {"web.host": host, "web.port": port, "database.url": db})
    except ConfigError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    try:
        import uvicorn

        from kronos_trader.web import create_app
    except ImportError as exc:
        err.print(f"[red]error:[/red] the web UI needs fastapi and uvicorn ({exc.name} is missing): "
                  f"pip install 'fastapi' 'uvicorn'")
        raise typer.Exit(1) from None
    w = settings.web
    if w.host not in ("127.0.0.1", "localhost", "::1"):
        if not (w.api_key_env and os.environ.get(w.api_key_env)):
            err.print(f"[red]error:[/red] binding {w.host} needs an API key: set web.api_key_env to the name of an "
                      f"environment variable and put the key in it (only loopback is served without one)")
            raise typer.Exit(2)
        err.print(f"[yellow]warning:[/yellow] binding {w.host}: every page and the API need the key "
                  f"(${w.api_key_env}); the traffic is plain HTTP, so put TLS in front beyond a trusted network")
    shown = f"[{w.host}]" if ":" in w.host else w.host
    err.print(f"kronos-trader web UI on http://{shown}:{w.port}  (Ctrl+C to stop)")
    try:
        with one_line_warnings():
            uvicorn.run(create_app(settings), host=w.host, port=w.port, log_level="warning")
    except OSError as exc:
        err.print(f"[red]error:[/red] cannot serve on {w.host}:{w.port}: {exc.strerror or exc}")
        raise typer.Exit(1) from None
