"""Representative backtests give exactly the outputs pinned in tests/data/backtest_pins.json
(recorded before the single-symbol run became a one-symbol portfolio): equity, trades,
journal, summary.json and the stored records of three single-symbol runs (the demo config,
tight stops, high costs) and two portfolio runs (per-symbol and cross-sectional)."""
from __future__ import annotations

import json

import pytest

from backtest_pins import PINS_PATH, run_pins


@pytest.fixture(scope="module")
def produced(tiny_model_dir, tmp_path_factory):
    return run_pins(tiny_model_dir, str(tmp_path_factory.mktemp("pins")))


@pytest.mark.parametrize("scenario", ["default", "stops", "costs", "portfolio_directional", "portfolio_topk"])
def test_backtest_outputs_are_pinned(produced, scenario):
    pinned = json.loads(PINS_PATH.read_text())[scenario]
    ours = json.loads(json.dumps(produced[scenario], sort_keys=True))  # through JSON, as pinned
    assert ours["counts"] == pinned["counts"]
    assert ours["final_equity"] == pinned["final_equity"]
    assert ours["summary"] == pinned["summary"]
    for part in ("forecasts", "equity", "trades", "journal", "stored", "stored_summary"):
        assert ours[part] == pinned[part], f"{scenario}: {part} differs from the pinned run"
