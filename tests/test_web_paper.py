"""Paper-trading monitor API over a run seeded through the store API."""
from __future__ import annotations

import pytest
from test_web_support import assert_one_line_error, backtest_run_id, client, paper_run_id, settings


@pytest.fixture(scope="module")
def run_id() -> str:
    return paper_run_id()


@pytest.fixture(scope="module")
def c():
    return client()


def test_list(c, run_id):
    runs = c.get("/api/paper").json()["runs"]
    row = next(r for r in runs if r["id"] == run_id)
    assert row["kind"] == "paper" and row["status"] == "running"
    assert row["pairs"] == [{"symbol": "ETH/USDT", "timeframe": "1h"}]
    assert all(r["kind"] in ("paper", "live") for r in runs)


def test_detail(c, run_id):
    d = c.get(f"/api/paper/{run_id}").json()
    assert d["run"]["exchange"] == "binance" and d["run"]["live"] is False
    assert {b["currency"]: b["free"] for b in d["balances"]} == {"ETH": 2.5, "USDT": 9500.0}
    assert len(d["equity"]["timestamps"]) == 24 and d["summary"]["equity"] == pytest.approx(10100)
    assert d["summary"]["start_equity"] == pytest.approx(10000)
    (pair,) = d["pairs"]
    assert pair["symbol"] == "ETH/USDT" and len(pair["candles"]["timestamps"]) == 96
    pos = pair["position"]
    assert pos["base"] == "ETH" and pos["amount"] == 2.5
    assert pos["price"] == pytest.approx(pair["candles"]["close"][-1])
    assert pos["value"] == pytest.approx(2.5 * pos["price"])
    fill_price = d["fills"][0]["price"]
    assert pos["entry_price"] in (None, pytest.approx(fill_price))
    assert pair["signal"]["target_position"] == 1.0 and pair["signal"]["details"]["reason"].startswith("long")
    f = pair["forecast"]
    assert f["horizon"] == 8 and f["expected_return"] == pytest.approx(0.02, rel=1e-3)
    assert f["prob_up"] == pytest.approx(0.7) and f["timestamps"][0] == f["window_end"] == "2024-01-06 00:00:00"
    assert d["orders"][0]["client_order_id"] == "paper-test-eth-1" and d["orders"][0]["status"] == "filled"
    assert d["fills"][0]["side"] == "buy" and d["fills"][0]["symbol"] == "ETH/USDT"
    assert d["errors"] == [{"ts": d["errors"][0]["ts"], "symbol": "ETH/USDT",
                            "message": "exchange timeout while fetching ETH/USDT"}]
    assert [e["level"] for e in d["events"]] == ["error", "info"]


def test_unknown_and_wrong_kind(c):
    assert_one_line_error(c.get("/api/paper/nope"), 404, "no paper-trading run")
    assert_one_line_error(c.get(f"/api/paper/{backtest_run_id()}"), 404, "no paper-trading run")


def test_empty_database(tmp_path):
    from test_web_support import make_app

    app = make_app(settings=settings(db_url=f"sqlite:///{tmp_path / 'empty.db'}"), store=None)
    c = client(app)
    assert c.get("/api/paper").json() == {"runs": []}
    assert c.get("/api/backtests").json() == {"runs": []}
    assert c.get("/api/datasets/stored").json() == {"series": []}


def test_detail_shows_the_skill_gate_state(c):
    from test_web_support import store

    run = paper_run_id("paper-gate")
    store().record_event(run, "warning", "skill gate closed: CRPS skill vs RW+vol -0.031 over the last "
                                         "100 resolved", symbol="ETH/USDT")
    d = c.get(f"/api/paper/{run}").json()
    (gate,) = d["gate"]
    assert gate["symbol"] == "ETH/USDT" and gate["state"] == "closed" and "CRPS skill" in gate["message"]
