"""What the opt-in approximate sliding window costs and buys, measured like bf16: speed, token
agreement and forecast scores against the exact path.

When history + forecast exceed the model's context, the exact path reruns the slid window
at every step (as the published code does); `sliding="approximate"` keeps the caches and
attends to the latest `max_context` keys (`kronos.generation.generate_tokens`).

Speed and agreement: one window of `--lookback` bars + `--steps` (default 600 + 120: the
window slides from the first step) with a random-weight pair of the official configs,
exact and approximate alternating, `--repeats` times; greedy tokens compared step by step.
Scores: the bundled kronos-nano (trained, context 512) on held-out windows of the bundled
sample, 512 bars + 24 (sliding from the second step), CRPS of the close and the coverage
of the 90% band, exact vs approximate; the exact score under a second seed shows the
sampling noise the difference should be compared with.

    python benchmarks/bench_sliding.py                              # Kronos-small, 600 + 120
    python benchmarks/bench_sliding.py --model kronos-mini --score-windows 16
"""
from __future__ import annotations

import kronos  # noqa: F401  (first: kronos sets OpenMP's wait policy before torch loads, kronos/runtime.py)

import argparse
import statistics
import time

from bench_generation import spread
from common import build_pair, close_scores, header, held_out_windows, print_scores, random_inputs

from kronos import KronosPredictor, Sampling, generate_cached, generate_tokens

MODES = ("exact", "approximate")


def speed_and_agreement(args) -> None:
    tokenizer, model, _ = build_pair(args.model)
    context = args.context
    x, xs, ys, u = random_inputs(1, args.lookback, args.steps, 1)
    sampling = Sampling(T=1.0, top_k=0, top_p=0.9)
    times: dict[str, list[float]] = {m: [] for m in MODES}
    for mode in MODES:  # warm-up
        generate_cached(tokenizer, model, x, xs, ys, context, args.steps, sampling, u, sliding=mode)
    for _ in range(args.repeats):
        for mode in MODES:
            start = time.perf_counter()
            generate_cached(tokenizer, model, x, xs, ys, context, args.steps, sampling, u, sliding=mode)
            times[mode].append(time.perf_counter() - start)
    greedy = Sampling(T=1.0, top_k=1, top_p=1.0)
    tokens = {m: generate_tokens(tokenizer, model, x, xs, ys, context, args.steps, greedy, u, sliding=m)[1]
              for m in MODES}
    same = (tokens["exact"][0] == tokens["approximate"][0]) & (tokens["exact"][1] == tokens["approximate"][1])
    first = int(same[0].logical_not().int().argmax()) if not same.all() else args.steps
    ratio = statistics.median(times["exact"]) / statistics.median(times["approximate"])
    print(f"{args.model} config, {args.lookback} + {args.steps}, 1 path, top_p 0.9 (context {context}):")
    print(f"  exact {spread(times['exact'])} s   approximate {spread(times['approximate'])} s   "
          f"speed-up {ratio:.1f}x")
    print(f"  greedy tokens equal to exact: {same.float().mean():.1%} of steps; first divergence at step {first}")


def scores(args) -> None:
    lookback, horizon = 512, 24
    frames, actual = held_out_windows(lookback, horizon, args.score_windows)
    results, times = {}, {}
    for label, mode, seed in (("exact", "exact", 1), ("exact, 2nd seed", "exact", 2),
                              ("approximate", "approximate", 1)):
        # 512 bars is off the nano's card on purpose: this measures the slide
        predictor = KronosPredictor.from_pretrained("kronos-nano", device="cpu", sliding=mode, warn_window=False)
        start = time.perf_counter()
        forecasts = predictor.forecast_batch(frames, pred_len=horizon, sample_count=args.paths, verbose=False,
                                             seed=seed)
        times[label] = f"{time.perf_counter() - start:6.1f} s"
        results[label] = close_scores(forecasts, actual)
    print(f"kronos-nano on {args.score_windows} held-out windows of the sample ({lookback} + {horizon}, "
          f"{args.paths} paths), close:")
    print_scores(results, "exact", "exact, 2nd seed", "approximate", times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="kronos-small", help="config of the speed case")
    parser.add_argument("--lookback", type=int, default=600)
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--context", type=int, default=512, help="max_context of the speed case")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--score-windows", type=int, default=32)
    parser.add_argument("--paths", type=int, default=16, help="paths per scored forecast")
    args = parser.parse_args()
    print(header())
    speed_and_agreement(args)
    scores(args)
    print(header())


if __name__ == "__main__":
    main()
