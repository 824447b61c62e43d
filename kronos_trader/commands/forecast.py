"""`kronos-trader forecast`: the next bars of a series as a table, a CSV and a fan chart."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table

from kronos_trader.config import Settings
from kronos_trader.data import SAMPLE_DATA_PATH, infer_bar_interval, load_candles
from kronos_trader.forecasting.models import load_model


def run_forecast(settings: Settings, out: Path, console: Console) -> pd.DataFrame:
    path = Path(settings.data.path) if settings.data.path else SAMPLE_DATA_PATH
    candles = load_candles(path)
    f = settings.forecast
    if len(candles) < f.lookback:
        raise ValueError(f"{path.name} has {len(candles)} bars, fewer than the lookback of {f.lookback}")
    model = load_model(settings.model.name, settings.model.device, settings.model.max_context, settings.model.precision)
    window = candles.iloc[-f.lookback:]
    interval = infer_bar_interval(candles.index)
    future = pd.DatetimeIndex([window.index[-1] + interval * (k + 1) for k in range(f.horizon)], name="timestamp")
    with console.status(f"forecasting {f.horizon} bars with {model.name} ({f.sample_count} paths)"):
        result = model.predictor.forecast(window, y_timestamp=future, pred_len=f.horizon, T=f.temperature,
                                          top_k=f.top_k, top_p=f.top_p, sample_count=f.sample_count,
                                          verbose=False, seed=f.seed)
    summary = result.summary()
    out.mkdir(parents=True, exist_ok=True)
    summary.to_csv(out / "forecast.csv", index_label="timestamp")
    _fan_chart(window, result, out / "forecast.png", path.name)
    table = Table(title=f"{path.name}: next {f.horizon} bars after {window.index[-1]} ({model.name})")
    for col in ["time", *summary.columns]:
        table.add_column(col, justify="right")
    for stamp, row in summary.iterrows():
        table.add_row(str(stamp), *[f"{v:.4f}" if c == "p_up" else f"{v:,.2f}" for c, v in row.items()])
    console.print(table)
    console.print(f"written: {out / 'forecast.csv'}, {out / 'forecast.png'}")
    return summary


def _fan_chart(window: pd.DataFrame, result, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    tail = window["close"].iloc[-min(len(window), 200):]
    q = result.quantiles
    fig, ax = plt.subplots(figsize=(11, 5))
    ax.plot(tail.index, tail, color="black", lw=1, label="history")
    ax.fill_between(result.mean.index, q[0.05]["close"], q[0.95]["close"], alpha=0.18, color="tab:blue",
                    label="5-95%")
    ax.fill_between(result.mean.index, q[0.25]["close"], q[0.75]["close"], alpha=0.3, color="tab:blue",
                    label="25-75%")
    ax.plot(result.mean.index, result.mean["close"], color="tab:blue", lw=1.5, label="mean")
    ax.set_title(f"{title}: Kronos forecast of the close")
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
