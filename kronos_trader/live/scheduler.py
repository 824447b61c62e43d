"""APScheduler 3.x jobs: one per timeframe, firing ``delay_seconds`` after each candle close.

The trigger is an IntervalTrigger of the timeframe's length started at an epoch-aligned
candle boundary plus the delay (Binance alignment: intraday and daily frames from the Unix
epoch, weekly from Monday 00:00 UTC). Jobs coalesce, never overlap (max_instances=1) and
run up to ``misfire_grace_seconds`` late; the job itself works out the candle from "now",
so a late run trades the candle that closed last.
"""
from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from kronos_trader.exchange import floor_to_timeframe, timeframe_to_timedelta

log = logging.getLogger(__name__)


def first_fire_time(timeframe: str, delay_seconds: float, now: pd.Timestamp | None = None) -> pd.Timestamp:
    """The first candle close + delay at or after ``now`` (UTC, naive)."""
    now = pd.Timestamp.now(tz="UTC").tz_localize(None) if now is None else pd.Timestamp(now)
    step = timeframe_to_timedelta(timeframe)
    fire = floor_to_timeframe(now, timeframe) + pd.Timedelta(seconds=delay_seconds)
    while fire < now:
        fire += step
    return fire


def trigger_for(timeframe: str, delay_seconds: float):
    from apscheduler.triggers.interval import IntervalTrigger

    step = timeframe_to_timedelta(timeframe)
    start = first_fire_time(timeframe, delay_seconds) - step  # aligned, in the past: the next fire is aligned
    return IntervalTrigger(seconds=step.total_seconds(), start_date=start.tz_localize("UTC").to_pydatetime(),
                           timezone="UTC")


def build_scheduler(runner: Any, blocking: bool = True):
    """A Blocking (or Background) scheduler with one cycle job per configured timeframe."""
    from apscheduler.executors.pool import ThreadPoolExecutor
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.schedulers.blocking import BlockingScheduler

    paper = runner.settings.paper
    cls = BlockingScheduler if blocking else BackgroundScheduler
    scheduler = cls(timezone="UTC", executors={"default": ThreadPoolExecutor(max(1, len(runner.timeframes)))})
    for timeframe in runner.timeframes:
        scheduler.add_job(_job, trigger_for(timeframe, paper.delay_seconds), args=(runner, timeframe),
                          id=f"cycle-{timeframe}", name=f"{timeframe} cycle", coalesce=True, max_instances=1,
                          misfire_grace_time=int(paper.misfire_grace_seconds), replace_existing=True)
    if runner.lease is not None:  # the run's lease outlives the gaps between candles
        from apscheduler.triggers.interval import IntervalTrigger

        from .lease import HEARTBEAT_S

        scheduler.add_job(runner.lease.renew, IntervalTrigger(seconds=HEARTBEAT_S), id="lease", name="lease heartbeat",
                          coalesce=True, max_instances=1, replace_existing=True)
    return scheduler


def _job(runner: Any, timeframe: str) -> None:
    """Never raises: a failed cycle is an event, the next candle runs again."""
    try:
        for report in runner.run_cycle(timeframe):
            log.info("%s cycle for the candle %s: %d decision(s), %d order(s), %d fill(s) in %.2fs%s",
                     timeframe, report.boundary, report.decisions, len(report.orders), report.fills,
                     report.timings.get("total", 0.0), f"; skipped: {'; '.join(report.skipped)}" if report.skipped else "")
            if report.undecided:
                log.warning("%s cycle for the candle %s could not decide: %s", timeframe, report.boundary,
                            "; ".join(report.undecided))
    except Exception:  # pragma: no cover - run_cycle already catches
        log.exception("%s cycle crashed", timeframe)
