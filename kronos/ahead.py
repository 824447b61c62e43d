"""Slid windows' history passes, run ahead on spare cores while the decode steps run.

Once history + forecast exceed the model's context, every later step's window has slid and
the exact algorithm runs it anew: first the context tokens still in it (its history
pass), then the generated ones. Every window's history part is known from the start, and
decode steps of a few rows are matrix-vector products bound by memory bandwidth that leave
the other cores nearly idle. `WindowsAhead` runs the coming windows' history passes on a
helper thread there, in step order and at most `depth` windows ahead (each holds its
caches), and the step that needs a window takes it, or runs its pass itself where the
helper has not begun it. Every pass of a call runs on the same number of threads, whoever
runs it (kernels may split elements differently at another count, and round differently),
so who runs a pass never changes a token.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

import torch

from .runtime import using_threads

T = TypeVar("T")


class WindowsAhead(Generic[T]):
    """The results of `run(i)` for windows `steps`, taken in order (`take`), each run on
    `threads` intra-op threads (None: the caller's count, no helper); with `threads`, some
    are made ahead on a helper thread."""

    def __init__(self, run: Callable[[int], T], steps: range, depth: int, threads: int | None):
        self._run, self._end = run, steps.stop
        self._depth, self._threads = max(1, depth), threads
        self._next = steps.start  # the first window nobody has begun
        self._taken = steps.start  # windows before this one were taken
        self._done: dict[int, T] = {}
        self._error: BaseException | None = None
        self._closed = False
        self._cond = threading.Condition()
        self._helper = None
        if threads is not None and len(steps):
            self._helper = threading.Thread(target=self._help, name="kronos-ahead", daemon=True)
            self._helper.start()

    @property
    def threads(self) -> int | None:
        """Every pass's thread count (None: no helper, the caller's)."""
        return self._threads

    @property
    def helping(self) -> bool:
        """Whether a helper is there with windows left to begin: it may take its cores at any step."""
        return self._helper is not None and self._next < self._end and self._error is None

    def _claim(self) -> int | None:
        """The next window to begin, if one is left within `depth` of the last taken (under the lock)."""
        if not self._closed and self._next < self._end and self._next < self._taken + self._depth:
            self._next += 1
            return self._next - 1
        return None

    def _help(self) -> None:
        torch.get_num_threads()  # this thread's first torch call seeds its count from the process-wide one:
        torch.set_num_threads(self._threads)  # done now, or a later seeding would undo this
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
                    value = self._run(i)
                    with self._cond:
                        if not self._closed:
                            self._done[i] = value
                        self._cond.notify_all()
        except BaseException as error:  # handed to the caller's next `take`
            with self._cond:
                self._error = error
                self._cond.notify_all()

    def take(self, i: int) -> T:
        """Window i's result: the helper's, or made here now. Windows are taken one by one,
        in order; while the helper finishes window i, the next window nobody began is run here."""
        with self._cond:
            if self._closed or i != self._taken or i >= self._end:
                raise ValueError(f"window {i} cannot be taken: the next is {self._taken} of {self._end - 1}"
                                 + (" and the helper was closed" if self._closed else ""))
            while i not in self._done:
                if self._error is not None:
                    raise self._error
                if self._closed:
                    raise ValueError(f"window {i} cannot be taken: the helper was closed")
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
                    with using_threads(self._threads or torch.get_num_threads()):
                        value = self._run(mine)
                except BaseException as error:  # nobody else will make this window: every later take fails
                    self._cond.acquire()
                    self._error = error
                    self._cond.notify_all()
                    raise
                self._cond.acquire()
                self._done[mine] = value
            value = self._done.pop(i)
            self._taken = i + 1
            self._cond.notify_all()
            return value

    def close(self) -> None:
        """Stop the helper (after the pass it is running) and wait for it; results not
        taken are dropped. The caller's thread count is asserted again afterwards: the
        helper's reached torch's process-wide settings (MKL's, new threads')."""
        with self._cond:
            self._closed = True
            self._done.clear()
            self._cond.notify_all()
        if self._helper is None:
            return
        self._helper.join()
        self._helper = None
        torch.set_num_threads(torch.get_num_threads())
