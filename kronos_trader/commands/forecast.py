"""`kronos-trader forecast`: the next bars of a series as a table, a CSV and a fan chart."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from kronos_trader.config import Settings
from kronos_trader.data import SAMPLE_DATA_PATH, SYNTHETIC_LABEL, is_synthetic, load_candles, titled
from kronos_trader.data.display import price_digits
from kronos_trader.data.naming import series_names
from kronos_trader.forecasting.service import ForecastService
from kronos_trader.forecasting.values import WindowForecast


def run_forecast(settings: Settings, out: Path, console: Console, symbol: str | None = None,
                 timeframe: str | None = None, as_json: bool = False) -> pd.DataFrame:
    """Forecast the bars after the file's last window through the forecast service
    (window warnings go through `warnings`, shown once as one line by the CLI)."""
    path = Path(settings.data.path) if settings.data.path else SAMPLE_DATA_PATH
    candles = load_candles(path)
    symbol, timeframe = series_names(path, candles, symbol, timeframe)
    service = ForecastService.from_settings(settings, progress=False)
    f = settings.forecast
    with console.status(f"forecasting {f.horizon} bars with {service.model.name} ({f.sample_count} paths)"):
        result = service.forecast_latest(candles, symbol, timeframe)
    summary = forecast_summary(result)
    window = candles.iloc[-f.lookback:]
    out.mkdir(parents=True, exist_ok=True)
    summary.to_csv(out / "forecast.csv", index_label="timestamp")
    _fan_chart(window, result, out / "forecast.png", titled(f"{symbol} {timeframe}", candles))
    if as_json:
        from kronos_trader.commands.common import print_json

        print_json({"symbol": symbol, "timeframe": timeframe, "data": path.name, "model": service.model.name,
                    "model_id": service.model.model_id, "window_end": str(window.index[-1]),
                    "last_close": result.last_close, "horizon": f.horizon, "sample_count": f.sample_count,
                    "bars": [{"timestamp": str(stamp), **{k: float(v) for k, v in row.items()}}
                             for stamp, row in summary.iterrows()],
                    "files": [str(out / "forecast.csv"), str(out / "forecast.png")]})
        return summary
    table = Table(title=f"{titled(f'{symbol} {timeframe}', candles)} ({path.name}): next {f.horizon} bars after {window.index[-1]} "
                        f"({service.model.name})")
    digits = price_digits(window["close"].to_numpy())
    for col in ["time", *summary.columns]:
        table.add_column(col, justify="right")
    for stamp, row in summary.iterrows():
        table.add_row(str(stamp), *[f"{v:.4f}" if c == "p_up" else f"{v:,.{digits}f}" for c, v in row.items()])
    console.print(table)
    if is_synthetic(candles):
        console.print(f"[yellow]note:[/yellow] {path.name} is the bundled {SYNTHETIC_LABEL}", highlight=False)
    console.print(f"written: {out / 'forecast.csv'}, {out / 'forecast.png'}")
    return summary


def forecast_summary(result: WindowForecast) -> pd.DataFrame:
    """One row per forecast bar (its calendar stamp): mean close, each quantile, P(up)."""
    out = pd.DataFrame({"mean": result.mean[:, 3]}, index=pd.DatetimeIndex(result.stamps, name="timestamp"))
    for q in sorted(result.quantiles):
        out[f"q{round(q * 100):02d}"] = result.quantiles[q]
    out["p_up"] = result.p_up
    return out


def fan_figure(window: pd.DataFrame, result, title: str):
    """The fan chart on a bar axis: one step per bar, so a weekend or a night (no bars)
    takes no room, with date labels at a few bars that do not overlap."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    tail = window["close"].iloc[-min(len(window), 200):]
    q, stamps = result.quantiles, pd.DatetimeIndex(result.stamps)
    times = tail.index.append(stamps)
    past = np.arange(len(tail))
    ahead = np.arange(len(tail), len(tail) + len(stamps))
    fig, ax = plt.subplots(figsize=(11, 5))
    ax.plot(past, tail.to_numpy(), color="black", lw=1, label="history")
    ax.fill_between(ahead, q[0.05], q[0.95], alpha=0.18, color="tab:blue", label="5-95%")
    ax.fill_between(ahead, q[0.25], q[0.75], alpha=0.3, color="tab:blue", label="25-75%")
    ax.plot(ahead, result.mean[:, 3], color="tab:blue", lw=1.5, label="mean")
    daily = len(times) > 1 and (times[1:] - times[:-1]).min() >= pd.Timedelta(days=1)
    fmt = "%Y-%m-%d" if daily else "%m-%d %H:%M"

    def label(x, _pos):
        i = int(round(x))
        return times[i].strftime(fmt) if 0 <= i < len(times) and abs(x - i) < 1e-6 else ""

    ax.xaxis.set_major_locator(MaxNLocator(nbins=8, integer=True))
    ax.xaxis.set_major_formatter(FuncFormatter(label))
    ax.set_xlabel("bar open time (UTC); closed hours take no room")
    ax.set_title(f"{title}: Kronos forecast of the close")
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    fig.autofmt_xdate(rotation=30)
    fig.tight_layout()
    return fig


def _fan_chart(window: pd.DataFrame, result, path: Path, title: str) -> None:
    import matplotlib.pyplot as plt

    fig = fan_figure(window, result, title)
    fig.savefig(path, dpi=110)
    plt.close(fig)
