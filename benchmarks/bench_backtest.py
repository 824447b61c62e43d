"""Backtest forecasting: naive per-bar prediction vs batched precompute vs cached rerun.

One year of hourly synthetic bars; Kronos-mini config with random weights (the issue's
setting: 256 bars of context, 24 steps, 8 sample paths, a forecast at every bar).
The naive baseline (the published predictor called inside `next`, one window at a time)
is timed on `--naive-bars` bars and extrapolated per bar; the other two run in full.

    python benchmarks/bench_backtest.py                 # 8,760 forecasts (several minutes)
    python benchmarks/bench_backtest.py --bars 500      # a quick look
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from kronos import MODEL_CONFIGS, TOKENIZER_CONFIGS, Kronos, KronosPredictor, KronosTokenizer
from kronos.linear import stock_kernels
from kronos_trader.backtest.runner import run_backtest
from kronos_trader.config import parse_settings
from kronos_trader.data import generate_market
from kronos_trader.store import open_store


def save_mini_pair(directory: Path) -> Path:
    torch.manual_seed(0)
    KronosTokenizer(**TOKENIZER_CONFIGS["Kronos-Tokenizer-2k"]).save_pretrained(directory / "tokenizer")
    Kronos(**MODEL_CONFIGS["Kronos-mini"]).save_pretrained(directory / "model")
    (directory / "kronos.json").write_text('{"max_context": 2048}')
    return directory


def naive_seconds_per_bar(pair: Path, candles, lookback: int, horizon: int, paths: int, bars: int) -> float:
    """The published predictor (uncached) on one window per bar, as a per-bar `next` would."""
    predictor = KronosPredictor.from_pretrained(str(pair), device="cpu")
    predictor.cached = False
    start = time.perf_counter()
    with stock_kernels():  # torch's default kernels, as the published code runs
        for end in range(lookback, lookback + bars):
            window = candles.iloc[end - lookback:end]
            predictor.predict(window, pred_len=horizon, sample_count=paths, verbose=False, seed=end)
    return (time.perf_counter() - start) / bars


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=8760, help="forecasts (decision bars)")
    parser.add_argument("--lookback", type=int, default=256)
    parser.add_argument("--horizon", type=int, default=24)
    parser.add_argument("--paths", type=int, default=8)
    parser.add_argument("--batch", type=int, default=128, help="windows per model call")
    parser.add_argument("--naive-bars", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        pair = save_mini_pair(Path(tmp) / "mini")
        candles = generate_market(args.bars + args.lookback - 1, "1h", seed=7)
        settings = parse_settings({
            "model": {"name": str(pair), "device": "cpu"},
            "forecast": {"lookback": args.lookback, "horizon": args.horizon, "sample_count": args.paths,
                         "batch_windows": args.batch},
            "database": {"url": f"sqlite:///{tmp}/bench.db"}})
        store = open_store(settings.database.url)
        print(f"{args.bars} forecasts: {args.lookback} bars of context, {args.horizon} steps, {args.paths} paths, "
              f"Kronos-mini config, torch {torch.__version__} on {torch.get_num_threads()} threads")
        start = time.perf_counter()
        first = run_backtest(settings, candles, "SYN/USDT", "1h", store, progress=True)
        batched = time.perf_counter() - start
        start = time.perf_counter()
        second = run_backtest(settings, candles, "SYN/USDT", "1h", store, progress=False)
        rerun = time.perf_counter() - start
        assert second.journal.signals == first.journal.signals, "cached rerun must equal the first run"
        per_bar = naive_seconds_per_bar(pair, candles, args.lookback, args.horizon, args.paths, args.naive_bars)
        naive = per_bar * args.bars
        print(f"naive per-bar prediction : {naive:9.1f} s (extrapolated from {args.naive_bars} bars, "
              f"{per_bar:.2f} s/bar)")
        print(f"batched precompute       : {batched:9.1f} s end to end ({first.forecasts_computed} forecasts "
              f"computed)  {naive / batched:6.1f}x faster than naive")
        print(f"cached rerun             : {rerun:9.1f} s ({second.forecasts_reused} forecasts reused)  "
              f"{naive / rerun:6.1f}x faster than naive")


if __name__ == "__main__":
    main()
