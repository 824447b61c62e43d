"""The versioned API (/api/v1) driven by httpx: a posted or stored window's forecast (the
forecast service's own numbers), listings, OpenAPI and /docs, the API key, and bad input
as one-line structured errors."""
from __future__ import annotations

import threading
import time

import httpx
import numpy as np
import pytest
from test_web_support import (
    SOURCE,
    SYMBOL,
    TIMEFRAME,
    assert_one_line_error,
    backtest_run_id,
    candles,
    client,
    make_app,
    one_torch_thread,
    paper_run_id,
    settings,
)


@pytest.fixture(scope="module")
def c():
    with one_torch_thread():
        yield client()


def window(n: int = 100, seed: int = 0) -> dict:
    frame = candles(n, seed)
    return {"timestamps": [t.isoformat() for t in frame.index],
            **{col: frame[col].round(6).tolist() for col in ("open", "high", "low", "close", "volume")}}


def test_forecast_of_a_posted_window_is_the_services(c):
    r = c.post("/api/v1/forecast", json={"candles": window(), "symbol": "XYZ", "seed": 7})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["symbol"] == "XYZ" and doc["timeframe"] == "1h" and doc["horizon"] == 8 and doc["lookback"] == 64
    assert len(doc["stamps"]) == 8 and len(doc["p_up"]) == 8 and all(0 <= p <= 1 for p in doc["p_up"])
    assert set(doc["quantiles"]) == {"0.05", "0.25", "0.5", "0.75", "0.95"}
    assert doc["skill"] is None
    # the same numbers as the forecast service in process
    from kronos_trader.forecasting.models import load_model
    from kronos_trader.forecasting.service import ForecastService
    from kronos_trader.serve import candles_from_columns

    s = settings()
    posted = window()
    frame = candles_from_columns(posted.pop("timestamps"), posted)
    service = ForecastService.from_settings(s, None, False, load_model(s.model.name, "cpu"), seed=7)
    direct = service.forecast_latest(frame, "XYZ", "1h")
    np.testing.assert_allclose(doc["mean"]["close"], direct.mean[:, 3], rtol=1e-5)
    np.testing.assert_allclose(doc["p_up"], direct.p_up, atol=1e-6)


def test_forecast_with_recent_skill_and_overrides(c):
    r = c.post("/api/v1/forecast", json={"candles": window(120), "horizon": 4, "sample_count": 3,
                                         "skill_windows": 5})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["horizon"] == 4 and doc["sample_count"] == 3 and len(doc["stamps"]) == 4
    assert doc["skill"]["windows"] == 5 and "random walk" in doc["skill"]["verdict"]


def test_forecast_of_a_stored_series(c):
    backtest_run_id()  # stores the candles
    r = c.post("/api/v1/forecast", json={"source": SOURCE, "symbol": SYMBOL, "timeframe": TIMEFRAME})
    assert r.status_code == 200, r.text
    assert r.json()["symbol"] == SYMBOL and len(r.json()["stamps"]) == 8


@pytest.mark.parametrize("change, status, needle", [
    (lambda b: b["candles"].update({k: v[:30] for k, v in b["candles"].items()}), 422, "fewer than the lookback"),
    (lambda b: b["candles"]["close"].__setitem__(50, None), 422, "close"),
    (lambda b: b.update(model="kronos-huge"), 422, "unknown model"),
    (lambda b: b.update(source="binance"), 422, "either candles"),
    (lambda b: b["candles"]["high"].pop(), 422, "high has 99 values"),
    (lambda b: b["candles"]["timestamps"].__setitem__(3, "yesterday-ish"), 422, "timestamps"),
    (lambda b: b.update(horizon=0), 422, "horizon"),
    (lambda b: b.update(bogus=1), 422, "bogus"),
    (lambda b: b.update(skill_windows=3, candles=window(70)), 422, "skill_windows needs"),
])
def test_bad_input_is_a_one_line_error(c, change, status, needle):
    body = {"candles": window()}
    change(body)
    assert_one_line_error(c.post("/api/v1/forecast", json=body), status, needle)


