"""CPU threading for generation on machines shared with other work.

torch's CPU build runs its intra-op parallelism on GNU OpenMP, whose idle threads spin
while they wait for the next parallel region, and each parallel region runs at the pace of
its slowest thread. Token-by-token decoding runs many small regions, so beside other
CPU-heavy processes each one can wait out a scheduler time slice: beside two busy processes
on 2 cores one path took 34 s instead of 2.3 s (15x), a batch of 64 windows 28 s instead of
5.7 s. Three measures, each on its own enough for part of it:

- `configure_waits`: idle threads sleep (`OMP_WAIT_POLICY=PASSIVE`). libgomp reads this once,
  when torch loads it, so `kronos` sets it on import unless the user did or torch is loaded;
- `fitted_threads`: generation uses no more threads than there are free cores right now;
- `threads_for`: work of a few rows runs on one thread (no parallel regions at all);
- `StepThreads`: decode steps of a few rows run on one thread or the fitted threads,
  whichever their first steps, timed, show to be faster here and now.
"""
from __future__ import annotations

import contextlib
import os
import statistics
import sys
import threading
import time
from collections.abc import Iterator

WAIT_POLICY = "OMP_WAIT_POLICY"


def configure_waits() -> None:
    """Make OpenMP's idle threads sleep instead of spin (`OMP_WAIT_POLICY=PASSIVE`)."""
    if "torch" not in sys.modules:
        os.environ.setdefault(WAIT_POLICY, "PASSIVE")


def describe() -> str:
    """One line for benchmark headers: threads, OpenMP wait policy."""
    import torch  # here, not at the top: configure_waits() must be able to run before torch loads

    policy = os.environ.get(WAIT_POLICY, "unset (spinning)")
    return (f"torch {torch.__version__}, {torch.get_num_threads()} threads, OMP_WAIT_POLICY {policy}, "
            f"CPU capability {torch.backends.cpu.get_cpu_capability()}")


LOADAVG = "/proc/loadavg"
TASKS = "/proc/self/task"


def own_running() -> int:
    """This process's threads running or runnable right now (at least the caller).

    Right after a parallel region (ours, or the published code's run just before in the
    same process) OpenMP workers may still be spinning or finishing; they are this process's
    own work, not a competitor's, and must not cost the next call a thread."""
    count = 0
    try:
        tasks = os.listdir(TASKS)
    except OSError:
        return 1
    for tid in tasks:
        try:
            with open(os.path.join(TASKS, tid, "stat")) as f:
                count += f.read().rsplit(")", 1)[1].split()[0] == "R"
        except (OSError, IndexError):
            continue  # the thread ended meanwhile
    return max(1, count)


LOOKS = 3  # reads of the running count, a millisecond apart, where the first shows others
LOOK_GAP_S = 0.001


def _running() -> int:
    """Tasks running or runnable right now, machine-wide (/proc/loadavg's fourth field)."""
    with open(LOADAVG) as f:
        return int(f.read().split()[3].split("/")[0])


def free_cores() -> int | None:
    """Cores not taken by other processes' runnable tasks right now (None where the OS does
    not say).

    /proc/loadavg's fourth field counts the tasks running or runnable at this instant, this
    process's own threads included: those are subtracted (`own_running`). Where that leaves
    others, the count is read again (`LOOKS` reads in all) and the least taken: a task
    runnable for an instant only (a shell command, a kernel worker) must not halve the
    threads of a whole forecast. A niced job counts like any other: beside one at nice 10
    keeping a core busy, a window's rerun took as long on two threads as on one."""
    try:
        running = _running()
        cores = len(os.sched_getaffinity(0))
        own = own_running()
        for _ in range(LOOKS - 1):
            if running - own <= 0:
                break
            time.sleep(LOOK_GAP_S)
            running = min(running, _running())
    except (OSError, ValueError, IndexError, AttributeError):
        return None
    return max(1, cores - max(0, running - own))


_OPEN = threading.local()  # .ceilings: the count each `fitted_threads` block open in this thread may use at most


def available_threads() -> int:
    """The most intra-op threads generation may use here: the outermost open
    `fitted_threads` block's count (what it found set), else the current setting."""
    ceilings = getattr(_OPEN, "ceilings", None)
    if ceilings:
        return ceilings[0]
    import torch

    return torch.get_num_threads()


def _fit(ceiling: int) -> int:
    """`ceiling` threads, fewer where fewer cores are free right now."""
    free = free_cores()
    return ceiling if free is None else min(ceiling, free)


