"""The command line: the main job on small settings, and one-line errors for bad input."""
from __future__ import annotations

import yaml
from typer.testing import CliRunner

from kronos_trader.cli import app
from kronos_trader.data import save_candles

runner = CliRunner()


def _config(tmp_path, tiny_model_dir, **sections) -> str:
    base = {"model": {"name": tiny_model_dir, "device": "cpu"},
            "forecast": {"lookback": 32, "horizon": 4, "sample_count": 4},
            "database": {"url": f"sqlite:///{tmp_path / 'cli.db'}"},
            "backtest": {"report_dir": str(tmp_path / "reports")}}
    for key, value in sections.items():
        base.setdefault(key, {}).update(value)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(base))
    return str(path)


def _one_line_error(result, *fragments):
    assert result.exit_code == 1, result.output
    lines = [l for l in result.output.strip().splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_backtest_command_writes_report(tmp_path, tiny_model_dir, sample_candles):
    data = save_candles(sample_candles.iloc[:150], tmp_path / "btc.csv")
    result = runner.invoke(app, ["backtest", "-c", _config(tmp_path, tiny_model_dir), "--data", str(data),
                                 "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "Total return" in result.output and "Buy & hold" in result.output
    folders = [p for p in (tmp_path / "reports").iterdir() if p.is_dir()]
    assert len(folders) == 1 and (tmp_path / "reports" / "plotly.min.js").is_file()  # Plotly once, beside the runs
    assert {p.name for p in folders[0].iterdir()} == {"calibration.png", "chart.html", "equity.png", "summary.json",
                                                 "trades.csv"}


def test_forecast_command(tmp_path, tiny_model_dir, sample_candles):
    data = save_candles(sample_candles.iloc[:100], tmp_path / "btc.csv")
    result = runner.invoke(app, ["forecast", "-c", _config(tmp_path, tiny_model_dir), "--data", str(data),
                                 "--out", str(tmp_path / "fc")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "fc" / "forecast.png").exists() and (tmp_path / "fc" / "forecast.csv").exists()


def test_lookahead_command(tmp_path, tiny_model_dir, sample_candles):
    data = save_candles(sample_candles.iloc[:120], tmp_path / "btc.csv")
    result = runner.invoke(app, ["lookahead-check", "-c", _config(tmp_path, tiny_model_dir), "--data", str(data),
                                 "--bars", "120"])
    assert result.exit_code == 0, result.output
    assert "PASSED" in result.output


def test_lookahead_command_checks_a_portfolio(tmp_path, tiny_model_dir, sample_candles):
    a = save_candles(sample_candles.iloc[:120], tmp_path / "a.csv")
    from factories import make_candles

    b = save_candles(make_candles(120, seed=5, start=str(sample_candles.index[0].tz_localize(None))), tmp_path / "b.csv")
    result = runner.invoke(app, ["lookahead-check", "-c", _config(tmp_path, tiny_model_dir), "--symbols",
                                 f"A/USDT={a},B/USDT={b}", "--bars", "120", "--sensitivity-bars", "0",
                                 "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "PASSED" in result.output


def test_bad_config_field(tmp_path, tiny_model_dir):
    config = _config(tmp_path, tiny_model_dir, forecast={"bogus": 1, "horizon": 0})
    result = runner.invoke(app, ["backtest", "-c", config])
    _one_line_error(result, "forecast.bogus: unknown field", "allowed: lookback", "forecast.horizon")


def test_bad_config_value_names_allowed_values(tmp_path, tiny_model_dir):
    result = runner.invoke(app, ["backtest", "-c", _config(tmp_path, tiny_model_dir,
                                                           paper={"missed_candles": "later"})])
    _one_line_error(result, "paper.missed_candles", "'catch_up' or 'skip'")


def test_malformed_csv(tmp_path, tiny_model_dir):
    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp,open,high,low,close\n2024-01-01 00:00,1,2,0.5,1.5\n2024-01-01 01:00,1,oops,0.5,1\n")
    result = runner.invoke(app, ["backtest", "-c", _config(tmp_path, tiny_model_dir), "--data", str(bad)])
    _one_line_error(result, "bad.csv", "high")


def test_missing_file_and_unknown_model(tmp_path, tiny_model_dir):
    result = runner.invoke(app, ["backtest", "-c", _config(tmp_path, tiny_model_dir), "--data",
                                 str(tmp_path / "nope.csv")])
    _one_line_error(result, "nope.csv")
    result = runner.invoke(app, ["forecast", "-c", _config(tmp_path, tiny_model_dir), "--model", "kronos-huge"])
    _one_line_error(result, "unknown model 'kronos-huge'")
    result = runner.invoke(app, ["backtest", "-c", str(tmp_path / "missing.yaml")])
    _one_line_error(result, "missing.yaml: file not found")
