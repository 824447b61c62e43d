"""Threading on a shared machine: passive OpenMP waits, threads fitted to free cores."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from kronos import runtime


def _policy(code: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != runtime.WAIT_POLICY}
    out = subprocess.run([sys.executable, "-c", code + "; import os; print(os.environ.get('OMP_WAIT_POLICY'))"],
                         capture_output=True, text=True, env=env, check=True)
    return out.stdout.strip().splitlines()[-1]


def test_importing_kronos_first_makes_openmp_waits_passive():
    assert _policy("import kronos") == "PASSIVE"
    assert _policy("import torch, kronos") == "None", "too late once torch has loaded OpenMP: left alone"


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_generation_uses_only_free_cores(tmp_path, monkeypatch, two_threads):
    if not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs 2 usable cores")
    cores = len(os.sched_getaffinity(0))
    busy = tmp_path / "loadavg"
    busy.write_text(f"9.0 8.0 7.0 {cores + 7}/170 123\n")  # 8 other tasks running
    monkeypatch.setattr(runtime, "LOADAVG", str(busy))
    monkeypatch.setattr(runtime, "own_running", lambda: 1)
    assert runtime.free_cores() == 1
    with runtime.fitted_threads():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2, "restored"
    busy.write_text("0.1 0.1 0.1 1/170 123\n")  # only us
    assert runtime.free_cores() == cores
    with runtime.fitted_threads():
        assert torch.get_num_threads() == 2


def test_small_steps_run_on_one_thread(two_threads):
    with runtime.threads_for(runtime.SERIAL_ROWS - 1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2
    with runtime.threads_for(runtime.SERIAL_ROWS):
        assert torch.get_num_threads() == 2


def _fake_tasks(root, states: str):
    for tid, state in enumerate(states):
        (root / str(tid)).mkdir()
        (root / str(tid) / "stat").write_text(f"{tid} (python (worker) x) {state} 1 2 3\n")


def test_the_process_own_running_threads_are_not_competitors(tmp_path, monkeypatch, two_threads):
    """Issue 26: just after a parallel region (ours or the published code's in the same
    process) its OpenMP workers may still be runnable; they used to count as other tasks
    and cost the next call a thread."""
    if not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs 2 usable cores")
    cores = len(os.sched_getaffinity(0))
    tasks = tmp_path / "task"
    tasks.mkdir()
    _fake_tasks(tasks, "R" * cores + "SS")  # the caller and cores - 1 workers still running, two asleep
    monkeypatch.setattr(runtime, "TASKS", str(tasks))
    load = tmp_path / "loadavg"
    load.write_text(f"2.0 1.0 0.5 {cores}/170 123\n")  # every running task is ours
    monkeypatch.setattr(runtime, "LOADAVG", str(load))
    assert runtime.own_running() == cores
    assert runtime.free_cores() == cores
    with runtime.fitted_threads():
        assert torch.get_num_threads() == 2
    load.write_text(f"2.0 1.0 0.5 {cores + 1}/170 123\n")  # and one other process's
    assert runtime.free_cores() == cores - 1


def test_own_running_reads_this_process():
    assert runtime.own_running() >= 1  # the caller itself is running


def test_a_momentary_task_does_not_cost_a_thread(monkeypatch, two_threads):
    """Issue 26: the thread decision read one instant of /proc/loadavg, so a task runnable
    for that instant only cost a whole forecast one of its two threads. Others are now read
    again, and the least count taken; others that stay are still competitors."""
    if not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs 2 usable cores")
    cores = len(os.sched_getaffinity(0))
    monkeypatch.setattr(runtime, "own_running", lambda: 1)
    reads = iter([1 + 3, 1, 1 + 3])  # three others at the first look, gone at the second
    monkeypatch.setattr(runtime, "_running", lambda: next(reads))
    assert runtime.free_cores() == cores
    monkeypatch.setattr(runtime, "_running", lambda: 1 + 1)  # one other, at every look
    assert runtime.free_cores() == cores - 1
    calls = []
    monkeypatch.setattr(runtime, "_running", lambda: calls.append(1) or 1)  # only us: one look
    assert runtime.free_cores() == cores and len(calls) == 1


def test_fitted_blocks_nest_up_to_the_outer_count(monkeypatch, two_threads):
    """A long call re-fits before each heavy phase: an inner block may take threads back
    that the outer one gave up, never more than the outer block started with."""
    free = [1]
    monkeypatch.setattr(runtime, "free_cores", lambda: free[0])
    with runtime.fitted_threads():
        assert torch.get_num_threads() == 1
        free[0] = 8
        with runtime.fitted_threads():
            assert torch.get_num_threads() == 2, "back to the outer block's count, not the 8 free"
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2


@pytest.mark.parametrize("slow", [1, 2])
def test_decode_steps_keep_the_thread_count_their_timed_steps_found_faster(two_threads, slow):
    """Issue 26: one-path decode steps always ran on one thread; on an idle machine the
    second core's memory bandwidth can make them faster, beside busy processes it makes them
    slower. The first steps of each period alternate and time both counts."""
    import time

    steps = runtime.StepThreads(rows=1)
    assert steps.candidates == (1, 2)
    seen = []
    for _ in range(runtime.StepThreads.PERIOD + runtime.StepThreads.TRIALS):
        with steps.step():
            seen.append(torch.get_num_threads())
            if torch.get_num_threads() == slow:
                time.sleep(0.003)
        assert torch.get_num_threads() == 2, "restored after each step"
    trials = runtime.StepThreads.TRIALS
    assert seen[:trials] == [1, 2] * (trials // 2), "the first steps alternate"
    fast = 3 - slow
    assert set(seen[trials:runtime.StepThreads.PERIOD]) == {fast}
    assert steps.chosen == fast


def test_steps_of_many_rows_use_the_fitted_threads(two_threads):
    steps = runtime.StepThreads(rows=runtime.SERIAL_ROWS)
    for _ in range(runtime.StepThreads.TRIALS + 1):
        with steps.step():
            assert torch.get_num_threads() == 2


def test_decode_steps_try_the_available_threads_when_the_call_began_busy(monkeypatch, two_threads):
    """Review of issue 26: a call whose start was fitted down to one thread (a busy moment)
    offered its steps one thread only, for the whole call: the trials never ran. The steps
    try the outer block's count; steps of many rows re-fit at each later period."""
    free = [1]
    monkeypatch.setattr(runtime, "free_cores", lambda: free[0])
    with runtime.fitted_threads():
        assert torch.get_num_threads() == 1
        steps = runtime.StepThreads(rows=1)
        assert steps.candidates == (1, 2)
        seen = []
        for _ in range(runtime.StepThreads.TRIALS):
            with steps.step():
                seen.append(torch.get_num_threads())
            assert torch.get_num_threads() == 1, "restored after each step"
        assert set(seen) == {1, 2}
        many = runtime.StepThreads(rows=runtime.SERIAL_ROWS)
        free[0] = 8
        seen = []
        for _ in range(runtime.StepThreads.PERIOD + 1):
            with many.step():
                seen.append(torch.get_num_threads())
        assert set(seen[:runtime.StepThreads.PERIOD]) == {1} and seen[-1] == 2, "re-fitted, up to the outer count"
