"""`kronos-trader fetch` against the local Binance server, then a backtest on stored candles."""
from __future__ import annotations

import pandas as pd
from typer.testing import CliRunner

from kronos_trader.cli import app
from kronos_trader.store import open_store

pytest_plugins = ["fake_exchange.fixtures"]
runner = CliRunner()


def test_fetch_paginates_into_the_database_and_backtest_reads_it(binance_server, tmp_path, tiny_model_dir):
    db = f"sqlite:///{tmp_path / 'fetch.db'}"
    result = runner.invoke(app, ["fetch", "--api-url", binance_server.url, "--symbol", "BTC/USDT", "--timeframe",
                                 "1m", "--start", "2024-01-01", "--db", db])
    assert result.exit_code == 0, result.output
    stored = open_store(db).load_candles("binance", "BTC/USDT", "1m")
    # 3000 one-minute bars with the last still forming: 2999 closed bars, over several pages of 1000
    assert len(stored) == 2999
    assert stored.index[0] == pd.Timestamp("2024-01-01") and stored.index.is_monotonic_increasing
    assert len(binance_server.requests_to("/api/v3/klines")) >= 3
    config = tmp_path / "c.yaml"
    config.write_text(f"model: {{name: {tiny_model_dir}}}\nforecast: {{lookback: 32, horizon: 4, sample_count: 2}}\n"
                      f"backtest: {{report_dir: {tmp_path / 'r'}}}\n")
    result = runner.invoke(app, ["backtest", "-c", str(config), "--db", db, "--symbol", "BTC/USDT", "--timeframe",
                                 "1m", "--start", "2024-01-02 23:00", "--end", "2024-01-03", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "Total return" in result.output


def test_fetch_unknown_symbol_is_one_line(binance_server, tmp_path):
    result = runner.invoke(app, ["fetch", "--api-url", binance_server.url, "--symbol", "NOPE/USDT", "--start",
                                 "2024-01-01", "--db", f"sqlite:///{tmp_path / 'x.db'}"])
    assert result.exit_code == 1
    assert result.output.strip().startswith("error:") and "NOPE/USDT" in result.output
    assert len(result.output.strip().splitlines()) == 1
