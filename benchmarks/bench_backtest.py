"""Backtest forecasting: the published predictor per bar vs batched precompute vs cached rerun.

One year of hourly synthetic bars; Kronos-mini config with random weights (the issue's
setting: 256 bars of context, 24 steps, 8 sample paths, a forecast at every bar).
The baseline is the published code itself (`kronos-model-arch==0.1.0`, see
benchmarks/bench_generation.py) called inside `next`, one window at a time, loaded with the
same weights; it is timed on `--naive-bars` bars and extrapolated per bar. The other two
run in full (or on `--bars`). `--precision bf16` runs ours in bfloat16.

    python benchmarks/bench_backtest.py                 # 8,760 forecasts (several minutes)
    python benchmarks/bench_backtest.py --bars 500      # a quick look
    python benchmarks/bench_backtest.py --bars 256 --naive-bars 1 --profile   # where one batch's time goes
"""
from __future__ import annotations

import kronos  # noqa: F401  (first: kronos sets OpenMP's wait policy before torch loads, kronos/runtime.py)

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
from common import (FLOOR_PHASES, forecast_flops, forecast_flops_by_phase, gemm_gflops, header, profile_call,
                    random_inputs)

from kronos import MODEL_CONFIGS, TOKENIZER_CONFIGS, Kronos, KronosTokenizer, Sampling, generate_cached, published
from kronos_trader.backtest.runner import run_backtest
from kronos_trader.config import parse_settings
from kronos_trader.data import generate_market
from kronos_trader.store import open_store


GOALS = {"float32": 300.0, "bf16": 120.0}  # seconds for a year of hourly forecasts (8,760)
MAX_CONTEXT = 2048  # the Kronos-mini pair's context (`kronos.json`)


def save_mini_pair(directory: Path) -> Path:
    torch.manual_seed(0)
    KronosTokenizer(**TOKENIZER_CONFIGS["Kronos-Tokenizer-2k"]).save_pretrained(directory / "tokenizer")
    Kronos(**MODEL_CONFIGS["Kronos-mini"]).save_pretrained(directory / "model")
    (directory / "kronos.json").write_text(f'{{"max_context": {MAX_CONTEXT}}}')
    return directory


def naive_seconds_per_bar(pair: Path, candles, lookback: int, horizon: int, paths: int, bars: int) -> float:
    """The published predictor on one window per bar, as a per-bar `next` would call it."""
    tokenizer = KronosTokenizer.from_pretrained(pair / "tokenizer")
    model = Kronos.from_pretrained(pair / "model")
    p_tok, p_model = published.published_pair(tokenizer, model)
    predictor = published._module().KronosPredictor(p_model, p_tok, device="cpu", max_context=MAX_CONTEXT)
    start = time.perf_counter()
    for end in range(lookback, lookback + bars):
        window = candles.iloc[end - lookback:end]
        future = candles.index[end - 1] + (candles.index[1] - candles.index[0]) * (1 + pd.RangeIndex(horizon))
        predictor.predict(window, window.index.to_series(), pd.Series(future), pred_len=horizon, sample_count=paths,
                          verbose=False)
    return (time.perf_counter() - start) / bars


