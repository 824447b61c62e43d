"""Sweep cost: 50 trials over stored forecasts vs 50 independent backtests, and forecast
precompute throughput on 1 and 2 Ray workers.

The last year of hourly bars of the bundled sample; Kronos-mini config with random weights
(256 bars of context, 24 steps, 8 paths, a forecast at every bar). The sweep forecasts every
window once, then runs 50 TPE trials (thresholds, hysteresis, stop-loss) that read them
back. The baseline, 50 independent backtests, each forecast every window themselves: one
is timed here (fresh, no stored forecasts) and multiplied by 50. `--bars` shortens the
span; the figures are then also scaled to a year (linear in bars) and marked so.

    python benchmarks/bench_sweep.py                  # a full year (~15 min here)
    python benchmarks/bench_sweep.py --bars 1000      # a quick look, extrapolated to a year
"""
from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from kronos_trader.backtest.runner import run_backtest
from kronos_trader.config import parse_settings
from kronos_trader.data import SAMPLE_DATA_PATH, load_candles
from kronos_trader.sweep import SweepData, run_sweep
from kronos_trader.sweep.executors import RayExecutor

YEAR_BARS = 8760
OVERNIGHT_S = 8 * 3600


def save_mini_pair(directory: Path) -> Path:
    """The Kronos-mini pair of bench_backtest.py (the same random weights)."""
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_backtest import save_mini_pair as save

    return save(directory)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def settings_for(pair: Path, db: str, args, **sweep) -> object:
    return parse_settings({
        "model": {"name": str(pair), "device": "cpu"},
        "forecast": {"lookback": args.lookback, "horizon": args.horizon, "sample_count": args.paths,
                     "batch_windows": args.batch},
        "strategy": {"params": {"long_threshold": 0.6, "short_threshold": 0.3}},
        "database": {"url": f"sqlite:///{db}"},
        "sweep": {"sampler": "tpe", "trials": args.trials, "seed": 1, "objective": "sharpe",
                  "params": {"strategy.params.long_threshold": {"low": 0.5, "high": 0.8},
                             "strategy.params.hold_long_above": {"low": 0.3, "high": 0.5},
                             "risk.stop_loss": [0.03, 0.05, 0.08]}, **sweep}})


def ray_throughput(pair: Path, tmp: str, args, candles, workers: int) -> float:
    """Windows per second forecast by `workers` Ray actors into a fresh store."""
    import ray

    settings = settings_for(pair, f"{tmp}/ray{workers}.db", args, executor="ray", workers=workers)
    ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
    try:
        executor = RayExecutor(settings, progress=False)
        window = candles.iloc[:args.ray_bars + args.lookback - 1]
        start = time.perf_counter()
        computed, _ = executor.precompute(SweepData({"SYN/USDT": window}, "1h"))
        seconds = time.perf_counter() - start
    finally:
        ray.shutdown()
    print(f"ray precompute, {workers} worker(s): {computed} windows in {seconds:6.1f} s = "
          f"{computed / seconds:5.2f} windows/s (model loads included)", flush=True)
    return computed / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=YEAR_BARS, help="decision bars (default: a year)")
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--lookback", type=int, default=256)
    parser.add_argument("--horizon", type=int, default=24)
    parser.add_argument("--paths", type=int, default=8)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--ray-bars", type=int, default=256, help="windows for each Ray throughput run")
    parser.add_argument("--no-ray", action="store_true")
    args = parser.parse_args()
    sample = load_candles(SAMPLE_DATA_PATH)
    candles = sample.iloc[-(args.bars + args.lookback - 1):]
    scale = YEAR_BARS / args.bars
    note = "" if args.bars == YEAR_BARS else f" (scaled x{scale:.2f} to a year)"
    print(f"{cpu_model()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, CPU kernels: "
          f"{torch.backends.cpu.get_cpu_capability()}; the machine is shared and was not quiet")
    print(f"{args.bars} hourly decision bars of the bundled sample ({candles.index[0]} .. {candles.index[-1]}), "
          f"Kronos-mini config, {args.lookback} + {args.horizon}, {args.paths} paths, {args.trials} TPE trials")
    with tempfile.TemporaryDirectory() as tmp:
        pair = save_mini_pair(Path(tmp) / "mini")
        settings = settings_for(pair, f"{tmp}/sweep.db", args)
        data = SweepData({"SYN/USDT": candles}, "1h")
        start = time.perf_counter()
        summary = run_sweep(settings, data, progress=True)
        sweep_s = time.perf_counter() - start
        print(f"sweep ({summary.forecasts_computed} forecasts once + {summary.trials_run} trials): {sweep_s:8.1f} s"
              f"   year: {sweep_s * scale:8.0f} s{note}", flush=True)
        print(f"  of which forecasts {summary.forecast_seconds:.1f} s "
              f"({summary.forecasts_computed / summary.forecast_seconds:.2f} windows/s, local, "
              f"{torch.get_num_threads()} threads), trials {summary.trial_seconds:.1f} s "
              f"({summary.trial_seconds / max(summary.trials_run, 1):.2f} s each)", flush=True)
        start = time.perf_counter()
        one = run_backtest(settings, candles, "SYN/USDT", "1h", None, progress=False)  # forecasts it all itself
        independent_s = time.perf_counter() - start
        assert one.forecasts_computed == args.bars
        baseline = independent_s * args.trials
        print(f"{args.trials} independent backtests ({independent_s:.1f} s measured once, x{args.trials}): "
              f"{baseline:8.1f} s   year: {baseline * scale:8.0f} s{note}")
        print(f"sweep is {baseline / sweep_s:.1f}x faster than independent backtests; best trial "
              f"#{summary.study.best_trial.number} sharpe {summary.study.best_value:.3f}")
        local_rate = summary.forecasts_computed / summary.forecast_seconds
        rates = {}
        if not args.no_ray:
            for workers in (1, 2):
                rates[workers] = ray_throughput(pair, tmp, args, candles, workers)
    per_worker = rates.get(1, local_rate)
    windows = 100 * 3 * YEAR_BARS
    needed = windows / (per_worker * OVERNIGHT_S)
    source = "Ray, 1 worker" if rates else "local, 2 threads"
    print(f"on paper: 100 symbols x 3 years = {windows:,} windows; at {per_worker:.2f} windows/s per worker "
          f"({source}) an 8-hour night needs {needed:.0f} such workers (~{needed / 16:.0f} nodes of 16 cores "
          f"at this core speed), assuming linear scaling"
          + (f" (1 -> 2 workers here: x{rates[2] / rates[1]:.2f})" if len(rates) == 2 else ""))

if __name__ == "__main__":
    main()
