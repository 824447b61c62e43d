"""The benchmark scripts run (tiny sizes on the CPU) and their FLOP count is the model's."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from common import forecast_flops, forecast_flops_by_phase  # noqa: E402

from kronos import MODEL_CONFIGS, TOKENIZER_CONFIGS  # noqa: E402


def test_gpu_benchmark_runs_its_code_on_the_cpu():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_gpu.py"), "--device", "cpu", "--bars", "3",
                          "--batch", "2", "--models", "kronos-mini", "--modes", "float32,bf16", "--lookback", "16",
                          "--horizon", "3", "--paths", "2"],
                         capture_output=True, text=True, env=env, timeout=600, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    rows = [line for line in out.stdout.splitlines() if line.startswith("kronos-mini")]
    assert len(rows) == 2 and all("extrapolated" in r for r in rows)


def test_generation_benchmark_runs_in_miniature_beside_the_published_code():
    """The headline benchmark: ours and the published code alternating, the spread, the
    machine's CPU and kernels, and our time by phase (the slid windows' reruns apart)."""
    from kronos import published

    if not published.available():
        import pytest

        pytest.skip(f"the published Kronos code is not installed ({published.INSTALL_HINT})")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "bench_generation.py", "--models", "kronos-mini", "--quick", "--repeats", "2",
                          "--lookback", "30", "--steps", "4", "--samplings", "default", "--profile"],
                         capture_output=True, text=True, env=env, timeout=600, cwd=ROOT / "benchmarks")
    assert out.returncode == 0, out.stderr
    assert "CPU capability" in out.stdout and "kernels (profiled run)" in out.stdout
    row = next(line for line in out.stdout.splitlines() if line.startswith("kronos-mini") and "30 + 4" in line)
    assert "x " in row and "%" in row  # the ratio and the spread
    assert "slid windows: passes awaited or run here" in out.stdout and "history passes run on a helper" in out.stdout


def test_backtest_benchmark_profiles_a_batch_beside_its_floors():
    """The year benchmark in miniature, with the profile of one batch: each phase and kernel
    kind beside its compute floor."""
    from kronos import published

    if not published.available():
        import pytest

        pytest.skip(f"the published Kronos code is not installed ({published.INSTALL_HINT})")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "bench_backtest.py", "--bars", "4", "--lookback", "32", "--horizon", "3",
                          "--paths", "2", "--batch", "2", "--naive-bars", "1", "--profile"],
                         capture_output=True, text=True, env=env, timeout=600, cwd=ROOT / "benchmarks")
    assert out.returncode == 0, out.stderr
    assert "compute floor" in out.stdout and "profile of one call, 2 windows" in out.stdout
    for phase in ("tokenizer encode", "prefill", "steps", "decode of the paths"):
        assert any(line.strip().startswith(phase) and "floor" in line for line in out.stdout.splitlines()), phase
    assert "kernels: products" in out.stdout


def test_sliding_benchmark_runs_in_miniature():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "bench_sliding.py", "--model", "kronos-mini", "--lookback", "40",
                          "--steps", "6", "--context", "32", "--repeats", "1", "--score-windows", "2", "--paths", "2"],
                         capture_output=True, text=True, env=env, timeout=600, cwd=ROOT / "benchmarks")
    assert out.returncode == 0, out.stderr
    assert "speed-up" in out.stdout and "approximate - exact: CRPS" in out.stdout


def test_forecast_flops_counts_the_products_of_a_forecast():
    """The floor's FLOP count grows as the work does: linearly in paths x steps, and the
    products of the Kronos-mini pair dominate (about 6 GFLOP for 256 + 24 with 8 paths)."""
    tok, model = TOKENIZER_CONFIGS["Kronos-Tokenizer-2k"], MODEL_CONFIGS["Kronos-mini"]
    base = forecast_flops(tok, model, 256, 24, 8)
    assert 4e9 < base < 8e9
    one_more_path = forecast_flops(tok, model, 256, 24, 9) - base
    assert abs((forecast_flops(tok, model, 256, 24, 10) - base) - 2 * one_more_path) < 1e-3 * base
    phases = forecast_flops_by_phase(tok, model, 256, 24, 8)
    assert all(v > 0 for v in phases.values())
    more = forecast_flops_by_phase(tok, model, 256, 24, 9)  # a path more: steps and decoded rows only
    assert more["tokenizer encode"] == phases["tokenizer encode"] and more["prefill"] == phases["prefill"]
    assert more["steps"] > phases["steps"] and more["decode of the paths"] > phases["decode of the paths"]
    longer = forecast_flops_by_phase(tok, model, 256, 48, 8)  # a longer horizon: the history's phases stay
    assert longer["tokenizer encode"] == phases["tokenizer encode"] and longer["prefill"] == phases["prefill"]
    # one generated token costs at least its products: the model's blocks and two vocabulary heads
    d, ff, layers = model["d_model"], model["ff_dim"], model["n_layers"]
    assert one_more_path / 24 > 2 * (layers * (4 * d * d + 3 * d * ff) + 2 * 1024 * d)


def test_finetune_benchmark_runs_and_matches_the_published_loss():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_finetune.py"), "--lookback", "16",
                          "--horizon", "3", "--batch", "2", "--steps", "1", "--skip-backtest"],
                         capture_output=True, text=True, env=env, timeout=600, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    rows = [line for line in out.stdout.splitlines() if line.startswith(("kronos-nano", "Kronos-mini"))]
    assert len(rows) == 2 and all("loss diff 0.0e+00" in r or "e-0" in r.split("loss diff")[1] for r in rows), rows


def test_serving_benchmark_runs_and_agrees():
    """bench_serving.py at tiny sizes: the API's and the MCP tool's forecasts equal the in-process one."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_serving.py"), "--models", "kronos-nano",
                          "--repeats", "1", "--lookback", "64", "--horizon", "2", "--paths", "2"],
                         capture_output=True, text=True, env=env, timeout=600, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    row = next(line for line in out.stdout.splitlines() if line.startswith("kronos-nano"))
    assert row.count("ms") == 3 and row.count("x)") == 2


def test_generation_benchmark_warms_up_both_sides_alike(monkeypatch):
    """Review of issue 26: only our code had an untimed first call, so with `--repeats 1` the
    published time included its one-time costs and the ratio leaned our way."""
    import pytest

    from kronos import Sampling, published

    if not published.available():
        pytest.skip(f"the published Kronos code is not installed ({published.INSTALL_HINT})")
    import bench_generation
    from common import build_pair

    calls = {"ours": 0, "published": 0}

    def counted(name, real):
        def call(*args, **kwargs):
            calls[name] += 1
            return real(*args, **kwargs)
        return call

    pair = build_pair("kronos-mini")
    pub_pair = published.published_pair(pair[0], pair[1])
    monkeypatch.setattr(bench_generation, "generate_cached", counted("ours", bench_generation.generate_cached))
    monkeypatch.setattr(published, "published_forecast", counted("published", published.published_forecast))
    r = bench_generation.case(pair, pub_pair, 8, 2, 1, Sampling(T=1.0, top_k=1, top_p=1.0), repeats=1)
    assert calls == {"ours": 2, "published": 2}, "one untimed call each, then the timed ones"
    assert len(r["ours"]) == len(r["published"]) == 1
