"""The bars a Backtrader feed will deliver, read before the run where they are known.

With resampled or replayed feeds in a Cerebro, Backtrader preloads nothing (bars are built
as the run goes), so an indicator would see one bar at a time. But a feed over a file or a
DataFrame knows its whole history up front: reading a fresh copy of it, with the same
parameters and the same resample/replay filters, gives the bars the run will deliver, and
the forecasts for all of them can be computed in a few batched calls. Live feeds (and feeds
that cannot be copied) have no history up front.
"""
from __future__ import annotations

import inspect
import logging

import numpy as np
import pandas as pd

from .compat import bt, num2timestamps

FIELDS = ("open", "high", "low", "close", "volume")
log = logging.getLogger(__name__)


def buffered_bars(data) -> pd.DataFrame:
    """The bars already in a feed's buffers (all of them when it is preloaded)."""
    n = data.buflen()
    cols = {name: np.asarray(getattr(data, name).array[:n], dtype=np.float64) for name in FIELDS}
    return pd.DataFrame(cols, index=num2timestamps(data.datetime.array[:n]))


def is_preloaded(data) -> bool:
    return bool(getattr(getattr(data, "_env", None), "_dopreload", False)) or data.buflen() > len(data)


def known_history(data) -> pd.DataFrame | None:
    """Every bar `data` will deliver (in its own timeframe), or None when not known up front.

    Read once per feed and kept on it."""
    cached = getattr(data, "_kronos_history", False)
    if cached is not False:
        return cached
    history = buffered_bars(data) if is_preloaded(data) else _read_copy(data)
    data._kronos_history = history
    return history


def _read_copy(data) -> pd.DataFrame | None:
    try:
        copy = _copy(data)
    except _NotCopyable as why:
        log.debug("no history up front for %s: %s", getattr(data, "_name", data), why)
        return None
    copy.preload()
    return buffered_bars(copy)


class _NotCopyable(Exception):
    pass


def _copy(data):
    """A started, unloaded copy of `data` with the same parameters and filters."""
    if data.islive():
        raise _NotCopyable("live feed")
    if isinstance(data, bt.DataClone):
        guest = _copy(data.data)
        guest.preload()
        copy = type(data)(**{**data.p._getkwargs(), "dataname": guest})
    else:
        if getattr(data, "_store", None) is not None or getattr(data, "_feed", None) is not None:
            raise _NotCopyable("fed by a store")
        copy = type(data)(**data.p._getkwargs())
    own = len(data.p.filters)  # filters given as the `filters` parameter are rebuilt by the constructor
    for obj, args, kwargs in data._filters[own:]:
        if hasattr(obj, "p") and not inspect.isfunction(obj):  # a filter class instance (resample, replay)
            copy.addfilter(type(obj), **obj.p._getkwargs())
        else:
            copy._filters.append((obj, args, kwargs))
    copy._env = getattr(data, "_env", None)
    if copy._env is None:
        raise _NotCopyable("not added to a Cerebro")
    copy._start()
    return copy


def date_ranges(datas) -> dict[str, tuple[pd.Timestamp, pd.Timestamp]]:
    """First and last bar of each feed whose history is known up front (by feed name)."""
    out = {}
    for i, data in enumerate(datas):
        history = known_history(data)
        if history is not None and len(history):
            out[getattr(data, "_name", "") or f"data{i}"] = (history.index[0], history.index[-1])
    return out


def check_overlap(datas) -> None:
    """Raise a one-line ValueError when the feeds share no dates (Backtrader would run
    through them one after the other and fail, or never trade)."""
    ranges = date_ranges(datas)
    if len(ranges) < 2:
        return
    start = max(first for first, _ in ranges.values())
    end = min(last for _, last in ranges.values())
    if start > end:
        spans = ", ".join(f"{name} {first:%Y-%m-%d %H:%M}..{last:%Y-%m-%d %H:%M}"
                          for name, (first, last) in ranges.items())
        raise ValueError(f"the data feeds share no dates, so they cannot run in one Cerebro: {spans}")
