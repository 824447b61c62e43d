"""The CLI at freqtrade's level: run flags, --timerange, show-config with sources, --version, -h."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from kronos_trader.cli import app
from kronos_trader.commands.run_options import parse_timerange, run_overrides
from kronos_trader.data import save_candles

from test_cli import _config

runner = CliRunner()


def test_timerange_forms():
    assert parse_timerange("20240101-20240630") == ("2024-01-01", "2024-06-30")
    assert parse_timerange("20240101-") == ("2024-01-01", None)
    assert parse_timerange("-20240630") == (None, "2024-06-30")
    for bad in ("2024-01-01", "20240101", "20240230-20240301", "20240601-20240101", "x-y"):
        with pytest.raises(ValueError, match="--timerange"):
            parse_timerange(bad)


def test_run_flags_map_to_settings():
    got = run_overrides(strategy="strategies.directional:Directional", timerange="20240101-20240131", fee=0.002,
                        cash=5000.0, lookback=64, horizon=8, samples=16, stop_loss=0.03, take_profit=0.06)
    assert got == {"strategy.name": "strategies.directional:Directional", "data.start": "2024-01-01",
                   "data.end": "2024-01-31", "costs.commission": 0.002, "backtest.cash": 5000.0,
                   "forecast.lookback": 64, "forecast.horizon": 8, "forecast.sample_count": 16,
                   "risk.stop_loss": 0.03, "risk.take_profit": 0.06}


def test_backtest_flags_change_the_run(tmp_path, tiny_model_dir, sample_candles):
    data = save_candles(sample_candles.iloc[:200], tmp_path / "btc.csv")
    result = runner.invoke(app, ["backtest", "-c", _config(tmp_path, tiny_model_dir), "--data", str(data),
                                 "--no-progress", "--fee", "0.002", "--cash", "5000", "--lookback", "40",
                                 "--horizon", "3", "--samples", "2", "--stop-loss", "0.04",
                                 "--timerange", f"{sample_candles.index[100]:%Y%m%d}-"])
    assert result.exit_code == 0, result.output
    folder = next(p for p in (tmp_path / "reports").iterdir() if p.is_dir())
    summary = json.loads((folder / "summary.json").read_text())
    s = summary["settings"]
    assert s["costs"]["commission"] == 0.002 and s["costs"]["cash"] == 5000 and s["costs"]["stop_loss"] == 0.04
    assert (s["forecast"]["lookback"], s["forecast"]["horizon"], s["forecast"]["samples"]) == (40, 3, 2)
    assert summary["start"] >= f"{sample_candles.index[100]:%Y-%m-%d}" or summary["bars"] < 200


def test_show_config_names_the_source_of_each_setting(tmp_path, tiny_model_dir):
    config = _config(tmp_path, tiny_model_dir)
    result = runner.invoke(app, ["show-config", "-c", config, "--set", "forecast.horizon=12", "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["setting"]: r for r in json.loads(result.output)}
    assert rows["forecast.horizon"] == {"setting": "forecast.horizon", "value": 12, "source": "flag"}
    assert rows["forecast.lookback"]["value"] == 32 and rows["forecast.lookback"]["source"] == f"file {config}"
    assert rows["backtest.cash"]["source"] == "default"
    table = runner.invoke(app, ["show-config", "-c", config])
    assert table.exit_code == 0 and "forecast.lookback" in table.output and "default" in table.output
    bad = runner.invoke(app, ["show-config", "-c", config, "--set", "forecast.nope=1"])
    assert bad.exit_code == 1 and "error:" in bad.output


def test_version_and_short_help():
    from importlib.metadata import version

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and version("kronos-trader") in result.output
    short = runner.invoke(app, ["-h"])
    assert short.exit_code == 0 and "backtest" in short.output
    sub = runner.invoke(app, ["backtest", "-h"])
    assert sub.exit_code == 0 and "--timerange" in sub.output and "--fee" in sub.output


def test_warnings_print_as_one_line(capsys):
    """A policy warning printed the Python source line under it ('  warnings.warn(...)'). Every
    command shows warnings one way (commands.common.one_line_warnings), `train` and `web` too,
    and importing the CLI leaves Python's own warning format alone (it replaced it for the
    whole process)."""
    import warnings

    import kronos_trader.cli  # noqa: F401
    from kronos_trader.commands.train import _run

    assert warnings.formatwarning.__module__ == "warnings"

    def action() -> None:
        for _ in range(2):
            warnings.warn("Directional: long_threshold 0.6 falls between 0.5 and 0.625", UserWarning)

    _run(action)
    assert capsys.readouterr().err == "warning: Directional: long_threshold 0.6 falls between 0.5 and 0.625\n"


def test_show_config_takes_the_backtest_flags(tmp_path, tiny_model_dir):
    """show-config took only --set: `show-config --fee 0.002` was an error, so a user could not see
    what a backtest command line would run with."""
    config = _config(tmp_path, tiny_model_dir)
    flags = ["--strategy", "strategies.directional:Directional", "--timerange", "20240101-20240131",
             "--fee", "0.002", "--cash", "5000", "--lookback", "64", "--horizon", "8", "--samples", "16",
             "--stop-loss", "0.03", "--take-profit", "0.06", "--data", "prices.csv"]
    result = runner.invoke(app, ["show-config", "-c", config, "--json", *flags])
    assert result.exit_code == 0, result.output
    rows = {r["setting"]: r for r in json.loads(result.output)}
    expected = {"strategy.name": "strategies.directional:Directional", "data.start": "2024-01-01",
                "data.end": "2024-01-31", "costs.commission": 0.002, "backtest.cash": 5000.0,
                "forecast.lookback": 64, "forecast.horizon": 8, "forecast.sample_count": 16,
                "risk.stop_loss": 0.03, "risk.take_profit": 0.06, "data.path": "prices.csv"}
    for dotted, value in expected.items():
        assert rows[dotted] == {"setting": dotted, "value": value, "source": "flag"}, rows[dotted]
    dates = runner.invoke(app, ["show-config", "-c", config, "--json", "--start", "2024-02-01", "--end", "2024-03-01"])
    rows = {r["setting"]: r for r in json.loads(dates.output)}
    assert (rows["data.start"]["value"], rows["data.start"]["source"]) == ("2024-02-01", "flag")
    assert (rows["data.end"]["value"], rows["data.end"]["source"]) == ("2024-03-01", "flag")
    assert rows["backtest.cash"]["source"] == "default"


def test_backtest_and_show_config_share_one_set_of_run_flags():
    """One flag-to-settings mapping: each run flag is the same option (name, type, help) on both commands."""
    import typer.main

    from kronos_trader.commands.run_options import RUN_FLAGS

    group = typer.main.get_command(app)

    def options(name):
        return {p.name: (tuple(p.opts), str(p.bare_type), p.help) for p in group.commands[name].params}

    backtest, show = options("backtest"), options("show-config")
    assert set(RUN_FLAGS) >= {"strategy", "timerange", "fee", "cash", "lookback", "horizon", "samples",
                              "stop_loss", "take_profit", "data", "start", "end"}
    for name in RUN_FLAGS:
        assert backtest[name] == show[name], name
