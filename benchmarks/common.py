"""Shared benchmark helpers: the machine header, a competing load, random-weight pairs."""
from __future__ import annotations

import multiprocessing
import os
import platform
import time
from contextlib import contextmanager
from pathlib import Path

import torch

from kronos import HUB_MODELS, Kronos, KronosTokenizer, runtime


def cpu_model() -> str:
    info = Path("/proc/cpuinfo")
    if info.exists():
        for line in info.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def header() -> str:
    """CPU, kernels, threads and how busy the machine is: every benchmark prints it first."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    cores = os.cpu_count() or 1
    busy = "" if load < 0.5 * cores else f"  (NOT QUIET: load {load:.1f} on {cores} cores; figures are noisy)"
    return (f"{cpu_model()}, {cores} cores; {runtime.describe()}; oneDNN "
            f"{'on' if torch.backends.mkldnn.is_available() else 'off'}; load {load:.2f}{busy}")


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
