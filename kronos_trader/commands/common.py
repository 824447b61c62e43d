"""What every CLI command shares: the consoles, the --config option and ``friendly``
(expected errors as one line). Its own module so that commands need not import the CLI
that registers them."""
from __future__ import annotations

import functools
import warnings
from typing import Callable

import typer
from rich.console import Console

console = Console()
err_console = Console(stderr=True)


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    """Warnings from a command as 'warning: message', not Python's file, line and source."""
    return f"warning: {str(message).strip()}\n"


warnings.formatwarning = _one_line_warning


def _user_errors() -> tuple[type[BaseException], ...]:
    from kronos import CheckpointError
    from kronos_trader.config import ConfigError
    from kronos_trader.data import CandleDataError
    from kronos_trader.exchange.errors import ExchangeAdapterError
    from kronos_trader.store import StoreError

    return (ConfigError, CandleDataError, CheckpointError, StoreError, ExchangeAdapterError, ValueError,
            FileNotFoundError)


def friendly(command: Callable) -> Callable:
    """Turn expected errors into a one-line message and exit status 1."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except _user_errors() as exc:
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            err_console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper


ConfigOption = typer.Option(None, "--config", "-c", help="config.yaml to read (default: ./config.yaml if present)")
