"""Process-wide CPU runtime settings that must be made before torch is imported.

torch's CPU build runs its intra-op parallelism on GNU OpenMP, whose idle threads spin
while they wait for the next parallel region. On a machine whose cores are also used by
other processes, a spinning thread holds a core the thread it waits for needs, and each of
the many small parallel regions of token-by-token decoding waits out a scheduler time
slice: generation measured 7-17x slower beside two busy processes on 2 cores, while with
passive waiting it slowed by about 10%. libgomp reads its wait policy once, when torch loads
it, so `kronos` sets it on import, unless the user set it or torch was imported first.
"""
from __future__ import annotations

import os
import sys

WAIT_POLICY = "OMP_WAIT_POLICY"


def configure_waits() -> None:
    """Make OpenMP's idle threads sleep instead of spin (`OMP_WAIT_POLICY=PASSIVE`)."""
    if "torch" not in sys.modules:
        os.environ.setdefault(WAIT_POLICY, "PASSIVE")


def describe() -> str:
    """One line for benchmark headers: threads, OpenMP wait policy and whether it applies."""
    import torch

    policy = os.environ.get(WAIT_POLICY, "unset (spinning)")
    return (f"torch {torch.__version__}, {torch.get_num_threads()} threads, OMP_WAIT_POLICY {policy}, "
            f"CPU capability {torch.backends.cpu.get_cpu_capability()}")
