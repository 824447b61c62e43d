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

import torch
from common import build_pair, close_scores, header, held_out_windows, print_scores, random_inputs

from kronos import KronosPredictor, Sampling, generate_tokens, precision
from kronos.generation import generate_cached


def speed_and_agreement(args) -> None:
    tokenizer, model, context = build_pair("kronos-mini")
    x, xs, ys, u = random_inputs(args.windows, 256, 24, 8, seed=3)
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
    lookback, horizon = 256, 24
    frames, actual = held_out_windows(lookback, horizon, args.score_windows)
    results = {}
    for label, prec, seed in (("float32", "float32", 1), ("float32, 2nd seed", "float32", 2), ("bf16", "bf16", 1)):
        predictor = KronosPredictor.from_pretrained("kronos-nano", device="cpu", precision=prec)
        results[label] = close_scores(predictor.forecast_batch(frames, pred_len=horizon, sample_count=args.paths,
                                                               verbose=False, seed=seed), actual)
    print(f"kronos-nano on {args.score_windows} held-out windows of the sample ({lookback} + {horizon}, "
          f"{args.paths} paths), close:")
    print_scores(results, "float32", "float32, 2nd seed", "bf16")


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