@contextlib.contextmanager
def fitted_threads() -> Iterator[None]:
    """Use at most as many intra-op threads as there are free cores, for the block.

    On a machine shared with CPU-heavy jobs, a parallel region runs at the pace of its
    slowest thread, and a thread that has to queue for a core costs a scheduler time slice
    per region: generation on 2 threads beside 8 busy tasks on 2 cores took 3x as long as on
    one thread (5x with spinning waits). torch's thread count is process-wide; it is
    restored on exit. Blocks nest: an inner block re-fits to the cores free now, up to the
    outermost block's own count (a long call re-fits before each heavy phase, so neither
    a busy moment at its start nor one that began since holds for all of it).
    """
    import torch

    threads = torch.get_num_threads()
    ceiling = available_threads()
    fitted = _fit(ceiling)
    ceilings = _OPEN.__dict__.setdefault("ceilings", [])
    ceilings.append(ceiling)
    if fitted != threads:
        torch.set_num_threads(fitted)
    try:
        yield
    finally:
        ceilings.pop()
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)


@contextlib.contextmanager
def using_threads(count: int) -> Iterator[None]:
    """Run the block on `count` intra-op threads (torch's setting is process-wide: it is
    restored on exit)."""
    import torch

    threads = torch.get_num_threads()
    if count != threads:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)


# Fewer rows than this per decode step run on one thread: their products take microseconds,
# so splitting them gains little on an idle machine, while every parallel region waits for
# all its threads, which on a busy one means a scheduler time slice per region.
SERIAL_ROWS = 16


@contextlib.contextmanager
def threads_for(rows: int) -> Iterator[None]:
    """Run the block on one intra-op thread when the work is `rows` < SERIAL_ROWS rows.

    This does not depend on the wait policy, so it also holds when torch was imported
    before kronos. torch's thread count is process-wide: it is restored on exit.
    """
    import torch

    with using_threads(1 if rows < SERIAL_ROWS else torch.get_num_threads()):
        yield


class StepThreads:
    """The thread count for a run of decode steps of `rows` rows, chosen by timing them.

    Steps of `SERIAL_ROWS` rows or more use the fitted threads. A step of fewer rows is a
    matrix-vector product per weight matrix: bound by memory bandwidth, which a second core
    adds to, but made of many short parallel regions, each waiting for all its threads (a
    scheduler time slice beside busy processes, see `threads_for`). Which wins depends on
    the model's size, the machine and its load right now, so the steps measure it: the
    first `TRIALS` steps of every `PERIOD` alternate between one thread and the count
    available (`available_threads`: the outer `fitted_threads` block's ceiling, not the count
    a busy moment at the call's start fitted it down to), and the other steps run on the
    faster (by median step time). Steps of many rows re-fit at each later period's start.
    Results do not depend on the count: products and attention split whole rows and heads
    among threads.
    """

    TRIALS = 6  # timed steps per period, alternating between the two counts
    PERIOD = 40  # steps between trials: a load that comes or goes is noticed within them

    def __init__(self, rows: int):
        import torch

        self.ceiling = available_threads()
        self.few = rows < SERIAL_ROWS and self.ceiling > 1
        self.candidates = (1, self.ceiling) if self.few else (torch.get_num_threads(),)
        self.chosen = self.candidates[0]
        self.count = 0
        self.times: dict[int, list[float]] = {}

    def _threads(self) -> tuple[int, bool]:
        """This step's count and whether it is timed."""
        phase = self.count % self.PERIOD
        if phase == 0 and self.count and not self.few:  # many rows: the fitted count, re-fitted
            self.candidates = (_fit(self.ceiling),)
            self.chosen = self.candidates[0]
        if len(self.candidates) == 1 or phase >= self.TRIALS:
            return self.chosen, False
        if phase == 0:
            self.times = {c: [] for c in self.candidates}
        return self.candidates[phase % len(self.candidates)], True

    @contextlib.contextmanager
    def step(self) -> Iterator[None]:
        import torch

        threads, timed = self._threads()
        before = torch.get_num_threads()
        if threads != before:
            torch.set_num_threads(threads)
        start = time.perf_counter()
        try:
            yield
        finally:
            if timed:
                self.times[threads].append(time.perf_counter() - start)
                if self.count % self.PERIOD == self.TRIALS - 1:
                    self.chosen = min(self.times, key=lambda c: statistics.median(self.times[c]))
            self.count += 1
            if threads != before:
                torch.set_num_threads(before)
