"""Progress of a long forecast pass: a live bar on a terminal, plain lines in a log.

A backtest redirected to a file printed nothing for 20 minutes: rich draws no bar when its
console is not a terminal. There, one line goes out after the first batch (with the rate
and the time left, the run's estimate) and then at most every `every_s` seconds, plus one
at the end.
"""
from __future__ import annotations

import sys
import time
from typing import Iterable, TextIO

__all__ = ["batch_progress", "duration", "stage", "LOG_EVERY_S"]

LOG_EVERY_S = 30.0


def stage(show: bool, text: str, soft_wrap: bool = False) -> None:
    """Announce a stage of long work as one bold line on stderr: the forecasting or training
    inside it shows its own bar (rich allows one live display at a time, so stages are lines,
    not a second bar), and a line reads well in a log file."""
    if show:
        from rich.console import Console

        Console(stderr=True).print(f"[bold]{text}[/bold]", highlight=False, soft_wrap=soft_wrap)


def duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def batch_progress(batches: list, show: bool, total: int, size: int, stream: TextIO | None = None,
                   every_s: float = LOG_EVERY_S) -> Iterable:
    """Yield `batches`, showing how many of `total` windows are done."""
    stream = sys.stderr if stream is None else stream
    if not show:
        yield from batches
        return
    if getattr(stream, "isatty", lambda: False)():
        yield from _bar(batches, total, size)
        return
    started = last = time.perf_counter()
    done = 0
    print(f"forecasting windows: 0/{total}", file=stream, flush=True)
    for number, batch in enumerate(batches):
        yield batch
        done = min(total, done + min(size, len(batch)))
        now = time.perf_counter()
        if number == 0 or done == total or now - last >= every_s:
            rate = done / max(now - started, 1e-9)
            left = f", about {duration((total - done) / rate)} left" if done < total else \
                f" in {duration(now - started)}"
            print(f"forecasting windows: {done}/{total} ({done / total:.0%}), {rate:.2f} windows/s{left}",
                  file=stream, flush=True)
            last = now


def _bar(batches: list, total: int, size: int) -> Iterable:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), transient=False, console=Console(stderr=True)) as bar:  # stdout: results
        task = bar.add_task("forecasting windows", total=total)
        for batch in batches:
            yield batch
            bar.advance(task, min(size, total - bar.tasks[0].completed))
