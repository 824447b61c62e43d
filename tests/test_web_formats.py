"""Issue 25 (web): one number format across the pages and the CLI: exposure with the table's
digits, prices with trailing zeros, 24-hour UTC stamps, the drawdown axis without repeated
ticks, the run's settings (gate, stops, dates) and trades' exit reasons shown."""
from __future__ import annotations

import re

from test_web_e2e import browser, page, server, traces  # noqa: F401 - fixtures
from test_web_support import backtest_run_id


def test_backtest_page_formats(server, page):  # noqa: F811 - fixtures
    run_id = backtest_run_id()
    page.goto(server + f"/backtests/{run_id}")
    page.wait_for_function("(document.getElementById('equity-chart').data || []).length === 2")
    page.wait_for_selector("#trades tbody tr")
    headline = page.inner_text("#headline")
    exposure = re.search(r"exposure\s+([0-9.]+%)", headline).group(1)
    assert re.fullmatch(r"\d+\.\d\d%", exposure) and exposure in page.inner_text("#metrics-table")
    settings = page.inner_text("#config-kv")
    assert "stop-loss / take-profit" in settings and "skill gate" in settings and "bars (UTC)" in settings
    assert not re.search(r"\b(AM|PM)\b", settings) and "T" not in re.search(r"started \(UTC\)\s+(\S+ \S+)",
                                                                          settings).group(1)
    assert "exit reason" in page.inner_text("#trades thead")
    prices = page.eval_on_selector_all("#trades tbody tr td:nth-child(5)", "tds => tds.map(t => t.textContent)")
    decimals = {len(p.split(".")[1]) if "." in p else 0 for p in prices}
    assert len(decimals) == 1  # same digits for every price: trailing zeros kept
    ticks = page.eval_on_selector_all("#drawdown-chart .ytick text", "ts => ts.map(t => t.textContent)")
    assert ticks and len(ticks) == len(set(ticks))
    assert page.evaluate("K.price(1.2328)") == "1.23280"
    assert page.problems == [], page.problems


def test_paper_page_without_runs_says_so(server, page, monkeypatch):  # noqa: F811 - fixtures
    page.route("**/api/paper", lambda route: route.fulfill(status=200, content_type="application/json",
                                                           body='{"runs": []}'))
    page.goto(server + "/paper")
    page.wait_for_function("document.getElementById('run-select').disabled")
    assert "no paper-trading runs yet" in page.inner_text("#run-select")
    assert page.is_visible("#paper-empty")


def test_fx_weekend_takes_no_room_in_the_workbench_chart(server, page, tmp_path):  # noqa: F811 - fixtures
    """Issue 25 (web): FX weekends were drawn as blank days."""
    import pandas as pd
    from test_web_support import candles

    index = pd.date_range("2024-01-01", periods=24 * 7 * 3, freq="1h", name="timestamp")
    index = index[index.day_of_week < 5]
    frame = candles(len(index))
    frame.index = index
    csv = tmp_path / "EURUSD-1h.csv"
    frame.to_csv(csv)
    page.goto(server + "/")
    page.wait_for_function("document.querySelectorAll('#model option').length > 0")
    page.set_input_files("#file-input", str(csv))
    page.wait_for_selector("#dataset-info:not([hidden])")
    assert "market closures" in page.inner_text("#dataset-kv") and "none" in page.inner_text("#dataset-kv")
    page.fill("#lookback", "200")
    page.dispatch_event("#lookback", "change")
    page.wait_for_function("((document.getElementById('chart').layout || {}).xaxis || {}).rangebreaks"
                           " && document.getElementById('chart').layout.xaxis.rangebreaks.length > 0")
    breaks = page.evaluate("document.getElementById('chart').layout.xaxis.rangebreaks")
    assert breaks[0]["dvalue"] == 48 * 3600 * 1000 and breaks[0]["values"][0].endswith("00:00:00")


def _fx_backtest_run_id() -> str:
    """A real backtest run on hourly EUR/USD-like bars with the weekends closed, its candles stored."""
    import pandas as pd
    from test_web_support import SOURCE, candles, one_torch_thread, settings, store

    from kronos_trader.backtest.runner import run_backtest

    index = pd.date_range("2024-01-01", periods=24 * 7 * 3, freq="1h", name="timestamp")
    index = index[index.day_of_week < 5]
    bars = candles(len(index), seed=3)
    bars.index = index
    store().upsert_candles(SOURCE, "EUR/USD", "1h", bars)
    with one_torch_thread():
        return run_backtest(settings(), bars, "EUR/USD", "1h", store(), progress=False, name="fx-weekends").run_id


def test_fx_weekend_takes_no_room_in_the_backtest_charts(server, page):  # noqa: F811 - fixtures
    """Issue 25 (web): the backtest page drew FX weekends as blank days in its equity, drawdown and
    candle charts; the workbench chart already left them out."""
    page.goto(server + f"/backtests/{_fx_backtest_run_id()}")
    page.wait_for_function("(document.getElementById('overlay-chart').data || []).length > 0")
    weekend = 48 * 3600 * 1000
    for chart in ("equity-chart", "drawdown-chart", "overlay-chart"):
        breaks = page.evaluate(f"((document.getElementById('{chart}').layout || {{}}).xaxis || {{}}).rangebreaks")
        assert breaks and any(b["dvalue"] == weekend and len(b["values"]) == 2 for b in breaks), (chart, breaks)
    assert page.problems == [], page.problems