def test_nan_literal_is_refused(c):
    body = window()
    text = httpx.Request("POST", "http://x", json={"candles": body}).content.decode()
    text = text.replace(str(body["close"][10]), "NaN", 1)
    r = c.post("/api/v1/forecast", content=text, headers={"Content-Type": "application/json"})
    assert_one_line_error(r, 422, "missing value (empty or NaN)", "row ")


def test_listings(c):
    run, paper = backtest_run_id(), paper_run_id()
    assert run in [r["id"] for r in c.get("/api/v1/backtests").json()["runs"]]
    assert c.get(f"/api/v1/backtests/{run}").status_code == 200
    assert paper in [r["id"] for r in c.get("/api/v1/runs").json()["runs"]]
    status = c.get(f"/api/v1/runs/{paper}/status").json()
    assert status["run"]["id"] == paper and status["pairs"][0]["symbol"] == "ETH/USDT"
    assert_one_line_error(c.get(f"/api/v1/runs/{run}/status"), 404, "no paper or live run")
    assert "sweeps" in c.get("/api/v1/sweeps").json()
    models = c.get("/api/v1/models").json()
    assert models["models"] and models["default"]


def test_openapi_and_docs(c):
    spec = c.get("/openapi.json").json()
    assert "/api/v1/forecast" in spec["paths"] and "/api/v1/backtests" in spec["paths"]
    assert not [p for p in spec["paths"] if not p.startswith("/api/v1/")]  # the UI's own JSON is not the API
    page = c.get("/docs")
    assert page.status_code == 200 and "/api/v1/forecast" in page.text and "cdn" not in page.text.lower()


def test_api_key(monkeypatch):
    monkeypatch.setenv("KT_TEST_API_KEY", "k3y")
    with one_torch_thread():
        keyed = client(make_app(settings=settings(api_key_env="KT_TEST_API_KEY")))
        assert_one_line_error(keyed.get("/api/v1/models"), 401, "API key")
        assert keyed.get("/api/v1/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert keyed.get("/api/v1/models", headers={"Authorization": "Bearer k3y"}).status_code == 200
        assert keyed.get("/api/v1/models", headers={"X-API-Key": "k3y"}).status_code == 200
        assert keyed.get("/openapi.json").status_code == 401
        assert keyed.get("/healthz").status_code == 200
        # the pages (and their own JSON) need it too: a login sets a cookie derived from the key
        assert_one_line_error(keyed.get("/api/models"), 401, "API key")
        page = keyed.get("/", follow_redirects=False)
        assert page.status_code == 303 and page.headers["location"] == "/login"
        assert keyed.get("/login").status_code == 200 and keyed.get("/static/app.css").status_code == 200
        wrong = keyed.post("/login", data={"key": "nope"}, follow_redirects=False)
        assert wrong.status_code == 401 and "wrong key" in wrong.text and "kronos_session" not in wrong.headers.get(
            "set-cookie", "")
        ok = keyed.post("/login", data={"key": "k3y"}, follow_redirects=False)
        cookie = ok.headers["set-cookie"]
        assert ok.status_code == 303 and "httponly" in cookie.lower() and "samesite=strict" in cookie.lower()
        assert "k3y" not in cookie
        assert keyed.get("/").status_code == 200 and keyed.get("/api/models").status_code == 200
        assert keyed.get("/api/v1/models").status_code == 200
        forged = client(make_app(settings=settings(api_key_env="KT_TEST_API_KEY")))
        forged.cookies.set("kronos_session", "0" * 64)
        assert forged.get("/api/models").status_code == 401


def test_over_real_http():
    """A real server on 127.0.0.1 and a plain httpx client."""
    import socket

    import uvicorn

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(make_app(), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.time() + 20
        while not server.started and time.time() < deadline:
            time.sleep(0.05)
        with one_torch_thread(), httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
            r = http.post("/api/v1/forecast", json={"candles": window()})
            assert r.status_code == 200 and len(r.json()["stamps"]) == 8
            assert_one_line_error(http.post("/api/v1/forecast", json={"candles": window(20)}), 422, "lookback")
    finally:
        server.should_exit = True
        thread.join(10)
