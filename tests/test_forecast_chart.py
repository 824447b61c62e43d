"""Issue 25 (small): the forecast PNG drew an FX weekend as a straight band and its tick
labels overlapped."""
from __future__ import annotations

import numpy as np
import pandas as pd

from kronos_trader.commands.forecast import fan_figure
from kronos_trader.forecasting.values import WindowForecast


def _fx_window(n=200):
    index = pd.date_range("2024-01-01", periods=n * 2, freq="1h")
    index = index[index.day_of_week < 5][-n:]
    close = 1.1 + np.cumsum(np.random.default_rng(1).normal(0, 1e-4, n))
    return pd.DataFrame({"close": close}, index=index)


def test_fan_chart_skips_closures_and_its_labels_do_not_overlap():
    window = _fx_window()
    stamps = pd.date_range(window.index[-1] + pd.Timedelta(hours=1), periods=80, freq="1h")
    stamps = stamps[stamps.day_of_week < 5][:24]
    paths = np.full((8, 24), window["close"].iloc[-1])
    q = {lv: np.full(24, window["close"].iloc[-1]) for lv in (0.05, 0.25, 0.75, 0.95)}
    f = WindowForecast(stamps[0], window.index[-1], float(window["close"].iloc[-1]), np.zeros((24, 6)), q,
                       np.full(24, 0.5), close_paths=paths, stamps=pd.DatetimeIndex(stamps))
    fig = fan_figure(window, f, "EURUSD 1h")
    ax = fig.axes[0]
    xs = np.concatenate([line.get_xdata() for line in ax.get_lines()])
    assert np.allclose(np.diff(np.unique(xs)), 1.0)   # one step per bar: no blank weekend
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in ax.get_xticklabels() if t.get_text()]
    assert len(boxes) >= 3
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    labels = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    assert all(lbl[:4].isdigit() or lbl[:2].isdigit() for lbl in labels)
