"""`WindowsAhead`: slid windows' history passes made ahead on a helper thread, taken in order."""
from __future__ import annotations

import threading

import pytest
import torch

from kronos.ahead import WindowsAhead


class Passes:
    """A pass that records who ran it; windows listed in `held` wait until released."""

    def __init__(self, held=()):
        self.ran: dict[int, str] = {}
        self.threads: dict[int, int] = {}
        self.gates = {i: threading.Event() for i in held}
        self.started = {i: threading.Event() for i in held}

    def __call__(self, i: int) -> str:
        if i in self.gates:
            self.started[i].set()
            assert self.gates[i].wait(10)
        self.ran[i] = threading.current_thread().name
        self.threads[i] = torch.get_num_threads()
        return f"window {i}"


def test_without_a_helper_each_window_is_run_by_the_caller_when_taken():
    passes = Passes()
    ahead = WindowsAhead(passes, range(3, 6), depth=2, threads=None)
    assert [ahead.take(i) for i in range(3, 6)] == ["window 3", "window 4", "window 5"]
    assert set(passes.ran.values()) == {threading.current_thread().name}
    ahead.close()


def test_the_helper_runs_windows_in_order_at_most_depth_ahead():
    passes = Passes(held=[1, 2])
    ahead = WindowsAhead(passes, range(0, 5), depth=2, threads=1)
    try:
        assert passes.started[1].wait(10), "window 0 done, window 1 begun, before any take"
        assert passes.ran[0] == "kronos-ahead" and passes.threads[0] == 1, "on the helper, with its thread count"
        assert not passes.started[2].is_set(), "depth 2: window 2 waits for window 0 to be taken"
        assert ahead.take(0) == "window 0"
        passes.gates[1].set()
        assert passes.started[2].wait(10), "taking window 0 lets the helper begin window 2"
        assert ahead.take(1) == "window 1"
        passes.gates[2].set()
        assert [ahead.take(i) for i in (2, 3, 4)] == ["window 2", "window 3", "window 4"]
        assert passes.ran[1] == passes.ran[2] == "kronos-ahead"
    finally:
        ahead.close()


def test_while_the_helper_runs_a_window_the_caller_runs_the_next_one():
    passes = Passes(held=[0])
    ahead = WindowsAhead(passes, range(0, 3), depth=3, threads=1)
    try:
        assert passes.started[0].wait(10)
        taken = []
        caller = threading.Thread(target=lambda: taken.append(ahead.take(0)), name="caller")
        caller.start()
        for _ in range(1000):  # the caller, waiting for window 0, runs a window nobody began
            if "caller" in passes.ran.values():
                break
            threading.Event().wait(0.01)
        passes.gates[0].set()
        caller.join(10)
        assert taken == ["window 0"]
        assert passes.ran[0] == "kronos-ahead" and "caller" in passes.ran.values()
        assert ahead.take(1) == "window 1" and ahead.take(2) == "window 2"
    finally:
        ahead.close()


def test_a_failed_pass_on_the_helper_is_raised_by_the_take_that_needs_it():
    def run(i):
        raise MemoryError(f"window {i}")

    ahead = WindowsAhead(run, range(0, 2), depth=2, threads=1)
    with pytest.raises(MemoryError):
        ahead.take(0)
    ahead.close()


def test_close_lets_the_running_pass_end_and_begins_no_other():
    """Review: the helper claimed its next window before looking whether it was closed, so
    close() waited for one more whole pass, and results outlived it."""
    passes = Passes(held=[0])
    threads = torch.get_num_threads()
    ahead = WindowsAhead(passes, range(0, 50), depth=4, threads=1)
    assert passes.started[0].wait(10)
    closing = threading.Thread(target=ahead.close)
    closing.start()
    threading.Event().wait(0.05)
    passes.gates[0].set()
    closing.join(10)
    assert list(passes.ran) == [0], "the pass running at close() ends; no other begins"
    assert ahead._done == {}
    assert torch.get_num_threads() == threads
    assert not any(t.name == "kronos-ahead" for t in threading.enumerate())


def test_take_refuses_windows_out_of_order_or_after_close():
    """Review: a window below the range, one taken twice, or any after close() waited forever;
    one skipped was abandoned."""
    ahead = WindowsAhead(Passes(), range(2, 5), depth=2, threads=None)
    assert ahead.take(2) == "window 2"
    for bad in (1, 2, 4, 5):  # before the next, the same twice, skipping one, past the end
        with pytest.raises(ValueError, match="cannot be taken"):
            ahead.take(bad)
    ahead.close()
    with pytest.raises(ValueError, match="closed"):
        ahead.take(3)


def test_the_helper_keeps_its_own_thread_count_whatever_the_caller_sets():
    """Review: a thread's first torch call seeds its count from the process-wide value, so
    the caller's set_num_threads between the helper's start and its first operation
    replaced the helper's count."""
    passes = Passes(held=[0])
    threads = torch.get_num_threads()
    try:
        ahead = WindowsAhead(passes, range(0, 1), depth=1, threads=1)
        assert passes.started[0].wait(10)
        torch.set_num_threads(1)
        torch.set_num_threads(2)
        passes.gates[0].set()
        assert ahead.take(0) == "window 0"
        assert passes.threads[0] == 1
        ahead.close()
    finally:
        torch.set_num_threads(threads)


def test_a_failed_pass_of_the_callers_own_fails_every_later_take_instead_of_hanging():
    """Final review: the window the caller failed to make stayed claimed, so a later take of it
    waited forever."""
    calls = []

    def run(i):
        calls.append(i)
        if len(calls) == 1:
            raise MemoryError(f"window {i}")
        return f"window {i}"

    ahead = WindowsAhead(run, range(0, 3), depth=2, threads=None)
    with pytest.raises(MemoryError):
        ahead.take(0)
    with pytest.raises(MemoryError):
        ahead.take(0)
    ahead.close()
