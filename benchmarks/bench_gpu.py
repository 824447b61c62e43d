"""Batched generation on a CUDA GPU: a year of hourly forecasts, windows per second.

Kronos-small and Kronos-base configs (random weights), 256 bars of context + 24 steps,
8 sample paths per window, `--batch` windows per call, in float32, TF32 and bf16. Prints
windows per second and the time for `--bars` windows (8,760 = a year of hourly bars; use
`--bars` smaller to measure a subset, the year is then extrapolated and says so).
Without CUDA it says so and exits (0); `--device cpu` runs the same code on the CPU
(a smoke run with small sizes, not a GPU figure).

    python benchmarks/bench_gpu.py                          # on a machine with a CUDA GPU
    python benchmarks/bench_gpu.py --device cpu --bars 8 --batch 4 --models kronos-small
"""
from __future__ import annotations

import argparse
import time

import torch
from common import build_pair

from kronos import Sampling, generate_cached


def run(name: str, mode: str, args) -> tuple[float, int]:
    tokenizer, model, context = build_pair(name)
    device = torch.device(args.device)
    tokenizer, model = tokenizer.to(device), model.to(device)
    dtype = torch.bfloat16 if mode == "bf16" else torch.float32
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = mode == "tf32"
    g = torch.Generator().manual_seed(0)
    n, steps, paths = args.lookback, args.horizon, args.paths
    x = torch.randn(args.batch, n, 6, generator=g).clamp(-5, 5).to(device)
    stamps = torch.stack([torch.randint(0, k, (args.batch, n + steps), generator=g) for k in (60, 24, 7, 32, 13)],
                         -1).float().to(device)
    sampling = Sampling(T=1.0, top_k=0, top_p=0.9)

    def batch(size: int) -> None:
        u = torch.rand(size, paths, steps, 2, generator=g).to(device)
        generate_cached(tokenizer, model, x[:size], stamps[:size, :n], stamps[:size, n:], context, steps, sampling, u,
                        dtype)

    batch(min(args.batch, 2))  # warm-up: kernels, fast path
    if device.type == "cuda":
        torch.cuda.synchronize()
    done, start = 0, time.perf_counter()
    while done < args.bars:
        size = min(args.batch, args.bars - done)
        batch(size)
        done += size
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--models", default="kronos-small,kronos-base")
    parser.add_argument("--modes", default="float32,tf32,bf16")
    parser.add_argument("--bars", type=int, default=8760, help="windows to forecast (8,760 = a year of hours)")
    parser.add_argument("--batch", type=int, default=512, help="windows per call")
    parser.add_argument("--lookback", type=int, default=256)
    parser.add_argument("--horizon", type=int, default=24)
    parser.add_argument("--paths", type=int, default=8)
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device here: this benchmark needs a GPU (or --device cpu for a smoke run)")
        return
    where = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "CPU"
    print(f"{where}, torch {torch.__version__}; {args.lookback} + {args.horizon}, {args.paths} paths, "
          f"{args.batch} windows per call")
    print(f"{'model':13} {'mode':8} {'windows':>8} {'seconds':>9} {'windows/s':>10} {'a year (8,760)':>15}")
    for name in args.models.split(","):
        for mode in args.modes.split(","):
            if mode == "bf16" and args.device.startswith("cuda") and not torch.cuda.is_bf16_supported():
                print(f"{name:13} {mode:8} skipped: no native bf16 on this GPU")
                continue
            if mode == "tf32" and not args.device.startswith("cuda"):
                continue
            seconds, done = run(name, mode, args)
            rate = done / seconds
            note = "" if done >= 8760 else " (extrapolated)"
            print(f"{name:13} {mode:8} {done:8d} {seconds:9.1f} {rate:10.1f} {8760 / rate:13.0f} s{note}", flush=True)


if __name__ == "__main__":
    main()
