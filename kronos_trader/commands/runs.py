"""`kronos-trader runs`: the stored backtests (name, data, span, key metrics); `runs show ID`
prints one run's metrics and settings, `runs compare A B` two runs side by side with the
settings they differ in. IDs may be given by a unique prefix."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

DbOption = typer.Option(None, "--db", help="SQLAlchemy database URL (default: database.url of the config)")


def _store(config, db):
    from kronos_trader.config import load_settings
    from kronos_trader.store import open_store

    return open_store(load_settings(config, {"database.url": db}).database.url)


def _pct(value) -> str:
    return "-" if value is None else f"{value:+.2%}"


def _num(value) -> str:
    return "-" if value is None else f"{value:,.2f}"


def register(app: typer.Typer) -> None:
    from kronos_trader.commands.common import ConfigOption, console, friendly

    runs_app = typer.Typer(help="Stored backtests: list, show one, compare two.", no_args_is_help=False,
                           context_settings={"help_option_names": ["-h", "--help"]})

    @runs_app.callback(invoke_without_command=True)
    @friendly
    def runs(ctx: typer.Context, config=ConfigOption, db: Optional[str] = DbOption,
             limit: int = typer.Option(30, help="newest runs shown"),
             as_json: bool = typer.Option(False, "--json", help="print JSON rows")) -> None:
        """List stored backtests, newest first."""
        if ctx.invoked_subcommand is not None:
            return
        from kronos_trader.backtest.run_catalog import catalog_row

        rows = [catalog_row(r) for r in _store(config, db).list_runs("backtest", limit=limit)]
        if as_json:
            typer.echo(json.dumps(rows, indent=1, default=str))
            return
        from rich.table import Table

        table = Table(title=f"stored backtests ({len(rows)} newest; `runs show ID` for one)")
        for col in ("id", "name", "data", "span", "return", "Sharpe", "max dd", "trades"):
            table.add_column(col, justify="right" if col in ("return", "Sharpe", "max dd", "trades") else "left",
                             no_wrap=col in ("id", "name"))
        for r in rows:
            span = (f"{str(r['first_bar'])[:10]}..{str(r['last_bar'])[:10]}" if r["first_bar"]
                    else f"{r['bars'] or '?'} bars")
            name = r["name"] if r["status"] == "finished" else f"{r['name']} ({r['status']})"
            table.add_row(r["id"][:8], name, Path(str(r["data"])).name, span, _pct(r["total_return"]),
                          _num(r["sharpe"]), _pct(r["max_drawdown"]), "-" if r["trades"] is None else str(r["trades"]))
        console.print(table)

    @runs_app.command("show")
    @friendly
    def show(run_id: str = typer.Argument(..., help="run id or a unique prefix"), config=ConfigOption,
             db: Optional[str] = DbOption) -> None:
        """One run: its metrics beside buy-and-hold, its data and its settings."""
        from kronos_trader.backtest.run_catalog import catalog_row, find_run, settings_diff

        run = find_run(_store(config, db), run_id)
        row = catalog_row(run)
        console.print(f"[bold]{row['name']}[/bold]  id {run.id}  {run.status}  started {row['started_at']}",
                      highlight=False)
        console.print(f"data: {row['data']} {row['symbol']} {row['timeframe']}, {row['bars']} bars "
                      f"{row['first_bar'] or ''} .. {row['last_bar'] or ''}; model {row['model']}", highlight=False)
        console.print(_metrics_table(run.summary or {}, {"strategy": "Strategy", "buy_and_hold": "Buy & hold"}))
        from rich.table import Table

        table = Table(title="settings")
        table.add_column("setting")
        table.add_column("value")
        for key, value, _ in settings_diff(run.config, {}):
            table.add_row(key, json.dumps(value, default=str))
        console.print(table)

    @runs_app.command("compare")
    @friendly
    def compare(a: str = typer.Argument(..., help="run id or prefix"), b: str = typer.Argument(..., help="run id "
                "or prefix"), config=ConfigOption, db: Optional[str] = DbOption) -> None:
        """Two runs side by side: metrics, then the settings they differ in."""
        from rich.table import Table

        from kronos_trader.backtest.run_catalog import catalog_row, find_run, settings_diff

        store = _store(config, db)
        left, right = find_run(store, a), find_run(store, b)
        names = [f"{catalog_row(r)['name']} ({r.id[:8]})" for r in (left, right)]
        summaries = {"a": _dict(left.summary).get("strategy") or {}, "b": _dict(right.summary).get("strategy") or {}}
        console.print(_metrics_table({"a": summaries["a"], "b": summaries["b"]}, {"a": names[0], "b": names[1]}))
        table = Table(title="settings that differ")
        for col in ("setting", names[0], names[1]):
            table.add_column(col)
        diff = settings_diff(left.config, right.config)
        for key, x, y in diff:
            table.add_row(key, json.dumps(x, default=str), json.dumps(y, default=str))
        console.print(table if diff else "the two runs have the same settings")

    app.add_typer(runs_app, name="runs")


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def _metrics_table(summary: dict, columns: dict[str, str]):
    """The backtest report's metric rows, one column per entry of `columns` (keys of `summary`)."""
    from rich.table import Table

    from kronos_trader.backtest.report import ROWS, format_metric

    table = Table(title="metrics")
    table.add_column("Metric")
    for title in columns.values():
        table.add_column(title, justify="right")
    for key, label, kind in ROWS:
        values = [_dict(summary.get(col)).get(key) for col in columns]
        if all(v is None for v in values):
            continue
        table.add_row(label, *[format_metric(v, kind) for v in values])
    return table
