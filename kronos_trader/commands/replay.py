"""`kronos-trader replay RUN_ID`: where a paper or live run parts from its backtest."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    from kronos_trader.commands.common import ConfigOption, console, friendly

    @app.command()
    @friendly
    def replay(
        run_id: str = typer.Argument(..., help="the paper or live run to replay"),
        config: Optional[Path] = ConfigOption,
        db: Optional[str] = typer.Option(None, help="SQLAlchemy database URL"),
    ) -> None:
        """Rerun a paper/live run's stored candles through the backtest with the run's settings
        and list every bar where the decision, target or order differs, with the reason."""
        from rich.table import Table

        from kronos_trader.backtest.replay import replay_run
        from kronos_trader.config import load_settings
        from kronos_trader.store import open_store

        settings = load_settings(config, {"database.url": db})
        store = open_store(settings.database.url)
        differences = replay_run(store, run_id, progress=True)
        if not differences:
            console.print(f"run {run_id}: no difference from the backtest of its candles", highlight=False)
            return
        table = Table(title=f"run {run_id}: {len(differences)} bar(s) differ from the backtest")
        for column in ("pair", "bar (close)", "what", "run", "backtest", "reason"):
            table.add_column(column, overflow="fold")
        for d in differences:
            table.add_row(d.symbol, f"{d.bar_time:%Y-%m-%d %H:%M}", d.what, d.run, d.backtest, d.reason)
        console.print(table)
