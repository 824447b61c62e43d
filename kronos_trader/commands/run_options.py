"""What a run varies, as flags (freqtrade's names where it has them), and `show-config`:
the effective settings with where each came from (file, flag or default)."""
from __future__ import annotations

import functools
import inspect
import json
import re
from pathlib import Path
from typing import Any, Callable, Optional

import typer
import yaml

_TIMERANGE = re.compile(r"^(\d{8})?-(\d{8})?$")


def parse_timerange(text: str) -> tuple[str | None, str | None]:
    """'20240101-20240630' -> ('2024-01-01', '2024-06-30'); either side may be left open."""
    import pandas as pd

    match = _TIMERANGE.match(text.strip())
    if not match or not any(match.groups()):
        raise ValueError(f"--timerange {text!r}: expected YYYYMMDD-YYYYMMDD (either side may be empty)")
    days = []
    for part in match.groups():
        if part is None:
            days.append(None)
            continue
        try:
            days.append(pd.Timestamp(f"{part[:4]}-{part[4:6]}-{part[6:]}"))
        except ValueError:
            raise ValueError(f"--timerange {text!r}: {part} is not a date") from None
    if None not in days and days[1] < days[0]:
        raise ValueError(f"--timerange {text!r}: the end is before the start")
    return tuple(None if d is None else f"{d:%Y-%m-%d}" for d in days)  # type: ignore[return-value]


#: The flags a run varies, shared by `backtest` and `show-config`: name -> (type, option).
RUN_FLAGS: dict[str, tuple[Any, Any]] = {
    "data": (Optional[Path], typer.Option(None, help="CSV/Parquet/Feather candles (default: bundled sample)")),
    "start": (Optional[str], typer.Option(None, help="first bar, e.g. 2024-01-01")),
    "end": (Optional[str], typer.Option(None, help="last bar")),
    "strategy": (Optional[str], typer.Option(None, help="policy, module:Class (e.g. "
                                             "strategies.directional:Directional)")),
    "timerange": (Optional[str], typer.Option(None, help="YYYYMMDD-YYYYMMDD (either side may be empty)")),
    "fee": (Optional[float], typer.Option(None, help="commission per fill, a fraction (0.001 = 0.1%)")),
    "cash": (Optional[float], typer.Option(None, help="starting cash")),
    "lookback": (Optional[int], typer.Option(None, help="history bars per forecast")),
    "horizon": (Optional[int], typer.Option(None, help="bars forecast")),
    "samples": (Optional[int], typer.Option(None, help="sample paths per forecast")),
    "stop_loss": (Optional[float], typer.Option(None, help="stop-loss, a fraction of the entry price")),
    "take_profit": (Optional[float], typer.Option(None, help="take-profit, a fraction of the entry price")),
}


def run_overrides(strategy: str | None = None, timerange: str | None = None, fee: float | None = None,
                  cash: float | None = None, lookback: int | None = None, horizon: int | None = None,
                  samples: int | None = None, stop_loss: float | None = None,
                  take_profit: float | None = None, data: Path | None = None, start: str | None = None,
                  end: str | None = None) -> dict[str, Any]:
    """The dotted settings the run flags set (flags left out set nothing)."""
    if timerange and (start or end):
        raise ValueError("--timerange and --start/--end both set the span: give one of them")
    if timerange:
        start, end = parse_timerange(timerange)
    pairs = {"strategy.name": strategy, "data.start": start, "data.end": end, "costs.commission": fee,
             "backtest.cash": cash, "forecast.lookback": lookback, "forecast.horizon": horizon,
             "forecast.sample_count": samples, "risk.stop_loss": stop_loss, "risk.take_profit": take_profit,
             "data.path": str(data) if data else None}
    return {k: v for k, v in pairs.items() if v is not None}


def with_run_flags(command: Callable) -> Callable:
    """Give `command` the RUN_FLAGS options; it receives them mapped to settings as `overrides`
    (one definition and one mapping for every command that takes them)."""
    signature = inspect.signature(command)
    own = [p for p in signature.parameters.values() if p.name != "overrides"]
    added = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=kind)
             for name, (kind, option) in RUN_FLAGS.items()]

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        flags = {name: kwargs.pop(name, None) for name in RUN_FLAGS}
        return command(*args, overrides=run_overrides(**flags), **kwargs)

    wrapper.__signature__ = signature.replace(parameters=own + added)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {**command.__annotations__, **{p.name: p.annotation for p in added}}
    wrapper.__annotations__.pop("overrides", None)
    return wrapper


def parse_sets(items: list[str] | None) -> dict[str, Any]:
    """'forecast.horizon=12' (repeatable) -> {"forecast.horizon": 12}, values read as YAML."""
    out = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"--set {item!r}: expected SECTION.NAME=VALUE")
        out[name.strip()] = yaml.safe_load(value)
    return out


def _in_file(raw: dict, dotted: str) -> bool:
    node: Any = raw
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def setting_sources(config: Path | None, overrides: dict[str, Any]) -> list[dict[str, Any]]:
    """Every effective setting (dotted) with its value and source: "flag", "file PATH" or "default"."""
    from kronos_trader.backtest.run_catalog import dotted_leaves
    from kronos_trader.config import DEFAULT_CONFIG_PATH, load_settings

    settings = load_settings(config, overrides)
    file = Path(config) if config else DEFAULT_CONFIG_PATH
    raw = (yaml.safe_load(file.read_text()) or {}) if file.is_file() else {}
    flags = {k for k, v in overrides.items() if v is not None}
    rows = []
    for dotted, value in dotted_leaves(settings.model_dump(mode="json")).items():
        if any(dotted == f or dotted.startswith(f + ".") or f.startswith(dotted + ".") for f in flags):
            source = "flag"
        elif _in_file(raw, dotted):
            source = f"file {file}"
        else:
            source = "default"
        rows.append({"setting": dotted, "value": value, "source": source})
    return rows


def register(app: typer.Typer) -> None:
    from kronos_trader.commands.common import ConfigOption, console, friendly

    @app.command("show-config")
    @friendly
    @with_run_flags
    def show_config(
        config: Optional[Path] = ConfigOption,
        set_: Optional[list[str]] = typer.Option(None, "--set", help="SECTION.NAME=VALUE, as a flag would set it "
                                                 "(repeatable)"),
        as_json: bool = typer.Option(False, "--json", help="print JSON rows instead of a table"),
        overrides: dict[str, Any] | None = None,
    ) -> None:
        """Print the effective settings and where each came from (file, flag or default); takes the
        backtest's run flags, so it shows what that command line would run with."""
        rows = setting_sources(config, {**(overrides or {}), **parse_sets(set_)})
        if as_json:
            typer.echo(json.dumps(rows, indent=1, default=str))
            return
        from rich.table import Table

        table = Table(title="effective settings")
        for col in ("setting", "value", "source"):
            table.add_column(col)
        for row in rows:
            table.add_row(row["setting"], json.dumps(row["value"], default=str), row["source"])
        console.print(table)
