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
