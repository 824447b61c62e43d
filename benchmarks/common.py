"""Shared benchmark helpers: the machine header, a competing load, random-weight pairs,
the compute floor and a profile of a generation call by phase and kernel kind."""
from __future__ import annotations

import multiprocessing
import os
import platform
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from contextlib import ExitStack, contextmanager
from pathlib import Path

import torch

from kronos import HUB_MODELS, Kronos, KronosTokenizer, ahead, fast, generation, runtime


def cpu_model() -> str:
    info = Path("/proc/cpuinfo")
    if info.exists():
        for line in info.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _cpu_times() -> tuple[int, int] | None:
    """(steal, total) jiffies of all CPUs from /proc/stat (None where the OS has no such file)."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return None
    return (fields[7] if len(fields) > 7 else 0), sum(fields)


_FIRST_TIMES: list = []


def header() -> str:
    """CPU, kernels, threads and how busy the machine is: every benchmark prints it first,
    and again at the end, where it adds the share of CPU time the hypervisor gave to other
    guests meanwhile (steal time: on a shared VM, figures then run slow by about that much)."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    cores = os.cpu_count() or 1
    busy = "" if load < 0.5 * cores else f"  (NOT QUIET: load {load:.1f} on {cores} cores; figures are noisy)"
    times, stolen = _cpu_times(), ""
    if not _FIRST_TIMES:
        _FIRST_TIMES.append(times)
    elif times and _FIRST_TIMES[0]:
        steal, total = times[0] - _FIRST_TIMES[0][0], times[1] - _FIRST_TIMES[0][1]
        share = 100 * steal / max(1, total)
        stolen = f"; steal {share:.1f}% of CPU time since the first header" + (
            "  (NOT QUIET: a shared VM; figures are noisy)" if share > 5 else "")
    return (f"{cpu_model()}, {cores} cores; {runtime.describe()}; oneDNN "
            f"{'on' if torch.backends.mkldnn.is_available() else 'off'}; load {load:.2f}{busy}{stolen}")


def gemm_gflops(dtype: torch.dtype = torch.float32) -> float:
    """This machine's matrix-product rate now, in GFLOP/s: the best of several products of
    the shapes generation runs (4096 x 256 by 256 x 1024), on torch's default kernels."""
    a, b = torch.randn(4096, 256, dtype=dtype), torch.randn(256, 1024, dtype=dtype)
    best = float("inf")
    for _ in range(12):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * a.shape[0] * a.shape[1] * b.shape[1] / best / 1e9


def forecast_flops_by_phase(tokenizer: dict, model: dict, lookback: int, horizon: int,
                            paths: int) -> dict[str, float]:
    """Floating-point operations of one cached forecast (products and attention) by phase,
    counted from the configs: the tokenizer encodes the window, the model runs it once, each
    path takes `horizon` one-token steps, the decoder runs the history once and the paths'
    rows. The compute floor of a phase is this over the machine's product rate (`gemm_gflops`)."""
    def block(d: int, ff: int, keys: float) -> float:  # q, k, v, out; SwiGLU; q.k and p.v
        return 4 * d * d + 3 * d * ff + 2 * d * keys

    dt, ft = tokenizer["d_model"], tokenizer["ff_dim"]
    d, ff, layers, vocab = model["d_model"], model["ff_dim"], model["n_layers"], 2 ** model["s1_bits"]
    enc_blocks, dec_blocks = tokenizer["n_enc_layers"] - 1, tokenizer["n_dec_layers"] - 1
    bits = tokenizer["s1_bits"] + tokenizer["s2_bits"]
    steps = paths * horizon
    ctx = lookback + horizon / 2  # mean keys seen by a generated token
    macs = {
        "tokenizer encode": lookback * (enc_blocks * block(dt, ft, lookback / 2) + tokenizer["d_in"] * dt + dt * bits),
        "prefill": lookback * (layers * block(d, ff, lookback / 2) + 2 * d * d + 2 * d * d),  # + fusion, dep keys
        "steps": steps * (layers * block(d, ff, ctx) + 2 * d * d + 2 * vocab * d + 4 * d * d + 2 * d * ctx),
        "decode of the paths": lookback * ((dec_blocks - 1) * block(dt, ft, lookback / 2) + 2 * dt * dt + bits * dt)
        + steps * (dec_blocks * block(dt, ft, ctx) + bits * dt + dt * tokenizer["d_in"]),  # history, then rows
    }
    return {phase: 2 * m for phase, m in macs.items()}


def forecast_flops(tokenizer: dict, model: dict, lookback: int, horizon: int, paths: int) -> float:
    """Floating-point operations of one cached forecast, all phases (`forecast_flops_by_phase`)."""
    return sum(forecast_flops_by_phase(tokenizer, model, lookback, horizon, paths).values())


