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
    python benchmarks/bench_sweep.py --screen         # the screening pass on a year: points/s, agreement
    python benchmarks/bench_sweep.py --concurrent 2 --pg postgresql+psycopg://...   # N processes, one study
    python benchmarks/bench_sweep.py --ray-fault      # Ray precompute with one actor's process killed

The screening and concurrency runs use the tests' tiny random pair (32 + 4, 4 paths): their
cost is the replay and the study's coordination, not the model.
"""
from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
import warnings
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


def tiny_settings(tmp: str, db: str, **sweep) -> object:
    sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
    from factories import save_tiny_pair

    pair = save_tiny_pair(Path(tmp) / "tiny", max_context=128)
    return parse_settings({
        "model": {"name": str(pair), "device": "cpu"},
        "forecast": {"lookback": 32, "horizon": 4, "sample_count": 4, "batch_windows": 512},
        "strategy": {"params": {"long_threshold": 0.6, "short_threshold": 0.3}},
        "database": {"url": db}, "sweep": sweep})


SCREEN_GRID = {"strategy.params.long_threshold": [0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.55, 0.65, 0.75],
               "strategy.params.short_threshold": [0.1, 0.2, 0.25, 0.3],
               "strategy.params.allow_short": [True, False], "strategy.params.sizing.fraction": [0.25, 0.5, 0.75, 0.95],
               "risk.stop_loss": [0.01, 0.02, 0.05, 0.1, None], "risk.take_profit": [0.02, 0.05, 0.1, 0.2, None],
               "costs.commission": [0.001]}  # 8,000 points


def screen_bench(candles, top: int) -> None:
    """The screening pass over a year of hourly bars: points per second, against one
    Backtrader trial, and its agreement with Backtrader on the `top` points it re-runs."""
    from kronos_trader.forecasting.service import ForecastService
    from kronos_trader.store import open_store
    from kronos_trader.sweep import build_space
    from kronos_trader.sweep.screen import best, replay
    from kronos_trader.sweep.space import with_params

    with tempfile.TemporaryDirectory() as tmp:
        settings = tiny_settings(tmp, f"sqlite:///{tmp}/screen.db", sampler="grid", objective="sharpe",
                                 params=SCREEN_GRID)
        service = ForecastService.from_settings(settings, open_store(settings.database.url), False)
        start = time.perf_counter()
        service.forecast_series(candles, "SYN/USDT", "1h")
        print(f"screening: {service.computed} forecasts stored in {time.perf_counter() - start:.1f} s (tiny pair)")
        grid = build_space(settings, settings.sweep).grid
        for label in ("first call, numba's compiled code loaded or compiled", "second call"):
            screen = replay(settings, candles, service, "SYN/USDT", "1h", grid)
            print(f"screening pass ({label}): {len(grid):,} points over {len(candles):,} bars in "
                  f"{screen.seconds:.2f} s = {screen.rate:,.0f} points/s (goal >= 1,000)", flush=True)
        gaps, seconds = [], []
        for point in best(grid, screen, top):
            i = grid.index(point)
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # P(up) resolution notes of the 4-path tiny pair
                exact = run_backtest(with_params(settings, point), candles, "SYN/USDT", "1h", None,
                                     progress=False, service=service).metrics["strategy"]
            seconds.append(time.perf_counter() - start)
            gaps.append({k: abs(float(screen.metrics[k][i]) - float(exact[k]))
                         for k in ("sharpe", "total_return", "max_drawdown", "trades")})
        per_trial = sum(seconds) / len(seconds)
        print(f"Backtrader re-runs of the best {top}: {per_trial:.2f} s each = {1 / per_trial:.2f} points/s; "
              f"the replay is {screen.rate * per_trial:,.0f}x faster per point")
        print("largest gap replay vs Backtrader on those points: "
              + ", ".join(f"{k} {max(g[k] for g in gaps):.2g}" for k in gaps[0]))


def concurrent_bench(candles, pg_url: str, processes: int, trials: int) -> None:
    """`processes` sweep commands at once on one PostgreSQL study, against one process
    running the same budget alone (same machine, same run): trials per second, duplicates."""
    import os
    import subprocess

    import optuna
    import yaml

    from kronos_trader.sweep.storage import study_storage

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "candles.csv"
        candles.to_csv(path)
        settings = tiny_settings(tmp, pg_url)
        raw = settings.model_dump(mode="json")
        raw["data"]["path"] = str(path)
        config = Path(tmp) / "config.yaml"
        config.write_text(yaml.safe_dump(raw))
        for n in (1, processes):
            name = f"bench-{n}-{os.getpid()}-{time.time_ns()}"
            command = [sys.executable, "-c", "from kronos_trader.cli import app; app()", "sweep", "-c", str(config),
                       "--sampler", "tpe", "--trials", str(trials), "--name", name, "--no-progress",
                       "--param", "strategy.params.long_threshold=0.3:0.7", "--param", "risk.stop_loss=0.01:0.1"]
            start = time.perf_counter()
            procs = [subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                     for _ in range(n)]
            errors = [p.communicate()[1] for p in procs]
            seconds = time.perf_counter() - start
            if any(p.returncode for p in procs):
                raise SystemExit(f"a sweep process failed: {[e.strip().splitlines()[-1:] for e in errors]}")
            study = optuna.load_study(study_name=name, storage=study_storage(pg_url))
            done = [t for t in study.trials if t.state.name == "COMPLETE"]
            points = [tuple(sorted(t.params.items())) for t in done]
            print(f"{n} process(es), one PostgreSQL study, {trials} TPE trials: {len(done)} complete in {seconds:.1f} s "
                  f"= {len(done) / seconds:.2f} trials/s (model load and forecast read-back included), "
                  f"duplicates {len(points) - len(set(points))}", flush=True)


def ray_fault_bench(candles, windows: int, after_s: float) -> None:
    """Ray precompute on 2 actors with one actor's process killed (SIGKILL) `after_s` seconds
    in: does it finish, are all windows stored, and how much of the killed actor's work was kept."""
    import os
    import signal
    import threading

    import ray

    def actor_pids() -> list[int]:
        """Ray titles an actor's process `ray::ForecastShards...`."""
        pids = []
        for entry in Path("/proc").iterdir():
            try:
                if entry.name.isdigit() and b"ray::ForecastShards" in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                continue
        return pids

    with tempfile.TemporaryDirectory() as tmp:
        settings = tiny_settings(tmp, f"sqlite:///{tmp}/fault.db", executor="ray", workers=2)
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
        killed = []

        def kill_one():
            time.sleep(after_s)
            alive = actor_pids()
            if alive:
                os.kill(alive[0], signal.SIGKILL)
                killed.append(alive[0])

        try:
            executor = RayExecutor(settings, progress=False)
            threading.Thread(target=kill_one, daemon=True).start()
            start = time.perf_counter()
            window = candles.iloc[:windows + 31]
            computed, _ = executor.precompute(SweepData({"SYN/USDT": window}, "1h"))
            seconds = time.perf_counter() - start
        finally:
            ray.shutdown()
        from kronos_trader.forecasting.service import ForecastService
        from kronos_trader.store import open_store

        check = ForecastService.from_settings(settings, open_store(settings.database.url), False, model=executor.model)
        check.forecast_series(window, "SYN/USDT", "1h")  # reads only: a missing window would raise
        what = f"pid {killed[0]}" if killed else "none was alive"
        print(f"ray precompute, 2 actors, one killed after {after_s:.0f} s ({what}): finished in {seconds:.1f} s, "
              f"{check.reused} of {windows} windows stored; the calls that returned computed {computed}, so "
              f"{windows - computed} were kept from the killed actor's stored batches (work lost: at most its batch "
              f"in flight, {settings.forecast.batch_windows} windows)", flush=True)


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
    parser.add_argument("--screen", action="store_true", help="only the screening pass on --bars bars")
    parser.add_argument("--top", type=int, default=5, help="points the screening pass re-runs in Backtrader")
    parser.add_argument("--concurrent", type=int, default=0, help="only: N sweep processes on one --pg study")
    parser.add_argument("--pg", help="PostgreSQL URL for --concurrent")
    parser.add_argument("--ray-fault", action="store_true", help="only: Ray precompute with an actor killed")
    args = parser.parse_args()
    sample = load_candles(SAMPLE_DATA_PATH)
    if args.ray_fault:
        return ray_fault_bench(sample, min(args.bars, 3000), 20.0)
    if args.screen:
        return screen_bench(sample.iloc[-(args.bars + 31):], args.top)
    if args.concurrent:
        if not args.pg:
            raise SystemExit("--concurrent needs --pg URL (a PostgreSQL database the processes share)")
        return concurrent_bench(sample.iloc[-min(args.bars, 400):], args.pg, args.concurrent, args.trials)
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
