"""Compatibility shims for backtrader 1.9.78 on current Python and headless machines.

backtrader's `bindlines` still uses `collections.Iterable` (removed in Python 3.10), and its
plot module selects the TkAgg backend on import, overriding a backend the user chose and
failing where there is no display. Importing this module restores the alias, imports
backtrader's plot module once, and then puts back the user's backend choice (`MPLBACKEND`,
`matplotlib.use` before the import) or, with no display, Agg: `cerebro.plot()` then works
headless, and `fig.savefig("run.png")` writes the chart.
"""
from __future__ import annotations

import collections
import collections.abc
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

for _name in ("Iterable", "Mapping", "MutableMapping", "Sequence"):
    if not hasattr(collections, _name):
        setattr(collections, _name, getattr(collections.abc, _name))

import backtrader as bt  # noqa: E402  (after the alias on purpose)


def _has_display() -> bool:
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True  # macOS and Windows always have a window system


def _settle_plot_backend() -> None:
    """Let backtrader pick its backend, then restore the user's choice or fall back to Agg."""
    try:
        import matplotlib
    except ImportError:  # plotting is optional for backtrader; nothing to settle
        return
    chosen = matplotlib.rcParams._get_backend_or_none()  # None: not chosen yet (auto)
    import backtrader.plot  # noqa: F401  (calls matplotlib.use('TkAgg') on import)

    if chosen is not None:
        matplotlib.use(chosen, force=False)
    elif not _has_display():
        matplotlib.use("Agg", force=False)


def use_headless_plotting() -> None:
    """Force matplotlib's Agg backend (plots only to files), e.g. on a machine whose
    display cannot be reached although DISPLAY is set."""
    import matplotlib

    matplotlib.use("Agg", force=True)


_settle_plot_backend()


def num2timestamps(values) -> "pd.DatetimeIndex":
    """Vectorised backtrader date numbers (days since 0001-01-01, plus one) to UTC-naive
    stamps, rounded to the millisecond."""
    import numpy as np
    import pandas as pd

    days = np.asarray(values, dtype=np.float64) - 719163.0  # bt.date2num(1970-01-01)
    return pd.DatetimeIndex(np.round(days * 86_400_000).astype("int64").astype("datetime64[ms]")).as_unit("ns")


__all__ = ["bt", "use_headless_plotting", "num2timestamps"]
