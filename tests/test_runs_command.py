"""Runs you can find again: meaningful names, `runs`, `runs show ID`, `runs compare A B`."""
from __future__ import annotations

import json

from typer.testing import CliRunner

from kronos_trader.backtest.run_catalog import run_name
from kronos_trader.backtest.runner import run_backtest
from kronos_trader.cli import app
from kronos_trader.store import open_store

runner = CliRunner()


def test_run_names_say_symbol_timeframe_and_strategy():
    assert run_name(["BTC/USDT"], "1h", "strategies.directional:Directional") == "BTC/USDT 1h Directional"
    assert run_name(["A/USDT", "B/USDT", "C/USDT", "D/USDT"], "4h", "strategies.cross_sectional:TopK") == \
        "A/USDT+B/USDT+C/USDT+1 more 4h TopK"


def test_runs_list_show_and_compare(fast_settings, sample_candles, tmp_path):
    store = open_store(fast_settings.database.url)
    a = run_backtest(fast_settings, sample_candles.iloc[:150], "BTC/USDT", "1h", store, progress=False)
    raw = fast_settings.model_dump(mode="json")
    raw["costs"]["commission"] = 0.003
    raw["backtest"].pop("commission", None)  # the legacy copy of costs.commission
    from kronos_trader.config import parse_settings

    b = run_backtest(parse_settings(raw), sample_candles.iloc[:150], "BTC/USDT", "1h", store, progress=False)
    assert store.get_run(a.run_id).name == "BTC/USDT 1h Directional"
    db = ["--db", fast_settings.database.url]
    listed = runner.invoke(app, ["runs", *db, "--json"])
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.output)
    assert {r["id"] for r in rows} == {a.run_id, b.run_id}
    row = next(r for r in rows if r["id"] == a.run_id)
    assert row["name"] == "BTC/USDT 1h Directional" and row["bars"] == 150 and row["trades"] == len(a.trades)
    assert row["first_bar"] == str(sample_candles.index[0])
    table = runner.invoke(app, ["runs", *db])
    assert table.exit_code == 0 and "BTC/USDT 1h Directional" in table.output
    shown = runner.invoke(app, ["runs", "show", a.run_id[:8], *db])
    assert shown.exit_code == 0, shown.output
    assert "Total return" in shown.output and "commission" in shown.output
    compared = runner.invoke(app, ["runs", "compare", a.run_id[:8], b.run_id[:8], *db])
    assert compared.exit_code == 0, compared.output
    assert "costs.commission" in compared.output and "0.003" in compared.output and "Total return" in compared.output
    missing = runner.invoke(app, ["runs", "show", "nope", *db])
    assert missing.exit_code == 1 and "no run" in missing.output
