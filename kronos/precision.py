"""Inference precision: exact float32 (the default) or opt-in bfloat16 on the fast path.

bfloat16 products pay only where the hardware computes them natively: CPUs with
AVX512-BF16 or AMX, and CUDA GPUs with bf16 support. Elsewhere torch emulates them, which is
slower than float32, so such a request is refused with a message rather than honoured
slowly. Only the products run in bf16 (weights, inputs and each product's result rounded to
bfloat16, accumulated in float32); activations, caches, norms, attention, softmax and
sampling stay float32. Token agreement with float32 and the forecast scores are reported by
`benchmarks/bench_precision.py`.
"""
from __future__ import annotations

from pathlib import Path

import torch

PRECISIONS = ("float32", "bf16")
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_bf16_support() -> str | None:
    """The native bf16 feature this CPU reports (AMX or AVX512-BF16), else None."""
    flags: set[str] = set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    for flag in reversed(CPU_BF16_FLAGS):  # AMX first
        if flag in flags:
            return flag
    # without /proc/cpuinfo, torch's dispatch level is all there is; it names AMX/BF16 only on builds that use them
    capability = torch.backends.cpu.get_cpu_capability()
    return capability if "AMX" in capability.upper() or "BF16" in capability.upper() else None


def inference_dtype(precision: str, device: torch.device | str) -> torch.dtype:
    """torch dtype of the fast path for `precision`, refusing bf16 where it is not native."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "float32":
        return torch.float32
    device = torch.device(device)
    if device.type == "cuda":
        if not torch.cuda.is_bf16_supported():
            raise ValueError(f"precision 'bf16': {torch.cuda.get_device_name(device)} has no native bfloat16")
        return torch.bfloat16
    if device.type == "cpu":
        if cpu_bf16_support() is None:
            raise ValueError("precision 'bf16' needs a CPU with AVX512-BF16 or AMX (this one has neither; "
                             "emulated bf16 is slower than float32): use precision 'float32'")
        return torch.bfloat16
    raise ValueError(f"precision 'bf16' is supported on CPU and CUDA, not on {device.type}")
