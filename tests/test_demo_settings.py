"""The demo's settings belong to the demo: without a config.yaml the CLI runs the shipped demo
(not different built-in defaults), the demo's quarter applies to the bundled sample only,
and `kronos-trader init` gives an installed user the checkout's config and a strategies stub."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml
from factories import make_candles
from typer.testing import CliRunner

from kronos_trader.backtest.runner import load_backtest_candles
from kronos_trader.cli import app
from kronos_trader.config import DEMO_CONFIG_PATH, load_settings, parse_settings
from kronos_trader.data import save_candles

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def test_without_config_the_cli_runs_the_shipped_demo(tmp_path, monkeypatch):
    """Reported: from any other folder the built-in defaults differed from config.yaml (no
    gate, other thresholds, the sample's two years: 17,265 windows instead of a quarter)."""
    monkeypatch.chdir(tmp_path)
    demo = parse_settings(yaml.safe_load((ROOT / "config.yaml").read_text()))
    assert load_settings() == demo
    candles, _ = load_backtest_candles(load_settings(), None)
    assert candles.index[demo.forecast.lookback - 1] == pd.Timestamp("2024-10-01")


def test_the_packaged_demo_config_is_the_checkout_config():
    assert DEMO_CONFIG_PATH.read_bytes() == (ROOT / "config.yaml").read_bytes()


def test_demo_quarter_applies_to_the_sample_only(tmp_path):
    """Reported: `backtest --data goog_1d.csv` with the checkout's config stopped with
    "data.start 2024-10-01 is after the last bar": the demo's quarter hit the user's file."""
    bars = make_candles(600, start="2020-01-01")
    older = save_candles(bars, tmp_path / "older.csv")
    demo = yaml.safe_load((ROOT / "config.yaml").read_text())
    demo["data"]["path"] = str(older)
    candles, _ = load_backtest_candles(parse_settings(demo), None)
    assert len(candles) == 600  # used whole
    demo["data"]["start"] = str(bars.index[400])  # --start still applies to it
    candles, _ = load_backtest_candles(parse_settings(demo), None)
    lookback = demo["forecast"]["lookback"]
    assert candles.index[lookback - 1] == bars.index[400]  # lookback bars of history, then the start


def test_lookahead_check_on_an_older_user_file(tmp_path, tiny_model_dir):
    older = save_candles(make_candles(120, start="2019-01-01"), tmp_path / "older.csv")
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config["model"] = {"name": tiny_model_dir, "device": "cpu"}
    config["forecast"].update(lookback=32, horizon=4, sample_count=2)
    config["strategy"].pop("gate")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    result = runner.invoke(app, ["lookahead-check", "-c", str(tmp_path / "config.yaml"), "--data", str(older),
                                 "--bars", "80", "--sensitivity-bars", "0", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "after the last bar" not in result.output


def test_init_writes_the_demo_config_and_a_strategy_stub(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["init"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "config.yaml").read_bytes() == DEMO_CONFIG_PATH.read_bytes()
    assert "#" in (tmp_path / "config.yaml").read_text()  # commented
    stub = tmp_path / "strategies" / "my_strategy.py"
    assert stub.is_file()
    # the stub is importable as the config names it, beside the bundled strategies
    import importlib
    import sys

    from kronos_trader.decision import load_policy

    for name in [m for m in sys.modules if m == "strategies" or m.startswith("strategies.")]:
        monkeypatch.delitem(sys.modules, name)
    importlib.invalidate_caches()
    policy = load_policy("strategies.my_strategy:MyStrategy", {})
    assert type(policy).__name__ == "MyStrategy"
    assert load_policy("strategies.directional:Directional", {})  # the bundled ones still load
    # a second run leaves the user's files alone
    (tmp_path / "config.yaml").write_text("model: {name: kronos-nano}\n")
    again = runner.invoke(app, ["init"])
    assert again.exit_code == 1 and "exists" in again.output
    assert (tmp_path / "config.yaml").read_text() == "model: {name: kronos-nano}\n"
