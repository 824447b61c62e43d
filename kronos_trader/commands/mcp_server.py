"""`kronos-trader mcp`: serve forecasts, short backtests, skill and paper status to agents
over the Model Context Protocol (stdio for a local agent, or streamable HTTP on 127.0.0.1).

    kronos-trader mcp                         # stdio: the agent starts it as a subprocess
    kronos-trader mcp --transport http        # http://127.0.0.1:7071/mcp
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from kronos_trader.commands.common import ConfigOption, err_console, friendly


def register(app: typer.Typer) -> None:
    app.command("mcp")(friendly(mcp))


def mcp(
    config: Optional[Path] = ConfigOption,
    transport: str = typer.Option("stdio", help="stdio, or http (streamable HTTP on 127.0.0.1)"),
    port: int = typer.Option(7071, min=1, max=65535, help="port for --transport http"),
    db: Optional[str] = typer.Option(None, help="database URL (default: database.url)"),
    model: Optional[str] = typer.Option(None, help="model name or directory (default: model.name)"),
) -> None:
    """Model Context Protocol server for agents: tools forecast, backtest, skill, paper_status (read-only)."""
    from kronos_trader.config import ConfigError, load_settings

    if transport not in ("stdio", "http"):
        raise ConfigError(f"--transport must be stdio or http (got {transport!r})")
    try:
        from kronos_trader.mcp_server import build_server
    except ImportError as exc:
        raise ConfigError(f"the MCP server needs the mcp SDK ({exc.name} is missing): "
                          f"pip install 'kronos-trader[mcp]'") from None
    settings = load_settings(config, {"database.url": db, "model.name": model})
    server = build_server(settings, port)
    if transport == "http":
        err_console.print(f"kronos-trader MCP server on http://127.0.0.1:{port}/mcp (streamable HTTP; Ctrl+C stops)",
                          highlight=False)
        server.run("streamable-http")
    else:
        server.run("stdio")
