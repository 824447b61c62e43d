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
