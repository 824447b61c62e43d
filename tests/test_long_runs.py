"""Long runs: Ctrl-C keeps the forecasts computed so far (stored batch by batch), progress
lines go to a log when not on a terminal, and a one-line preamble says what runs."""
from __future__ import annotations

import io

import pytest
from typer.testing import CliRunner

from kronos_trader.forecasting.models import load_model
from kronos_trader.forecasting.progress import batch_progress
from kronos_trader.forecasting.service import ForecastService
from kronos_trader.store import open_store

from test_cli import _config


class InterruptAfter:
    """A predictor that raises KeyboardInterrupt (Ctrl-C) on its n-th batch."""

    def __init__(self, predictor, n):
        self.predictor, self.n, self.calls = predictor, n, 0

    def __getattr__(self, name):
        return getattr(self.predictor, name)

    def forecast_batch(self, *args, **kwargs):
        self.calls += 1
        if self.calls == self.n:
            raise KeyboardInterrupt
        return self.predictor.forecast_batch(*args, **kwargs)


def test_ctrl_c_keeps_the_batches_already_computed(fast_settings, sample_candles):
    store = open_store(fast_settings.database.url)
    from dataclasses import replace

    loaded = load_model(fast_settings.model.name)
    model = replace(loaded, predictor=InterruptAfter(loaded.predictor, 3))
    service = ForecastService(model, fast_settings.forecast.model_copy(update={"batch_windows": 10}), store,
                              progress=False)
    with pytest.raises(KeyboardInterrupt):
        service.forecast_at(sample_candles, range(31, 131), "X", "1h")
    assert service.computed == 20
    again = ForecastService(load_model(fast_settings.model.name),
                            fast_settings.forecast.model_copy(update={"batch_windows": 10}), store, progress=False)
    again.forecast_at(sample_candles, range(31, 131), "X", "1h")
    assert again.reused == 20 and again.computed == 80


def test_progress_lines_when_not_on_a_terminal():
    stream = io.StringIO()
    batches = [[1] * 10] * 5
    assert list(batch_progress(batches, True, 50, 10, stream=stream, every_s=0)) == batches
    lines = stream.getvalue().strip().splitlines()
    assert len(lines) >= 5 and lines[-1].startswith("forecasting windows: 50/50 (100%)")
    assert "left" in lines[1] and "windows/s" in lines[1]


def test_backtest_preamble_and_interrupt_message(tmp_path, tiny_model_dir, sample_candles, monkeypatch):
    from kronos_trader.cli import app
    from kronos_trader.data import save_candles

    data = save_candles(sample_candles.iloc[:120], tmp_path / "btc.csv")
    config = _config(tmp_path, tiny_model_dir)
    ok = CliRunner().invoke(app, ["backtest", "-c", config, "--data", str(data), "--no-progress"])
    assert ok.exit_code == 0, ok.output
    first = ok.output.strip().splitlines()[0]
    assert first.startswith("backtest btc") and "120 bars" in first and "89 windows" in first and "model" in first

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("kronos_trader.backtest.runner.run_backtest", interrupted)
    stopped = CliRunner().invoke(app, ["backtest", "-c", config, "--data", str(data), "--no-progress"])
    assert stopped.exit_code == 130
    assert "interrupted" in stopped.output and "kept" in stopped.output


class SlowPredictor:
    """A predictor that takes `seconds` per window and step on top of the model's own time."""

    def __init__(self, predictor, seconds):
        self.predictor, self.seconds = predictor, seconds

    def __getattr__(self, name):
        return getattr(self.predictor, name)

    def forecast_batch(self, windows, *args, pred_len=None, **kwargs):
        import time

        time.sleep(self.seconds * len(windows) * pred_len)
        return self.predictor.forecast_batch(windows, *args, pred_len=pred_len, **kwargs)


def test_estimate_is_measured_and_counts_only_windows_to_compute(fast_settings, sample_candles):
    """The preamble gave no time at all: the estimate only came after the first batch."""
    import time
    from dataclasses import replace

    from kronos_trader.backtest.preamble import estimate_run

    store = open_store(fast_settings.database.url)
    loaded = load_model(fast_settings.model.name)
    candles = sample_candles.iloc[:131]  # lookback 32: 100 decision windows
    ForecastService(loaded, fast_settings.forecast, store, progress=False).forecast_at(
        candles, range(31, 71), "X", "1h")  # 40 already stored
    service = ForecastService(replace(loaded, predictor=SlowPredictor(loaded.predictor, 0.01)),
                              fast_settings.forecast.model_copy(update={"batch_windows": 20}), store, progress=False)
    estimate = estimate_run(service, candles, "X", "1h")
    assert (estimate.windows, estimate.to_compute, estimate.probed) == (100, 60, 20)  # the first batch
    assert "estimate" in estimate.describe() and "60 to compute" in estimate.describe()
    started = time.perf_counter()
    service.forecast_series(candles, "X", "1h")
    actual = time.perf_counter() - started
    # the probed batch is the run's own: counted once, as computed, not as reused
    assert (service.computed, service.reused) == (60, 40)
    assert 0.7 * actual <= estimate.seconds <= 1.5 * actual, (estimate, actual)
    nothing = estimate_run(service, candles, "X", "1h")
    assert (nothing.to_compute, nothing.seconds, nothing.probed) == (0, 0.0, 0)


def test_backtest_preamble_gives_the_time_estimate_up_front(tmp_path, tiny_model_dir, sample_candles):
    import re

    from kronos_trader.cli import app
    from kronos_trader.data import save_candles

    data = save_candles(sample_candles.iloc[:120], tmp_path / "btc.csv")
    config = _config(tmp_path, tiny_model_dir)
    first = CliRunner().invoke(app, ["backtest", "-c", config, "--data", str(data), "--no-progress"])
    assert first.exit_code == 0, first.output
    line = first.output.strip().splitlines()[0]
    assert "89 windows (0 stored, 89 to compute)" in line and re.search(r"estimated .*\d+m\d\ds", line), line
    assert "forecasts: 89 computed, 0 reused" in first.output
    again = CliRunner().invoke(app, ["backtest", "-c", config, "--data", str(data), "--no-progress"])
    line = again.output.strip().splitlines()[0]
    assert "89 windows (89 stored, 0 to compute)" in line and "no forecasting" in line, line
    assert "forecasts: 0 computed, 89 reused" in again.output