def profile_batch(pair: Path, args: argparse.Namespace, dtype: torch.dtype, rate: float) -> list[str]:
    """One model call's generation (`--batch` windows) by phase, each beside its compute floor
    at the run's product rate (`rate`, GFLOP/s), and its kernels by kind: what stands between
    the run and its floor."""
    tokenizer = KronosTokenizer.from_pretrained(pair / "tokenizer")
    model = Kronos.from_pretrained(pair / "model")
    x, xs, ys, u = random_inputs(args.batch, args.lookback, args.horizon, args.paths)
    sampling = Sampling(T=1.0, top_k=0, top_p=0.9)  # the forecast settings' defaults
    whole, totals, kinds = profile_call(lambda: generate_cached(tokenizer, model, x, xs, ys, MAX_CONTEXT, args.horizon,
                                                                sampling, u, dtype=dtype))
    phases = forecast_flops_by_phase(TOKENIZER_CONFIGS["Kronos-Tokenizer-2k"], MODEL_CONFIGS["Kronos-mini"],
                                     args.lookback, args.horizon, args.paths)
    floors = {phase: args.batch * flops / rate / 1e9 for phase, flops in phases.items()}
    floor = sum(floors.values())
    lines = [f"profile of one call, {args.batch} windows: {whole:.2f} s, {whole / floor:.2f}x its floor of {floor:.2f} s "
             f"(at the run's {rate:.0f} GFLOP/s)"]
    for phase, names in FLOOR_PHASES.items():
        spent = sum(totals[name] for name in names)
        lines.append(f"  {phase:22} {spent:7.2f} s   floor {floors[phase]:6.2f} s   {spent / floors[phase]:5.2f}x")
    for kind, spent in sorted(kinds.items(), key=lambda kv: -kv[1]):  # torch's ops only: numpy's sort is not here
        lines.append(f"  kernels: {kind:16} {spent:7.2f} s (profiled run, self time) = {spent / floor:4.2f}x the floor")
    lines.append("  (batched products: here the decode steps' attention over each path's own keys)")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", "--windows", type=int, default=8760,
                        help="forecasts (decision bars, one window each): fewer time a slice of the year")
    parser.add_argument("--lookback", type=int, default=256)
    parser.add_argument("--horizon", type=int, default=24)
    parser.add_argument("--paths", type=int, default=8)
    parser.add_argument("--batch", type=int, default=128, help="windows per model call")
    parser.add_argument("--naive-bars", type=int, default=5)
    parser.add_argument("--precision", default="float32", choices=["float32", "bf16"])
    parser.add_argument("--profile", action="store_true",
                        help="also profile one batch's generation by phase and kernel kind, beside their floors")
    args = parser.parse_args()
    if not published.available():
        raise SystemExit(f"the baseline needs the published code: {published.INSTALL_HINT}")
    print(header())
    with tempfile.TemporaryDirectory() as tmp:
        pair = save_mini_pair(Path(tmp) / "mini")
        candles = generate_market(args.bars + args.lookback - 1, "1h", seed=7)
        settings = parse_settings({
            "model": {"name": str(pair), "device": "cpu", "precision": args.precision},
            "forecast": {"lookback": args.lookback, "horizon": args.horizon, "sample_count": args.paths,
                         "batch_windows": args.batch},
            "database": {"url": f"sqlite:///{tmp}/bench.db"}})
        store = open_store(settings.database.url)
        print(f"{args.bars} forecasts: {args.lookback} bars of context, {args.horizon} steps, {args.paths} paths, "
              f"Kronos-mini config, {args.precision}")
        start = time.perf_counter()
        first = run_backtest(settings, candles, "SYN/USDT", "1h", store, progress=True)
        batched = time.perf_counter() - start
        start = time.perf_counter()
        second = run_backtest(settings, candles, "SYN/USDT", "1h", store, progress=False)
        rerun = time.perf_counter() - start
        assert second.journal.signals == first.journal.signals, "cached rerun must equal the first run"
        per_bar = naive_seconds_per_bar(pair, candles, args.lookback, args.horizon, args.paths, args.naive_bars)
        naive = per_bar * args.bars
        print(f"published, per bar       : {naive:9.1f} s (extrapolated from {args.naive_bars} bars, "
              f"{per_bar:.2f} s/bar)")
        print(f"batched precompute       : {batched:9.1f} s end to end ({first.forecasts_computed} forecasts "
              f"computed)  {naive / batched:6.1f}x faster than published")
        print(f"cached rerun             : {rerun:9.1f} s ({second.forecasts_reused} forecasts reused)  "
              f"{naive / rerun:6.1f}x faster than published")
        dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
        rate = gemm_gflops(dtype)
        flops = first.forecasts_computed * forecast_flops(TOKENIZER_CONFIGS["Kronos-Tokenizer-2k"],
                                                          MODEL_CONFIGS["Kronos-mini"], args.lookback, args.horizon,
                                                          args.paths)
        floor = flops / rate / 1e9
        print(f"compute floor            : {floor:9.1f} s ({flops / 1e12:.1f} TFLOP at this machine's {rate:.0f} "
              f"GFLOP/s {args.precision} product rate)  batched precompute takes {batched / floor:.2f}x the floor")
        goal = GOALS[args.precision] * args.bars / 8760
        verdict = "below this machine's compute floor" if goal < floor else (
            "met" if batched <= goal else "missed")
        print(f"goal (a year in {GOALS[args.precision]:.0f} s)  : {goal:9.1f} s for these {args.bars} bars: {verdict}")
        if args.profile:
            print("\n".join(profile_batch(pair, args, dtype, rate)))
    print(header())


if __name__ == "__main__":
    main()
