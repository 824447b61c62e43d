"""Issue 25.6: the bundled sample is synthetic; every output made from it says so."""
from __future__ import annotations

import json

from typer.testing import CliRunner

from kronos_trader.backtest.report import metrics_table, series_title, write_report
from kronos_trader.backtest.runner import run_backtest
from kronos_trader.data import SAMPLE_DATA_PATH, is_synthetic, load_candles, save_candles

from test_cli import _config


def test_the_sample_is_marked_and_a_users_file_is_not(sample_candles, tmp_path):
    assert is_synthetic(load_candles(SAMPLE_DATA_PATH)) and is_synthetic(sample_candles.iloc[10:50])
    copy = save_candles(sample_candles.iloc[:50], tmp_path / "BTCUSDT-1h.csv")
    assert not is_synthetic(load_candles(copy))


def test_backtest_report_on_the_sample_says_synthetic(fast_settings, sample_candles, tmp_path):
    result = run_backtest(fast_settings, sample_candles.iloc[:120], "BTC/USDT", "1h", None, progress=False)
    assert "synthetic" in series_title(result)
    assert "synthetic" in str(metrics_table(result).title)
    folder = write_report(result, tmp_path / "report")
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["synthetic"] is True and any("synthetic" in w for w in summary["warnings"])
    html = (folder / "chart.html").read_text()
    assert "BTC/USDT 1h (synthetic sample" in html and "<title>BTC/USDT 1h (synthetic sample" in html


def test_cli_backtest_and_forecast_on_the_sample_say_synthetic(tmp_path, tiny_model_dir):
    config = _config(tmp_path, tiny_model_dir)
    result = CliRunner().invoke(__import__("kronos_trader.cli", fromlist=["app"]).app,
                                ["backtest", "-c", config, "--start", "2024-12-29", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "synthetic" in result.output
    result = CliRunner().invoke(__import__("kronos_trader.cli", fromlist=["app"]).app,
                                ["forecast", "-c", config, "--out", str(tmp_path / "fc")])
    assert result.exit_code == 0, result.output
    assert "synthetic" in result.output