def random_inputs(series: int, n: int, steps: int, paths: int, seed: int = 1):
    """Random normalised windows (series, n, 6), their time features and the forecast's,
    and the sampling uniforms (series, paths, steps, 2): generation's inputs."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(series, n, 6, generator=g).clamp(-5, 5)
    stamps = torch.stack([torch.randint(0, k, (series, n + steps), generator=g) for k in (60, 24, 7, 32, 13)],
                         -1).float()
    return x, stamps[:, :n], stamps[:, n:], torch.rand(series, paths, steps, 2, generator=g)


def build_pair(name: str, seed: int = 0) -> tuple[KronosTokenizer, Kronos, int]:
    """A random-weight pair with the official configs of hub model `name` ('kronos-small')."""
    spec = HUB_MODELS[name.lower()]
    torch.manual_seed(seed)
    return (KronosTokenizer(**spec.tokenizer_config).eval(), Kronos(**spec.model_config).eval(), spec.max_context)


def _spin(seconds: float) -> None:
    end = time.monotonic() + seconds
    x = 0
    while time.monotonic() < end:
        x += 1


@contextmanager
def competing_load(processes: int, seconds: float = 3600):
    """`processes` busy-looping processes (other CPU-heavy jobs on the machine) while inside."""
    workers = [multiprocessing.Process(target=_spin, args=(seconds,), daemon=True) for _ in range(processes)]
    for w in workers:
        w.start()
    try:
        yield
    finally:
        for w in workers:
            w.terminate()
            w.join()


def held_out_windows(lookback: int, horizon: int, count: int):
    """`count` windows of the bundled sample's last bars (lookback rows each) and the closes
    that followed them (count x horizon): the scored forecasts of bench_precision/sliding."""
    import numpy as np
    from kronos_trader.data import SAMPLE_DATA_PATH, load_candles

    candles = load_candles(SAMPLE_DATA_PATH)
    ends = np.linspace(len(candles) - count * horizon - horizon, len(candles) - horizon, count).astype(int)
    frames = [candles.iloc[e - lookback:e] for e in ends]
    return frames, np.stack([candles["close"].to_numpy()[e:e + horizon] for e in ends])


def close_scores(forecasts, actual) -> tuple[float, float]:
    """CRPS of the close and the coverage of the 90% band (5%-95% of the paths)."""
    import numpy as np
    from kronos_trader.evaluation.metrics import coverage, crps_ensemble

    paths = np.stack([f.paths[:, :, 3] for f in forecasts])  # (W, paths, horizon)
    crps = crps_ensemble(np.moveaxis(paths, 1, -1), actual).mean()
    lo, hi = np.quantile(paths, 0.05, axis=1), np.quantile(paths, 0.95, axis=1)
    return float(crps), float(coverage(lo, hi, actual))


def print_scores(results: dict, reference: str, second_seed: str, candidate: str, notes: dict | None = None) -> None:
    """One line per run, then the candidate's difference beside the seed-to-seed noise."""
    for label, (crps, cov) in results.items():
        print(f"  {label:18} CRPS {crps:9.3f}   90% band coverage {cov:6.1%}   {(notes or {}).get(label, '')}")
    noise = abs(results[reference][0] - results[second_seed][0])
    print(f"  {candidate} - {reference}: CRPS {results[candidate][0] - results[reference][0]:+.3f} "
          f"(seed noise {noise:.3f}), coverage {results[candidate][1] - results[reference][1]:+.1%} "
          f"(seed noise {abs(results[reference][1] - results[second_seed][1]):.1%})")


_TOTALS_LOCK = threading.Lock()


@contextmanager
def _timed(owner, name: str, totals: dict):
    """Accumulate the wall time of calls to `owner.name` under `name`."""
    real = getattr(owner, name)

    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return real(*args, **kwargs)
        finally:
            with _TOTALS_LOCK:  # the slid windows' helper thread adds to the totals too
                totals[name] += time.perf_counter() - start

    setattr(owner, name, wrapper)
    try:
        yield
    finally:
        setattr(owner, name, real)


PHASES = [(generation, "_encode", "tokenizer encode"),
          (generation, "_prefill", "prefill + slid windows' history passes"),
          (ahead.WindowsAhead, "take", "slid windows: passes awaited or run here"),
          (fast.FastKronos, "extend", "steps + slid windows' forecast rows"), (fast.FastKronos, "s1_logits", "s1 head"),
          (fast.FastKronos, "s2_logits", "dependency layer + s2 head"),
          (generation, "nucleus", "nucleus kept set"), (generation, "sample_tokens", "sampling (incl. nucleus)"),
          (generation, "_decode_suffix", "tokenizer decode of the paths")]
# the timed calls that make up each phase of `forecast_flops_by_phase` (the nucleus runs
# inside `sample_tokens`): the phases' floors line up with them where no window slides (slid
# windows' history passes are timed under `_prefill`, a helper's in parallel with the steps)
FLOOR_PHASES = {"tokenizer encode": ("_encode",), "prefill": ("_prefill",),
                "steps": ("extend", "s1_logits", "s2_logits", "sample_tokens"),
                "decode of the paths": ("_decode_suffix",)}
PRODUCT_OPS = ("linear", "addmm", "mm", "matmul", "mkldnn")
# batched small products (`bmm`): the decode steps' attention over each path's own keys, and
# one-row products split among threads (`PackedLinear`)
BATCHED_OPS = ("bmm",)


def profile_call(call: Callable[[], object]) -> tuple[float, dict[str, float], dict[str, float]]:
    """A warmed-up generation call's wall time, the wall time of each of its `PHASES` (by
    name), and the self CPU time of its kernels by kind: products, batched small products,
    fused attention, other ops (torch's profiler, on a third run; numpy's work is in none)."""
    call()
    totals: dict[str, float] = defaultdict(float)
    with ExitStack() as stack:
        for owner, name, _ in PHASES:
            stack.enter_context(_timed(owner, name, totals))
        start = time.perf_counter()
        call()
        whole = time.perf_counter() - start
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        call()
    kinds: dict[str, float] = defaultdict(float)
    for event in prof.key_averages():
        key = event.key.lower()
        kind = ("attention" if "attention" in key else "batched products" if any(op in key for op in BATCHED_OPS)
                else "products" if any(op in key for op in PRODUCT_OPS) else "other ops")
        kinds[kind] += event.self_cpu_time_total / 1e6
    return whole, totals, kinds
