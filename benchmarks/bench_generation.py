"""Our generation vs the published Kronos code itself, timed in the same run.

The baseline is the published implementation (PyPI `kronos-model-arch==0.1.0`, package
`model`; `pip install --no-deps kronos-model-arch==0.1.0 einops`): one random-weight
checkpoint with the official configs is loaded into both. Both decode greedily (top_k=1),
so the forecasts must agree; the table says whether they do. `--load N` repeats the
one-path case beside N busy processes (another job on the machine).

    python benchmarks/bench_generation.py                  # Kronos-small: 1 and 8 paths, + a busy run
    python benchmarks/bench_generation.py --quick          # 1 path only, no busy run
"""
from __future__ import annotations

import kronos  # noqa: F401  (first: kronos sets OpenMP's wait policy before torch loads, kronos/runtime.py)

import argparse
import statistics
import time

import numpy as np
import torch
from common import build_pair, competing_load, header

from kronos import Sampling, generate_cached, published

GREEDY = Sampling(T=1.0, top_k=1, top_p=1.0)


def timed(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def inputs(series: int, n: int, steps: int, paths: int, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(series, n, 6, generator=g).clamp(-5, 5)
    stamps = torch.stack([torch.randint(0, k, (series, n + steps), generator=g) for k in (60, 24, 7, 32, 13)],
                         -1).float()
    return x, stamps[:, :n], stamps[:, n:], torch.rand(series, paths, steps, 2, generator=g)


def case(pair, pub_pair, n: int, steps: int, paths: int, args, dtype=torch.float32) -> dict:
    tokenizer, model, context = pair
    x, xs, ys, u = inputs(1, n, steps, paths)
    context = min(context, 512)
    ours_call = lambda: generate_cached(tokenizer, model, x, xs, ys, context, steps, GREEDY, u, dtype)  # noqa: E731
    ours_call()  # warm-up: builds the fast path once per model
    ours_s, ours = timed(ours_call, args.repeats)
    pub_s, pub = timed(lambda: published.published_forecast(*pub_pair, x, xs, ys, context, steps, top_k=1,
                                                            sample_count=paths), 1)
    diff = float(np.abs(ours.mean(1).numpy() - pub).max())
    return {"ours": ours_s, "published": pub_s, "ratio": pub_s / ours_s, "diff": diff}


def row(model: str, label: str, r: dict) -> str:
    agree = "yes" if r["diff"] < 1e-3 else f"NO (max diff {r['diff']:.2g})"
    return (f"{model:13} {label:30} {r['ours']:8.2f} {r['published']:10.2f} {r['ratio']:8.1f}x  {agree}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1-path case only, no busy run")
    parser.add_argument("--models", default="kronos-small", help="comma-separated: kronos-mini,kronos-small,...")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of ours (the median is shown)")
    parser.add_argument("--load", type=int, default=2, help="busy processes beside the repeated 1-path case")
    args = parser.parse_args()
    if not published.available():
        raise SystemExit(f"the baseline needs the published code: {published.INSTALL_HINT}")
    print(header())
    print(f"{'model':13} {'case (greedy)':30} {'ours s':>8} {'published':>10} {'speed-up':>9}  agree")
    for name in args.models.split(","):
        pair = build_pair(name)
        pub_pair = published.published_pair(pair[0], pair[1])
        for paths in ((1,) if args.quick else (1, 8)):
            r = case(pair, pub_pair, 400, 120, paths, args)
            print(row(name, f"400 + 120, {paths} path(s)", r), flush=True)
        if not args.quick and args.load > 0:
            with competing_load(args.load):
                time.sleep(1)
                r = case(pair, pub_pair, 400, 120, 1, args)
            print(row(name, f"400 + 120, 1 path, {args.load} busy procs", r), flush=True)
    print(header())


if __name__ == "__main__":
    main()
