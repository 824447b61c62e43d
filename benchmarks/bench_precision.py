"""What opt-in bf16 costs and buys: speed, token agreement and forecast scores vs float32.

Speed and token agreement: batched generation with the Kronos-mini config (random weights),
256 bars + 24 steps, 8 paths, `--windows` windows in one call, float32 vs bf16 in the same
run; agreement is measured on greedy tokens. Scores: the bundled kronos-nano model (trained)
on held-out windows of the bundled sample, CRPS of the close and the coverage of the 90%
band (5%-95% of the paths), float32 vs bf16; the float32 score under a second seed shows
the sampling noise the bf16 difference should be compared with.

    python benchmarks/bench_precision.py                 # 64 windows (about 2 minutes on 2 cores)
"""
from __future__ import annotations

import kronos  # noqa: F401  (first: kronos sets OpenMP's wait policy before torch loads, kronos/runtime.py)

import argparse
import time

import numpy as np
import torch
from common import build_pair, header

from kronos import KronosPredictor, Sampling, generate_tokens, precision
from kronos.generation import generate_cached
from kronos_trader.data import SAMPLE_DATA_PATH, load_candles
from kronos_trader.evaluation.metrics import coverage, crps_ensemble


def batch_inputs(windows: int, n: int, steps: int, paths: int):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(windows, n, 6, generator=g).clamp(-5, 5)
    stamps = torch.stack([torch.randint(0, k, (windows, n + steps), generator=g) for k in (60, 24, 7, 32, 13)],
                         -1).float()
    return x, stamps[:, :n], stamps[:, n:], torch.rand(windows, paths, steps, 2, generator=g)


def speed_and_agreement(args) -> None:
    tokenizer, model, context = build_pair("kronos-mini")
    x, xs, ys, u = batch_inputs(args.windows, 256, 24, 8)
    sampling = Sampling(T=1.0, top_k=0, top_p=0.9)
    times = {}
    for dtype in (torch.float32, torch.bfloat16):
        call = (tokenizer, model, x, xs, ys, context, 24, sampling, u, dtype)
        generate_cached(*call)  # warm-up
        start = time.perf_counter()
        generate_cached(*call)
        times[dtype] = time.perf_counter() - start
    greedy = Sampling(T=1.0, top_k=1, top_p=1.0)
    tokens = {dtype: generate_tokens(tokenizer, model, x, xs, ys, context, 24, greedy, u[:, :1], dtype)[1]
              for dtype in (torch.float32, torch.bfloat16)}
    same = [(a == b) for a, b in zip(tokens[torch.float32], tokens[torch.bfloat16])]
    both = same[0] & same[1]
    first_diff = torch.where(both.all(1), 24, (~both).int().argmax(1)).float()
    per_window = args.windows
    print(f"batched generation, Kronos-mini config, {per_window} windows x 8 paths, 256 + 24:")
    print(f"  float32 {times[torch.float32]:7.2f} s   bf16 {times[torch.bfloat16]:7.2f} s   "
          f"bf16 speed-up {times[torch.float32] / times[torch.bfloat16]:.2f}x   "
          f"(8,760 windows: {times[torch.float32] / per_window * 8760:.0f} s vs "
          f"{times[torch.bfloat16] / per_window * 8760:.0f} s, extrapolated)")
    print(f"  greedy tokens equal to float32: s1 {same[0].float().mean():.1%}, s2 {same[1].float().mean():.1%}; "
          f"windows identical over all 24 steps {both.all(1).float().mean():.1%}; "
          f"first divergence at step {first_diff.mean():.1f} on average")


def scores(args) -> None:
    candles = load_candles(SAMPLE_DATA_PATH)
    lookback, horizon = 256, 24
    ends = np.linspace(len(candles) - args.score_windows * horizon - horizon, len(candles) - horizon,
                       args.score_windows).astype(int)
    frames = [candles.iloc[e - lookback:e] for e in ends]
    actual = np.stack([candles["close"].to_numpy()[e:e + horizon] for e in ends])  # (W, horizon)
    results = {}
    for label, prec, seed in (("float32", "float32", 1), ("float32, 2nd seed", "float32", 2), ("bf16", "bf16", 1)):
        predictor = KronosPredictor.from_pretrained("kronos-nano", device="cpu", precision=prec)
        forecasts = predictor.forecast_batch(frames, pred_len=horizon, sample_count=args.paths, verbose=False,
                                             seed=seed)
        paths = np.stack([f.paths[:, :, 3] for f in forecasts])  # (W, paths, horizon)
        crps = crps_ensemble(np.moveaxis(paths, 1, -1), actual).mean()
        lo, hi = np.quantile(paths, 0.05, axis=1), np.quantile(paths, 0.95, axis=1)
        results[label] = (crps, coverage(lo, hi, actual))
    print(f"kronos-nano on {args.score_windows} held-out windows of the sample ({lookback} + {horizon}, "
          f"{args.paths} paths), close:")
    for label, (crps, cov) in results.items():
        print(f"  {label:18} CRPS {crps:9.3f}   90% band coverage {cov:6.1%}")
    noise = abs(results["float32"][0] - results["float32, 2nd seed"][0])
    print(f"  bf16 - float32: CRPS {results['bf16'][0] - results['float32'][0]:+.3f} (seed noise {noise:.3f}), "
          f"coverage {results['bf16'][1] - results['float32'][1]:+.1%} "
          f"(seed noise {abs(results['float32'][1] - results['float32, 2nd seed'][1]):.1%})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=64, help="windows in the batched speed case")
    parser.add_argument("--score-windows", type=int, default=48)
    parser.add_argument("--paths", type=int, default=16, help="paths per scored forecast")
    args = parser.parse_args()
    print(header())
    support = precision.cpu_bf16_support()
    if support is None:
        raise SystemExit("this CPU has no native bf16 (AVX512-BF16 or AMX): bf16 is refused here")
    print(f"native bf16: {support}")
    speed_and_agreement(args)
    scores(args)
    print(header())


if __name__ == "__main__":
    main()
