"""Slid windows' history passes, run ahead on a spare core while the decode steps run.

Once history + forecast exceed the model's context, every later step's window has slid and
the exact algorithm runs it anew: first the context tokens still in it (its history
pass), then the generated ones. Every window's history part is known from the start, and
decode steps of a few rows are matrix-vector products bound by memory bandwidth that leave
a second core nearly idle. `WindowsAhead` runs the coming windows' history passes on a
helper thread there, in step order and at most `depth` windows ahead (each holds its
caches), and the step that needs a window takes it, or runs its pass itself where the
helper has not begun it. Who runs a pass changes nothing: it is the same pass on the same
rows whatever the thread and its thread count (products and attention split whole rows
and heads among threads), so the tokens never depend on timing or load.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

import torch

T = TypeVar("T")


class WindowsAhead(Generic[T]):
    """The results of `run(i)` for windows `steps`, taken in order (`take`), some made
    ahead on a helper thread with `helper_threads` intra-op threads (0: no helper)."""

    def __init__(self, run: Callable[[int], T], steps: range, depth: int, helper_threads: int):
        self._run, self._end, self._depth = run, steps.stop, max(1, depth)
        self._next = steps.start  # the first window nobody has begun
        self._taken = steps.start  # windows before this one were taken
        self._done: dict[int, T] = {}
        self._error: BaseException | None = None
        self._closed = False
        self._busy = False
        self._cond = threading.Condition()
        self._helper = None
        if helper_threads > 0 and len(steps):
            self._helper = threading.Thread(target=self._help, args=(helper_threads,), name="kronos-ahead",
                                            daemon=True)
            self._helper.start()

    @property
    def busy(self) -> bool:
        """Whether the helper is running a pass right now (the caller's work then keeps to
        one core, as its own passes do)."""
        return self._busy

    def _claim(self) -> int | None:
        """The next window to begin, if one is left within `depth` of the last taken (under the lock)."""
        if self._next < self._end and self._next < self._taken + self._depth:
            self._next += 1
            return self._next - 1
        return None

    def _help(self, threads: int) -> None:
        torch.set_num_threads(threads)  # this thread's own OpenMP team
        try:
            with torch.inference_mode():
                while True:
                    with self._cond:
                        i = self._claim()
                        while i is None and not self._closed and self._next < self._end:
                            self._cond.wait()
                            i = self._claim()
                        if i is None:
                            return
                        self._busy = True
                    try:
                        value = self._run(i)
                    finally:
                        self._busy = False
                    with self._cond:
                        self._done[i] = value
                        self._cond.notify_all()
        except BaseException as error:  # handed to the caller's next `take`
            with self._cond:
                self._error = error
                self._cond.notify_all()

    def take(self, i: int) -> T:
        """Window i's result: the helper's, or made here now (windows are taken in order).
        While the helper finishes window i, the next window nobody began is run here."""
        with self._cond:
            while i not in self._done:
                if self._error is not None:
                    raise self._error
                if i >= self._next:
                    self._next = i + 1
                    mine = i
                else:
                    mine = self._claim()
                    if mine is None:
                        self._cond.wait()
                        continue
                self._cond.release()
                try:
                    value = self._run(mine)
                finally:
                    self._cond.acquire()
                self._done[mine] = value
            value = self._done.pop(i)
            self._taken = i + 1
            self._cond.notify_all()
            return value

    def close(self) -> None:
        """Stop the helper (after the pass it is running) and wait for it; results not
        taken are dropped. The caller's threads setting is asserted again afterwards: the
        helper's count reached torch's process-wide settings (MKL's, new threads')."""
        if self._helper is None:
            return
        with self._cond:
            self._closed = True
            self._done.clear()
            self._cond.notify_all()
        self._helper.join()
        self._helper = None
        torch.set_num_threads(torch.get_num_threads())
