"""`kronos-trader paper` (paper/live trading on a schedule) and `kronos-trader status`."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    from kronos_trader.commands.common import ConfigOption, console, friendly

    @app.command()
    @friendly
    def paper(
        config: Optional[Path] = ConfigOption,
        once: bool = typer.Option(False, "--once", help="run one cycle for the candle that closed last, then exit"),
        adopt: bool = typer.Option(False, "--adopt", help="live: a new run takes what the account holds as its "
                                   "position (and cancels open kronos-trader orders no database knows)"),
        live: bool = typer.Option(False, "--live", help="send real orders (also needs paper.live: true)"),
        run_id: Optional[str] = typer.Option(None, "--run-id", help="resume (or create) this run"),
        new: bool = typer.Option(False, "--new", help="start a new run instead of resuming the last one"),
        fill: str = typer.Option("next_open", help="paper fills: next_open (the backtest's rule) or ticker"),
        clock: str = typer.Option("exchange", help="'now' from the exchange's server time or the local clock"),
        db: Optional[str] = typer.Option(None, help="SQLAlchemy database URL"),
        model: Optional[str] = typer.Option(None, help="model name or directory"),
        log_level: str = typer.Option("INFO", help="DEBUG, INFO, WARNING or ERROR"),
    ) -> None:
        """Trade the configured pairs on paper (or live), one cycle after each candle close."""
        from kronos_trader.config import ConfigError, load_settings
        from kronos_trader.live import FILL_MODES, LiveRunner
        from kronos_trader.live.scheduler import build_scheduler

        levels = ("DEBUG", "INFO", "WARNING", "ERROR")
        if log_level.upper() not in levels:
            raise ConfigError(f"--log-level must be one of {', '.join(levels)} (got {log_level!r})")
        level = getattr(logging, log_level.upper())
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        logging.getLogger("alembic").setLevel(max(level, logging.WARNING))  # migrations: no INFO chatter
        settings = load_settings(config, {"database.url": db, "model.name": model})
        if fill.replace("-", "_") not in FILL_MODES:
            raise ConfigError(f"--fill must be one of {', '.join(FILL_MODES)}")
        if clock not in ("exchange", "local"):
            raise ConfigError("--clock must be exchange or local")
        if live and not settings.paper.live:
            raise ConfigError("--live needs paper.live: true in the config (both are required for real orders)")
        if settings.paper.live and not live:
            console.print("[yellow]paper.live is set but --live was not given: trading on paper[/yellow]")
        runner = LiveRunner(settings, live=live, run_id=run_id, new_run=new, fill=fill.replace("-", "_"),
                            clock=clock, adopt=adopt).start()
        pairs = ", ".join(f"{p.symbol} {p.timeframe}" for p in settings.paper.pairs)
        console.print(f"{runner.kind} run [bold]{runner.run_id}[/bold] on {settings.paper.exchange}: {pairs} "
                      f"(database {runner.store.url})", highlight=False)
        if once:
            try:
                reports = runner.run_cycle()
                unsettled = runner.unsettled()
            finally:
                runner.close()
            for r in reports:
                retried = f" (+{len(r.retried)} sent again after a stop)" if r.retried else ""
                console.print(f"{r.timeframe} candle {r.boundary}: {r.decisions} decision(s), {len(r.orders)} "
                              f"order(s){retried}, {len(r.rejected)} rejected, {r.fills} fill(s) in "
                              f"{r.timings.get('total', 0.0):.2f}s", highlight=False)
                for reason in r.skipped:
                    console.print(f"  [yellow]skipped:[/yellow] {reason}", highlight=False)
                for reason in r.undecided:
                    console.print(f"  [red]could not decide:[/red] {reason}", highlight=False)
            for cid in unsettled:
                console.print(f"  [red]order not settled:[/red] {cid} (unknown or expired)", highlight=False)
            if not reports or unsettled or any(r.undecided for r in reports):  # cron users need to know
                raise typer.Exit(1)
            return
        scheduler = build_scheduler(runner, blocking=True)
        for job in (j for j in scheduler.get_jobs() if j.id.startswith("cycle-")):
            trigger = job.trigger
            console.print(f"{job.name}: every {trigger.interval}, {settings.paper.delay_seconds:g}s after each "
                          f"candle close", highlight=False)
        console.print("running; Ctrl-C stops (the run resumes from the database on the next start)")
        try:
            scheduler.start()
        except (KeyboardInterrupt, SystemExit):
            console.print("stopped")
        finally:
            runner.close()

    @app.command()
    @friendly
    def status(
        config: Optional[Path] = ConfigOption,
        run_id: Optional[str] = typer.Option(None, "--run-id", help="run to show (default: the latest paper/live run)"),
        db: Optional[str] = typer.Option(None, help="SQLAlchemy database URL"),
    ) -> None:
        """Positions, equity, last forecast and last error per pair of a paper/live run."""
        from rich.table import Table

        from kronos_trader.config import load_settings
        from kronos_trader.live.gate_state import gate_status
        from kronos_trader.live.status import find_run, run_status
        from kronos_trader.store import open_store

        settings = load_settings(config, {"database.url": db})
        store = open_store(settings.database.url)
        run = find_run(store, run_id)
        if run is None:
            raise ValueError(f"no paper or live run{' ' + run_id if run_id else ''} in {store.url}")
        st = run_status(store, run)
        equity = f"{st.equity:,.2f}" if st.equity is not None else "-"
        balances = ", ".join(f"{c} {v:,.8g}" for c, v in sorted(st.balances.items()))
        console.print(f"{run.kind} run [bold]{run.id}[/bold] ({run.status}, started {run.started_at:%Y-%m-%d %H:%M}) "
                      f"equity {equity} at {st.equity_time or '-'}; balances {balances or '-'}; "
                      f"{st.open_orders} open order(s)", highlight=False)
        table = Table()
        for column in ("pair", "tf", "position", "entry", "price", "value", "target", "forecast", "P(up)",
                       "E[ret]", "last error"):
            table.add_column(column, overflow="fold", no_wrap=column in ("pair", "tf", "P(up)"))

        def num(value, fmt="{:,.6g}"):
            return "-" if value is None else fmt.format(value)

        for p in st.pairs:
            error = f"{p.error_time:%m-%d %H:%M} {p.last_error}" if p.last_error else "-"
            table.add_row(p.symbol, p.timeframe, f"dust {p.size:.4g}" if p.dust else num(p.size), num(p.entry_price),
                          num(p.last_price),
                          num(p.value, "{:,.2f}"), num(p.target, "{:+.2f}"),
                          f"{p.forecast_time:%m-%d %H:%M}" if p.forecast_time else "-",
                          num(p.p_up, "{:.2f}"), num(p.expected_return, "{:+.3%}"), error)
        console.print(table)
        for symbol, event in gate_status(store, run.id).items():
            console.print(f"{symbol}: {event.message} (since {event.ts:%Y-%m-%d %H:%M})", highlight=False)
        if st.last_error:
            console.print(f"last error: {st.last_error}", highlight=False)
