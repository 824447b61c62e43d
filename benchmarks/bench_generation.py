"""Cached vs uncached (published) generation, timed in the same run.

Random weights with the official Kronos-mini and Kronos-small configs. Prints the median
wall time of each path, the speed-up, and the share of this CPU's matmul peak that the
cached path reaches (FLOPs counted by torch's FlopCounterMode). The uncached baseline is
the published algorithm on torch's default kernels, as the published code runs.

    python benchmarks/bench_generation.py            # everything (about 15 minutes on 2 cores)
    python benchmarks/bench_generation.py --quick    # 1-path cases and a smaller batch
"""
from __future__ import annotations

import argparse
import math
import statistics
import time

import numpy as np
import pandas as pd
import torch
from torch.utils.flop_counter import FlopCounterMode

from kronos import MODEL_CONFIGS, PAIRINGS, TOKENIZER_CONFIGS, Kronos, KronosPredictor, KronosTokenizer, Sampling
from kronos.generation import generate_cached, generate_reference
from kronos.linear import PackedLinear, stock_kernels


def matmul_peak(n: int = 2048, repeats: int = 10) -> float:
    """GFLOP/s of a large float32 matrix product with the fastest kernel torch has here
    (MKL's matmul or oneDNN's packed linear, which the cached path uses): the practical peak."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    linear = PackedLinear(b, None)
    best = 0.0
    for product in (lambda: a @ b, lambda: linear(a)):
        product()
        start = time.perf_counter()
        for _ in range(repeats):
            product()
        best = max(best, 2 * n ** 3 * repeats / (time.perf_counter() - start) / 1e9)
    return best


def _linear_flops(x_shape, weight_shape, *args, out_shape=None, **kwargs) -> int:
    return 2 * math.prod(x_shape) * out_shape[-1]


# FlopCounterMode knows aten's products, not oneDNN's packed linear
FLOP_FORMULAS = {torch.ops.mkldnn._linear_pointwise: _linear_flops} \
    if hasattr(torch.ops.mkldnn, "_linear_pointwise") else {}


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def build(name: str):
    torch.manual_seed(0)
    tokenizer_name, context = PAIRINGS[name]
    return (KronosTokenizer(**TOKENIZER_CONFIGS[tokenizer_name]).eval(), Kronos(**MODEL_CONFIGS[name]).eval(),
            context)


def case(tokenizer, model, context, n: int, steps: int, paths: int, args) -> dict:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, n, 6, generator=g).clamp(-5, 5)
    stamps = torch.stack([torch.randint(0, k, (1, n + steps), generator=g) for k in (60, 24, 7, 32, 13)], -1).float()
    u = torch.rand(1, paths, steps, 2, generator=g)
    sampling = Sampling(T=1.0, top_k=0, top_p=0.9)
    call = (tokenizer, model, x, stamps[:, :n], stamps[:, n:], context, steps, sampling, u)
    generate_cached(*call)  # warm-up (packs weights once per model)
    cached = timed(lambda: generate_cached(*call), args.repeats)
    with FlopCounterMode(display=False, custom_mapping=FLOP_FORMULAS) as counter:
        generate_cached(*call)
    flops = counter.get_total_flops()
    with stock_kernels():  # the published algorithm on torch's default kernels, as its users run it
        reference = timed(lambda: generate_reference(*call), args.reference_repeats)
        same = torch.allclose(generate_cached(*call), generate_reference(*call), atol=1e-4, rtol=1e-4)
    return {"cached_s": cached, "uncached_s": reference, "speedup": reference / cached,
            "cached_gflops": flops / cached / 1e9, "equal": same}


def batch_case(tokenizer, model, context, series: int, n: int, steps: int, paths: int, args) -> dict:
    rng = np.random.default_rng(0)
    frames = []
    for k in range(series):
        close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
        frames.append(pd.DataFrame({"open": close, "high": close * 1.002, "low": close * 0.998, "close": close,
                                    "volume": rng.gamma(2, 50, n)},
                                   index=pd.date_range("2024-01-01", periods=n, freq="h")))
    fast = KronosPredictor(model, tokenizer, "cpu", context)
    slow = KronosPredictor(model, tokenizer, "cpu", context, cached=False)
    run = {"pred_len": steps, "sample_count": paths, "verbose": False, "seed": 3}
    fast.predict_batch(frames, **run)
    cached = timed(lambda: fast.predict_batch(frames, **run), args.repeats)
    with stock_kernels():
        reference = timed(lambda: slow.predict_batch(frames, **run), args.reference_repeats)
    return {"cached_s": cached, "uncached_s": reference, "speedup": reference / cached}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1-path cases only and a batch of 4")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of the cached path")
    parser.add_argument("--reference-repeats", type=int, default=1, help="timed runs of the uncached path")
    parser.add_argument("--models", default="Kronos-mini,Kronos-small")
    parser.add_argument("--batch-models", default="Kronos-mini,Kronos-small",
                        help="models that also run the predict_batch case (its baseline is long)")
    args = parser.parse_args()
    peak = matmul_peak()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; matmul peak {peak:.0f} GFLOP/s")
    print(f"{'model':13} {'case':22} {'cached s':>9} {'uncached s':>11} {'speed-up':>9} {'GFLOP/s':>8} "
          f"{'% peak':>7} equal")
    for name in args.models.split(","):
        tokenizer, model, context = build(name)
        small_context = min(context, 512)  # the cases are about a 512-token window
        for n, steps in ((400, 120), (392, 120)):
            for paths in ((1,) if args.quick else (1, 8)):
                r = case(tokenizer, model, small_context, n, steps, paths, args)
                print(f"{name:13} {f'{n}+{steps}, {paths} path(s)':22} {r['cached_s']:9.3f} {r['uncached_s']:11.2f} "
                      f"{r['speedup']:8.1f}x {r['cached_gflops']:8.1f} {r['cached_gflops'] / peak:7.1%} {r['equal']}",
                      flush=True)
        if name not in args.batch_models.split(","):
            continue
        series = 4 if args.quick else 16
        r = batch_case(tokenizer, model, small_context, series, 400, 120, 1, args)
        print(f"{name:13} {f'predict_batch of {series}':22} {r['cached_s']:9.3f} {r['uncached_s']:11.2f} "
              f"{r['speedup']:8.1f}x", flush=True)


if __name__ == "__main__":
    main()
