"""Kronos columns inside freqtrade: a year of hourly candles of one pair.

In one run, on the same candles and machine:
1. `freqtrade backtesting` of a plain strategy (an EMA cross, no Kronos): the baseline;
2. `freqtrade backtesting --strategy KronosDirectional` with an empty forecast store: every
   window forecast in batches (first run);
3. the same again: every forecast read back from the store (cached rerun);
4. dry-run latency per candle: `KronosColumns.add` in dry-run mode on freqtrade's dataframe
   (1,000 candles, as freqtrade keeps) for each new closed candle, in-process (a real
   dry-run waits for the wall clock; the helper's work per candle is this call).

freqtrade runs against the local fake exchange (markets only; candles come from files in
freqtrade's layout). Times are wall clock of the whole command (freqtrade's start-up
included) and, for the Kronos runs, the helper's own time from its log line.

    python benchmarks/bench_freqtrade.py                # random Kronos-mini, 256 + 24, 8 paths, 365 days
    python benchmarks/bench_freqtrade.py --quick        # tiny model, 30 days (a check that it runs)
"""
from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "benchmarks")]

import pandas as pd  # noqa: E402

PLAIN = '''
from freqtrade.strategy import IStrategy


class PlainEma(IStrategy):
    """The baseline: an EMA cross, no Kronos."""
    INTERFACE_VERSION = 3
    timeframe = "1h"
    minimal_roi = {"0": 100.0}
    stoploss = -0.10
    startup_candle_count = 50

    def populate_indicators(self, dataframe, metadata):
        dataframe["ema"] = dataframe["close"].ewm(span=24, adjust=False).mean()
        return dataframe

    def populate_entry_trend(self, dataframe, metadata):
        dataframe.loc[dataframe["close"] > dataframe["ema"], "enter_long"] = 1
        return dataframe

    def populate_exit_trend(self, dataframe, metadata):
        dataframe.loc[dataframe["close"] < dataframe["ema"], "exit_long"] = 1
        return dataframe
'''
_HELPER_TIME = re.compile(r"Kronos \S+ 1h: (\d+) candles, (\d+) forecast rows, (\d+) windows computed .*\(([\d.]+) s\)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny random model, 30 days, short windows")
    parser.add_argument("--days", type=int, default=None, help="days of hourly candles (default 365; quick 30)")
    parser.add_argument("--model", default=None, help="model name/directory (default: random Kronos-mini)")
    parser.add_argument("--lookback", type=int, default=None)
    parser.add_argument("--horizon", type=int, default=None)
    parser.add_argument("--samples", type=int, default=None)
    parser.add_argument("--live-candles", type=int, default=None, help="dry-run candles timed (default 20; quick 5)")
    args = parser.parse_args()

    from common import header
    from fake_exchange.candles import make_candles
    from fake_exchange.server import FakeBinance
    from freqtrade_setup import freqtrade, make_user_dir, write_candles

    from kronos_trader.freqtrade import KronosColumns

    quick = args.quick
    days = args.days or (30 if quick else 365)
    lookback = args.lookback or (32 if quick else 256)
    horizon = args.horizon or (4 if quick else 24)
    samples = args.samples or (4 if quick else 8)
    live_candles = args.live_candles or (5 if quick else 20)
    print(header())
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.model:
            model = args.model
        elif quick:
            from factories import save_tiny_pair

            model = str(save_tiny_pair(tmp / "tiny", max_context=128))
        else:
            from bench_live_cycle import save_mini

            model = str(save_mini(tmp / "mini", max_context=512))
        startup = lookback - 1
        bars = days * 24 + startup
        candles = make_candles(pd.Timestamp("2024-01-01") - pd.Timedelta(hours=startup), bars, "1h", seed=1,
                               price=42_000.0, with_amount=False)
        kronos = {"model": model, "lookback": lookback, "horizon": horizon, "sample_count": samples, "device": "cpu"}
        print(f"{days} days of hourly candles ({days * 24} backtested + {startup} start-up), model {Path(model).name}, "
              f"{lookback} + {horizon}, {samples} paths; freqtrade {_freqtrade_version()}")
        server = FakeBinance(api_key="k", api_secret="s").start()
        server.add_market("BTCUSDT", "BTC", "USDT", candles=candles.iloc[:10], interval="1h", tick_size="0.01",
                          step_size="0.00001", min_qty="0.00001", min_notional="5.00")
        try:
            config = make_user_dir(tmp / "ft", server.url, kronos, startup=startup)
            write_candles(tmp / "ft" / "user_data" / "data" / "binance", "BTC/USDT", "1h", candles)
            (tmp / "ft" / "user_data" / "strategies" / "plain_ema.py").write_text(PLAIN)
            end = (candles.index[-1] + pd.Timedelta(hours=1)).strftime("%Y%m%d")
            timerange = ["--timerange", f"20240101-{end}", "--cache", "none"]  # freqtrade would reuse results
            plain = _timed(lambda: freqtrade(["backtesting", *timerange], config, timeout=3600, strategy="PlainEma"))
            first = _timed(lambda: freqtrade(["backtesting", *timerange], config, timeout=36000))
            again = _timed(lambda: freqtrade(["backtesting", *timerange], config, timeout=3600))
        finally:
            server.stop()

        rows = [("plain EMA strategy (baseline)", plain[0], None),
                ("KronosDirectional, first run", first[0], _helper(first[1])),
                ("KronosDirectional, cached rerun", again[0], _helper(again[1]))]
        print(f"\n{'freqtrade backtesting':<34} {'wall':>9} {'vs baseline':>12}  Kronos columns")
        for name, wall, helper in rows:
            note = "" if helper is None else (f"{helper[3]:.1f} s for {helper[1]} rows, {helper[2]} computed"
                                              f" ({1000 * helper[3] / max(helper[1], 1):.2f} ms/row)")
            print(f"{name:<34} {wall:>8.1f}s {wall / plain[0]:>11.2f}x  {note}")

        # dry-run: the newest closed candle of a 1,000-candle dataframe, one new candle at a time
        live = KronosColumns({"timeframe": "1h", "runmode": "dry_run", "startup_candle_count": startup,
                              "user_data_dir": str(tmp), "kronos": {**kronos, "db": f"sqlite:///{tmp}/live.db"}})
        window = min(1000, len(candles) - live_candles)
        latencies = []
        for i in range(live_candles + 1):
            end_row = len(candles) - live_candles + i
            frame = candles.iloc[end_row - window:end_row]
            dataframe = frame[["open", "high", "low", "close", "volume"]].reset_index(drop=True)
            dataframe.insert(0, "date", pd.DatetimeIndex(frame.index).tz_localize("UTC"))
            start = time.perf_counter()
            live.add(dataframe, {"pair": "BTC/USDT"})
            latencies.append(time.perf_counter() - start)
        latencies = latencies[1:]  # the first call opens the store and loads the model
        per_row = first[1] and _helper(first[1])
        print(f"\ndry-run, per new candle ({live_candles} candles, {window}-candle dataframe): median "
              f"{1000 * statistics.median(latencies):.0f} ms, max {1000 * max(latencies):.0f} ms"
              + (f"; backtest rows cost {1000 * per_row[3] / max(per_row[1], 1):.1f} ms each in batches"
                 if per_row else ""))
    print(header())


def _freqtrade_version() -> str:
    import freqtrade

    return freqtrade.__version__


def _timed(run) -> tuple[float, str]:
    start = time.perf_counter()
    result = run()
    wall = time.perf_counter() - start
    output = result.stdout + result.stderr
    if result.returncode != 0 or " - ERROR - " in output:
        sys.exit(f"freqtrade failed:\n{output[-3000:]}")
    return wall, output


def _helper(output: str) -> tuple[int, int, int, float] | None:
    """(candles, rows, windows computed, seconds) from the helper's log line."""
    found = _HELPER_TIME.findall(output)
    return (*map(int, found[-1][:3]), float(found[-1][3])) if found else None


if __name__ == "__main__":
    main()
