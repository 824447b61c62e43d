"""Output that reads well anywhere: tables at full width off a terminal, `--json` for
scripts, plain help without "<bool>", model-window warnings once as one line."""
from __future__ import annotations

import json

from test_cli import _config
from typer.testing import CliRunner

from kronos_trader.cli import app
from kronos_trader.data import save_candles

runner = CliRunner()


def test_help_shows_no_bool_placeholder():
    """Reported: `kronos-trader --help` listed `--help <bool>` (and `--once <bool>`)."""
    for args in (["--help"], ["paper", "--help"], ["backtest", "--help"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        assert "<bool>" not in result.output and "--help" in result.output


def test_tables_keep_full_width_off_a_terminal(tmp_path, tiny_model_dir, sample_candles, monkeypatch):
    """Reported: piped through `tee` or into a CI log the tables were cut to 80 columns
    (`Kron…`, `0.00…`). CliRunner's stdout is not a terminal, as in CI."""
    monkeypatch.delenv("COLUMNS", raising=False)
    data = save_candles(sample_candles.iloc[:150], tmp_path / "btc.csv")
    result = runner.invoke(app, ["forecast", "-c", _config(tmp_path, tiny_model_dir), "--data", str(data),
                                 "--out", str(tmp_path / "fc")])
    assert result.exit_code == 0, result.output
    assert "…" not in result.output
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in result.stdout.splitlines()
            if line.startswith("│ 20")]
    assert len(rows) == 4 and all(len(row) == 8 for row in rows), result.stdout
    assert all(len(row[-1]) == 6 and row[0].count(":") == 2 for row in rows), result.stdout  # p_up 0.xxxx


def test_forecast_json(tmp_path, tiny_model_dir, sample_candles):
    data = save_candles(sample_candles.iloc[:150], tmp_path / "btc.csv")
    result = runner.invoke(app, ["forecast", "-c", _config(tmp_path, tiny_model_dir), "--data", str(data),
                                 "--out", str(tmp_path / "fc"), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert len(doc["bars"]) == 4 and {"mean", "q05", "q95", "p_up"} <= set(doc["bars"][0])
    assert doc["window_end"] == str(sample_candles.index[149])


def test_backtest_json(tmp_path, tiny_model_dir, sample_candles):
    data = save_candles(sample_candles.iloc[:120], tmp_path / "btc.csv")
    result = runner.invoke(app, ["backtest", "-c", _config(tmp_path, tiny_model_dir), "--data", str(data),
                                 "--no-progress", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["bars"] == 120 and "total_return" in doc["metrics"]["strategy"] and "forecast_skill" in doc


def test_evaluate_json(tmp_path, tiny_model_dir, sample_candles):
    data = save_candles(sample_candles.iloc[:200], tmp_path / "btc.csv")
    result = runner.invoke(app, ["evaluate", "-c", _config(tmp_path, tiny_model_dir), "--data", str(data),
                                 "--horizons", "1,4", "--stride", "16", "--no-progress", "--out",
                                 str(tmp_path / "ev"), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc == json.loads((tmp_path / "ev" / "evaluation.json").read_text())


def test_status_json():
    from test_web_support import paper_run_id, settings

    run = paper_run_id()
    result = runner.invoke(app, ["status", "--db", settings().database.url, "--run-id", run, "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["run"]["id"] == run and doc["equity"] is not None
    assert doc["pairs"][0]["symbol"] == "ETH/USDT" and doc["pairs"][0]["p_up"] is not None


def test_window_warning_is_one_line_once(tmp_path, sample_candles):
    """Reported: the ForecastWindowWarning was printed with its Python source line."""
    data = save_candles(sample_candles.iloc[:150], tmp_path / "btc.csv")
    result = runner.invoke(app, ["forecast", "--model", "kronos-nano", "--data", str(data), "--lookback", "64",
                                 "--horizon", "2", "--samples", "1", "--out", str(tmp_path / "fc")])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if "lookback 64 is far from" in line]
    assert len(lines) == 1 and lines[0].startswith("warning: "), result.output
    assert "warnings.warn" not in result.output and ".py:" not in result.output
