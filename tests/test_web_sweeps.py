"""Sweep pages: the list, the trials table (out-of-sample first), objective-vs-parameter
plots and the best trials' equity, from a real walk-forward sweep in the web test store."""
from __future__ import annotations

from functools import cache

import pytest
from test_web_e2e import browser, page, server, shot, traces  # noqa: F401 - fixtures
from test_web_support import assert_one_line_error, candles, client, one_torch_thread, settings

NAME = "web-sweep"


@cache
def sweep_study():
    from kronos_trader.config import parse_settings
    from kronos_trader.sweep import SweepData, run_sweep

    raw = settings().model_dump(mode="json")
    # three thresholds that decide differently with 2 sample paths (P(up) is 0, 1/2 or 1)
    raw["sweep"] = {"name": NAME, "sampler": "grid", "walk_forward": 0.6, "objective": "total_return",
                    "min_trades": 0, "params": {"strategy.params.long_threshold": [0.45, 0.5, 0.75],
                               "risk.stop_loss": [0.02, 0.05]}}
    with one_torch_thread():
        return run_sweep(parse_settings(raw), SweepData({"BTC/USDT": candles(300)}, "1h"), progress=False).study


def test_sweep_api_lists_and_details():
    study = sweep_study()
    c = client()
    row = next(r for r in c.get("/api/sweeps").json()["sweeps"] if r["name"] == NAME)
    assert row["trials"] == 6 and row["objective"] == "total_return" and row["walk_forward"] == 0.6
    assert row["best"] == pytest.approx(study.best_value)
    assert row["best_oos"] == pytest.approx(study.best_trial.user_attrs["oos_value"])
    d = c.get(f"/api/sweeps/{NAME}").json()
    assert d["params"] == ["strategy.params.long_threshold", "risk.stop_loss"]
    values = [t["value"] for t in d["trials"]]
    assert values == sorted(values, reverse=True) and len(values) == 6
    assert d["trials"][0]["oos"] == pytest.approx(study.best_trial.user_attrs["oos_value"])
    assert len(d["curves"]) == 5 and all(len(c["x"]) == len(c["y"]) > 10 for c in d["curves"])
    assert_one_line_error(c.get("/api/sweeps/nope"), 404, "no sweep named 'nope'")


def test_sweep_pages_in_the_browser(server, page):  # noqa: F811 - fixtures
    sweep_study()
    page.goto(server + "/sweeps")
    page.wait_for_selector(f"a[href='/sweeps/{NAME}']")
    page.click(f"a[href='/sweeps/{NAME}']")
    page.wait_for_url(f"**/sweeps/{NAME}")
    page.wait_for_function("(document.getElementById('equity-plot').data || []).length === 5")
    for p in ("strategy.params.long_threshold", "risk.stop_loss"):
        assert page.evaluate(f"document.getElementById('param-{p}').data.length") == 2  # in- and out-of-sample
    header = page.inner_text("#trials thead")
    assert header.index("out-of-sample total_return") < header.index("in-sample total_return")
    # issue 23: the return, drawdown and trades of a walk-forward sweep are the out-of-sample ones
    assert all(f"{label} (out-of-sample)" in header for label in ("return", "max DD", "trades")), header
    # every plot has drawn axis titles (plotly.js 3+ ignores plain-string titles)
    for p in ("strategy.params.long_threshold", "risk.stop_loss"):
        drawn = page.inner_text(f"[id='param-{p}']")
        assert p in drawn and "total_return" in drawn, drawn
    assert "equity" in page.inner_text("#equity-plot") and "time (UTC)" in page.inner_text("#equity-plot")
    assert page.locator("#trials tbody tr").count() == 6
    shot(page, "sweep.png")
    assert page.problems == [], page.problems
    assert traces(page, "equity-plot") == 5


def test_sweep_list_counts_no_discarded_ask():
    """The list counted every ask of the sampler, also the points a resumed or concurrent process
    discarded (already finished elsewhere), so it overstated the trials a sweep ran."""
    import optuna
    from optuna.distributions import FloatDistribution
    from optuna.trial import TrialState, create_trial

    from kronos_trader.sweep.storage import study_storage

    name = "web-sweep-discarded"
    study = optuna.create_study(study_name=name, storage=study_storage(settings().database.url),
                                direction="maximize", load_if_exists=True)
    space = {"x": FloatDistribution(0, 1)}
    study.add_trial(create_trial(params={"x": 0.5}, distributions=space, value=1.0))
    study.add_trial(create_trial(params={"x": 0.5}, distributions=space, state=TrialState.FAIL,
                                 user_attrs={"discarded": "point finished by another process"}))
    row = next(r for r in client().get("/api/sweeps").json()["sweeps"] if r["name"] == name)
    assert row["trials"] == 1
    assert len(client().get(f"/api/sweeps/{name}").json()["trials"]) == 1
