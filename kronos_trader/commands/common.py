"""What every CLI command shares: the consoles, the --config option and ``friendly``
(expected errors and warnings as one line). Its own module so that commands need not
import the CLI that registers them."""
from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import sys
import warnings
from typing import Any, Callable, Iterator

import typer
from rich.console import Console

LOG_WIDTH = 400  # off a terminal: wide enough that no table is cut to 80 columns ("Kron…")


def make_console(stderr: bool = False) -> Console:
    """A terminal gets rich's own width; a pipe, a log file or cron mail gets tables at
    their full width (rich would cut them to 80 columns) unless COLUMNS says otherwise."""
    stream = sys.stderr if stderr else sys.stdout
    on_terminal = hasattr(stream, "isatty") and stream.isatty()
    return Console(stderr=stderr, width=None if on_terminal or os.environ.get("COLUMNS") else LOG_WIDTH)


console = make_console()
err_console = make_console(stderr=True)


def print_json(data: Any) -> None:
    """Machine-readable output (`--json`): one JSON document on stdout, nothing else there
    (NaN and infinities as null: they are not JSON). `data` may be JSON text already."""
    text = data if isinstance(data, str) else json.dumps(_finite(data), indent=2, default=str)
    sys.stdout.write(text.rstrip("\n") + "\n")
    sys.stdout.flush()


def _finite(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@contextlib.contextmanager
def one_line_warnings() -> Iterator[None]:
    """Warnings as one `warning: ...` line on stderr (no source line), each message once: how
    every command shows warnings (`friendly` wraps most; `train`, `web` and `evaluate`, which
    print their own errors, use this directly)."""

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        err_console.print(f"[yellow]warning:[/yellow] {message}", highlight=False, soft_wrap=True)

    with warnings.catch_warnings():
        warnings.simplefilter("once", UserWarning)
        warnings.showwarning = show
        yield


def _user_errors() -> tuple[type[BaseException], ...]:
    from kronos import CheckpointError
    from kronos_trader.config import ConfigError
    from kronos_trader.data import CandleDataError
    from kronos_trader.exchange.errors import ExchangeAdapterError
    from kronos_trader.store import StoreError

    return (ConfigError, CandleDataError, CheckpointError, StoreError, ExchangeAdapterError, ValueError,
            FileNotFoundError, FileExistsError)


def friendly(command: Callable) -> Callable:
    """Turn expected errors into a one-line message and exit status 1."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            with one_line_warnings():
                return command(*args, **kwargs)
        except _user_errors() as exc:
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            err_console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper


ConfigOption = typer.Option(None, "--config", "-c", help="config.yaml to read (default: ./config.yaml if present)")
