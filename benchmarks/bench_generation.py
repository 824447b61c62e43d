"""Our generation vs the published Kronos code itself, timed in the same run, at the settings
users run.

The baseline is the published implementation (PyPI `kronos-model-arch==0.1.0`, package
`model`; `pip install --no-deps kronos-model-arch==0.1.0 einops`): one random-weight
checkpoint with the official configs is loaded into both. Each case runs at the predictor's
default sampling (T=1.0, top_p=0.9: the nucleus filter every default forecast pays) and
greedily (top_k=1, where the forecasts must agree, and the table says whether they do).
Ours and the published code alternate, repetition by repetition, so a change in the
machine's load hits both; the table shows medians and the spread (min-max) over the
repetitions. `--profile` adds where our time goes at the default settings, phase by phase.
`--load N` repeats the one-path default case beside N busy processes.

    python benchmarks/bench_generation.py                  # Kronos-small: 1 and 8 paths, both samplings
    python benchmarks/bench_generation.py --quick          # 1 path only, no busy run
    python benchmarks/bench_generation.py --quick --profile --repeats 1
    python benchmarks/bench_generation.py --quick --samplings default --repeats 5   # the README's headline
"""
from __future__ import annotations

import kronos  # noqa: F401  (first: kronos sets OpenMP's wait policy before torch loads, kronos/runtime.py)

import argparse
import statistics
import time

import numpy as np
import torch
from common import PHASES, build_pair, competing_load, header, profile_call, random_inputs

from kronos import Sampling, generate_cached, published

SAMPLINGS = {"default (top_p 0.9)": Sampling(T=1.0, top_k=0, top_p=0.9),
             "greedy (top_k 1)": Sampling(T=1.0, top_k=1, top_p=1.0)}


def case(pair, pub_pair, n: int, steps: int, paths: int, sampling: Sampling, repeats: int) -> dict:
    """Ours and the published code, alternating, `repeats` times each."""
    tokenizer, model, context = pair
    x, xs, ys, u = random_inputs(1, n, steps, paths)
    context = min(context, 512)

    def ours_call():
        return generate_cached(tokenizer, model, x, xs, ys, context, steps, sampling, u)

    def pub_call():
        torch.manual_seed(0)  # the published code draws from torch's global generator
        return published.published_forecast(*pub_pair, x, xs, ys, context, steps, T=sampling.T, top_k=sampling.top_k,
                                             top_p=sampling.top_p, sample_count=paths)

    for call in (ours_call, pub_call):  # warm-up, both alike: no timed call pays first-call costs (our fast path)
        call()
    times: dict[str, list[float]] = {"ours": [], "published": []}
    ours = pub = None
    for _ in range(repeats):
        for name, call in (("ours", ours_call), ("published", pub_call)):
            start = time.perf_counter()
            out = call()
            times[name].append(time.perf_counter() - start)
            ours, pub = (out, pub) if name == "ours" else (ours, out)
    diff = float(np.abs(ours.mean(1).numpy() - pub).max()) if sampling.top_k == 1 else None
    ratios = [p / o for p, o in zip(times["published"], times["ours"])]
    return {**times, "ratio": statistics.median(times["published"]) / statistics.median(times["ours"]),
            "ratios": ratios, "diff": diff}


def spread(values: list[float]) -> str:
    med = statistics.median(values)
    if len(values) < 2:
        return f"{med:7.2f}"
    lo, hi = min(values), max(values)
    return f"{med:7.2f} ({lo:.2f}-{hi:.2f}, {100 * (lo / med - 1):+.0f}/{100 * (hi / med - 1):+.0f}%)"


def row(model: str, label: str, r: dict) -> str:
    agree = "n/a (sampled)" if r["diff"] is None else "yes" if r["diff"] < 1e-3 else f"NO (max diff {r['diff']:.2g})"
    ratios = f"{min(r['ratios']):.1f}-{max(r['ratios']):.1f}x" if len(r["ratios"]) > 1 else ""
    return (f"{model:13} {label:40} {spread(r['ours']):32} {spread(r['published']):32} {r['ratio']:6.1f}x "
            f"{ratios:12} {agree}")


def profile(pair, n: int, steps: int, paths: int, sampling: Sampling) -> list[str]:
    """Where our time goes, by phase (wall time of each phase's calls) and, within the whole
    call, products against attention kernels (torch's profiler, self CPU time)."""
    tokenizer, model, context = pair
    x, xs, ys, u = random_inputs(1, n, steps, paths)
    whole, totals, kinds = profile_call(
        lambda: generate_cached(tokenizer, model, x, xs, ys, min(context, 512), steps, sampling, u))
    op_total = sum(kinds.values()) or 1.0
    lines = [f"  whole call {whole:.2f} s (phases overlap: sampling includes the nucleus, the s1 head is timed "
             f"apart from the steps; slid windows' history passes run on a helper thread during the steps, `kronos.ahead`, and the "
             f"kernel shares below leave the helper's out)"]
    lines += [f"  {label:36} {totals[name]:7.3f} s  {100 * totals[name] / whole:5.1f}%" for _, name, label in PHASES]
    lines += ["  kernels (profiled run): " + ", ".join(f"{k} {100 * v / op_total:.0f}%" for k, v in
                                                        sorted(kinds.items(), key=lambda kv: -kv[1]))]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1-path cases only, no busy run")
    parser.add_argument("--models", default="kronos-small", help="comma-separated: kronos-mini,kronos-small,...")
    parser.add_argument("--repeats", type=int, default=3, help="alternating runs of ours and the published code")
    parser.add_argument("--samplings", default="default,greedy", help="default (top_p 0.9) and/or greedy (top_k 1)")
    parser.add_argument("--profile", action="store_true", help="also profile ours by phase at the default settings")
    parser.add_argument("--load", type=int, default=2, help="busy processes beside the repeated 1-path case")
    parser.add_argument("--lookback", type=int, default=400, help="context bars (400: the window slides at step 113)")
    parser.add_argument("--steps", type=int, default=120, help="forecast steps")
    args = parser.parse_args()
    n, steps = args.lookback, args.steps
    if not published.available():
        raise SystemExit(f"the baseline needs the published code: {published.INSTALL_HINT}")
    chosen = {k: v for k, v in SAMPLINGS.items() if k.split()[0] in args.samplings.split(",")}
    print(header())
    print(f"{'model':13} {'case':40} {'ours s: median (min-max)':32} {'published s':32} {'ratio':>7} "
          f"{'per rep':12} agree")
    for name in args.models.split(","):
        pair = build_pair(name)
        pub_pair = published.published_pair(pair[0], pair[1])
        for paths in ((1,) if args.quick else (1, 8)):
            for label, sampling in chosen.items():
                r = case(pair, pub_pair, n, steps, paths, sampling, args.repeats)
                print(row(name, f"{n} + {steps}, {paths} path(s), {label}", r), flush=True)
        if not args.quick and args.load > 0:
            with competing_load(args.load):
                time.sleep(1)
                r = case(pair, pub_pair, n, steps, 1, SAMPLINGS["default (top_p 0.9)"], args.repeats)
            print(row(name, f"{n} + {steps}, 1 path, default, {args.load} busy procs", r), flush=True)
        if args.profile:
            print(f"{name}: our time by phase, {n} + {steps}, 1 path, default sampling")
            print("\n".join(profile(pair, n, steps, 1, SAMPLINGS["default (top_p 0.9)"])), flush=True)
    print(header())


if __name__ == "__main__":
    main()
