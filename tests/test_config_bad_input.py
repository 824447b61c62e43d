"""Bad config input is a one-line error naming the file, the line and the field (issue 21)."""
from __future__ import annotations

import pytest

from kronos_trader.config import ConfigError, load_settings


@pytest.mark.parametrize("text,expected", [
    ("risk:\n  stop_loss: 0.02\n  trailing: 0.01\n", "line 3: risk.trailing: unknown field (allowed: stop_loss"),
    ("costs: {fee: 0.001}\n", "line 1: costs.fee: unknown field (allowed: commission, slippage)"),
    ("strategy:\n  gate: {rule: hit_rate, windw: 50}\n", "strategy.gate.windw: unknown field (allowed: rule"),
    ("data: {start: 2024-02-01, end: 2024-01-01}\n", "data.start 2024-02-01 is after data.end 2024-01-01"),
    ("forecast: {sample_count: 1000000}\n", "line 1: forecast.sample_count: Input should be less than or equal to 256"),
    ("paper:\n  pairs: []\n", "line 2: paper.pairs: list at least one pair"),
    ("data:\n  end: 2300-01-01\n", "line 2: data.end: must lie between 1677-09-21 and 2262-04-11"),
    ("data:\n  symbol: ETH/USDT\n  timeframe: 1h\n  symbol: BTC/USDT\n",
     "line 4: data.symbol is given twice (first at line 2)"),
])
def test_bad_config_is_one_line_naming_file_line_and_field(tmp_path, text, expected):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    message = str(err.value)
    assert message.startswith(str(path)) and expected in message and "\n" not in message


def test_the_cli_prints_it_without_a_traceback(tmp_path):
    from typer.testing import CliRunner

    from kronos_trader.cli import app

    path = tmp_path / "config.yaml"
    path.write_text("risk: {trailing: 0.01}\n")
    result = CliRunner().invoke(app, ["backtest", "--config", str(path)])
    assert result.exit_code == 1 and "risk.trailing: unknown field" in result.output
    assert "Traceback" not in result.output


def test_a_year_2300_in_a_csv_names_the_file_and_line(tmp_path):
    from kronos_trader.data import CandleDataError, load_candles

    path = tmp_path / "candles.csv"
    path.write_text("timestamp,open,high,low,close,volume\n2024-01-01 00:00,1,2,0.5,1.5,10\n"
                    "2300-01-01 01:00,1,2,0.5,1.5,10\n")
    with pytest.raises(CandleDataError, match=r"candles.csv, line 3, column 'timestamp': .*outside the supported"):
        load_candles(path)


def test_a_big_csv_says_how_much_memory_it_needs(tmp_path, monkeypatch, caplog):
    from kronos_trader.data import fileio, load_candles

    path = tmp_path / "candles.csv"
    rows = [f"2024-01-01 {h:02d}:{m:02d},1,2,0.5,1.5,10" for h in range(24) for m in range(60)]
    path.write_text("timestamp,open,high,low,close,volume\n" + "\n".join(rows) + "\n")
    monkeypatch.setattr(fileio, "BIG_CSV_BYTES", 1000)
    caplog.set_level("WARNING")
    assert len(load_candles(path)) == 24 * 60  # every row read through the progress wrapper
    (record,) = [r for r in caplog.records if "memory while parsing" in r.getMessage()]
    assert "candles.csv" in record.getMessage()
