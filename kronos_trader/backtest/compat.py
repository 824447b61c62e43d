"""Compatibility shims for backtrader 1.9.78 on current Python and headless machines.

backtrader's `bindlines` still uses `collections.Iterable` (removed in Python 3.10), and its
plot module selects the TkAgg backend on import; we restore the alias and force Agg so
plotting works without a display.
"""
from __future__ import annotations

import collections
import collections.abc
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

for _name in ("Iterable", "Mapping", "MutableMapping", "Sequence"):
    if not hasattr(collections, _name):
        setattr(collections, _name, getattr(collections.abc, _name))

import backtrader as bt  # noqa: E402  (after the alias on purpose)


def use_headless_plotting() -> None:
    """Import backtrader's plot module, then force matplotlib's Agg backend."""
    import matplotlib

    import backtrader.plot  # noqa: F401  (selects TkAgg as a side effect)

    matplotlib.use("Agg", force=True)


def num2timestamps(values) -> "pd.DatetimeIndex":
    """Vectorised backtrader date numbers (days since 0001-01-01, plus one) to UTC-naive
    stamps, rounded to the millisecond."""
    import numpy as np
    import pandas as pd

    days = np.asarray(values, dtype=np.float64) - 719163.0  # bt.date2num(1970-01-01)
    return pd.DatetimeIndex(np.round(days * 86_400_000).astype("int64").astype("datetime64[ms]")).as_unit("ns")


__all__ = ["bt", "use_headless_plotting", "num2timestamps"]
