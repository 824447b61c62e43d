"""Issue 25 (web): FX weekends were shown as 'gaps 42 (2063 missing bars)': a market's
closures are not missing data."""
from __future__ import annotations

import pandas as pd

from kronos_trader.data.calendar import session_gaps


def _fx(weeks: int = 6) -> pd.DataFrame:
    index = pd.date_range("2024-01-01", periods=weeks * 7 * 24, freq="1h")
    index = index[index.day_of_week < 5]
    return pd.DataFrame({"close": 1.0}, index=index)


def test_weekends_are_closures_and_a_hole_is_a_gap():
    fx = _fx()
    gaps = session_gaps(fx)
    assert gaps["gaps"] == 0 and gaps["missing_bars"] == 0 and gaps["closures"] >= 5
    holed = fx.drop(fx.index[100:103])
    gaps = session_gaps(holed)
    assert gaps["gaps"] == 1 and gaps["missing_bars"] == 3


def test_a_247_series_has_no_closures():
    index = pd.date_range("2024-01-01", periods=500, freq="1h")
    crypto = pd.DataFrame({"close": 1.0}, index=index).drop(index[50:60])
    gaps = session_gaps(crypto)
    assert gaps == {"gaps": 1, "missing_bars": 10, "closures": 0}
