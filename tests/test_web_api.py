"""API tests for the web UI: pages, datasets and every bad-upload case, models, forecast
jobs and their downloads, error handling and hardening."""
from __future__ import annotations

import io
import json
import tempfile
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_web_support import (
    MODEL_ID,
    assert_one_line_error,
    candles,
    client,
    make_app,
    one_torch_thread,
    settings,
    store,
    wait_job,
)


@pytest.fixture(scope="module")
def c():
    with one_torch_thread():
        yield client()


def csv_bytes(frame: pd.DataFrame) -> bytes:
    return frame.to_csv().encode()


def upload(c, data: bytes, name: str = "candles.csv", **headers):
    return c.post("/api/datasets/upload", content=data, headers={"X-Filename": name, **headers})


@pytest.fixture(scope="module")
def dataset_id(c) -> str:
    r = upload(c, csv_bytes(candles(300)))
    assert r.status_code == 200, r.text
    return r.json()["id"]


# ----------------------------------------------------------------------------- pages
@pytest.mark.parametrize("path, marker", [("/", 'id="file-input"'), ("/backtests", 'id="runs"'),
                                          ("/paper", 'id="run-select"')])
def test_pages_render(c, path, marker):
    r = c.get(path)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert marker in r.text and '/vendor/plotly.min.js' in r.text
    assert "cdn" not in r.text.lower()


def test_plotly_and_static_assets_are_served_locally(c):
    r = c.get("/vendor/plotly.min.js")
    assert r.status_code == 200 and len(r.content) > 1_000_000 and b"plotly" in r.content[:2000].lower()
    for asset in ("common.js", "workbench.js", "backtest.js", "backtests.js", "paper.js", "app.css"):
        assert c.get(f"/static/{asset}").status_code == 200, asset


def test_health_and_security_headers(c):
    r = c.get("/healthz")
    assert r.json() == {"status": "ok"}
    assert r.headers["x-content-type-options"] == "nosniff"
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]


def test_foreign_host_header_is_refused(c):
    """Bound to loopback, the app refuses other Host names (DNS-rebinding guard)."""
    assert c.get("/", headers={"host": "attacker.example"}).status_code == 400


def test_unknown_api_route_is_one_line_json(c):
    assert_one_line_error(c.get("/api/nope"), 404, "not found")


def test_unknown_page_is_html(c):
    r = c.get("/backtests/does-not-exist", headers={"accept": "text/html"})
    assert r.status_code == 404 and "no backtest run" in r.text and "Traceback" not in r.text


# ----------------------------------------------------------------------------- models
def test_models_offer_hub_names_and_allow_listed_dirs_without_paths_in_ids(c):
    body = c.get("/api/models").json()
    ids = {m["id"]: m for m in body["models"]}
    assert {"kronos-mini", "kronos-small", "kronos-base", MODEL_ID} <= set(ids)
    assert ids[MODEL_ID]["max_context"] == 128 and ids["kronos-small"]["max_context"] == 512
    assert all("/" not in i for i in ids), ids
    # the defaults are the config's (one place for CLI, web and Python)
    assert "cpu" in body["devices"] and body["defaults"]["lookback"] == 64 and body["defaults"]["horizon"] == 8


def test_folder_of_pairs_in_allow_list(tmp_path):
    from factories import save_tiny_pair

    save_tiny_pair(tmp_path / "a")
    save_tiny_pair(tmp_path / "b")
    (tmp_path / "not-a-pair").mkdir()
    body = client(make_app(settings=settings(model_dirs=[str(tmp_path)]))).get("/api/models").json()
    assert {m["id"] for m in body["models"] if m["kind"] == "local"} == {"local:0:a", "local:0:b"}


# ----------------------------------------------------------------------------- datasets
def test_sample_dataset(c):
    info = c.post("/api/datasets/sample").json()
    assert info["source"] == "sample" and info["rows"] == 17520 and info["interval"] == "1h"
    assert info["start"].startswith("2023-01-01") and len(info["preview"]["head"]) == 5
    assert c.get(f"/api/datasets/{info['id']}").json()["rows"] == 17520


def test_upload_csv_reports_shape_range_and_interval(c):
    frame = candles(300).drop(columns=["volume"])
    info = upload(c, csv_bytes(frame), "my export.csv").json()
    assert info["name"] == "my export.csv" and info["rows"] == 300 and info["interval"] == "1h"
    assert info["columns"] == ["timestamp", "open", "high", "low", "close"]
    assert info["start"] == "2024-01-01 00:00:00" and info["end"] == "2024-01-13 11:00:00"
    assert any("no volume" in n for n in info["notes"])


def test_upload_feather_and_parquet(c):
    frame = candles(100).reset_index()
    for suffix, writer in ((".feather", frame.to_feather), (".parquet", frame.to_parquet)):
        buf = io.BytesIO()
        writer(buf)
        info = upload(c, buf.getvalue(), f"bars{suffix}").json()
        assert info["rows"] == 100 and info["interval"] == "1h", info


def test_upload_without_timestamps_numbers_the_bars(c):
    frame = candles(50).reset_index(drop=True)
    info = upload(c, frame.to_csv(index=False).encode(), "no-time.csv").json()
    assert info["rows"] == 50 and info["interval"] == "1h"
    assert any("no timestamp column" in n for n in info["notes"])


def test_upload_detects_gaps_and_other_intervals(c):
    frame = candles(100)
    frame.index = pd.date_range("2024-01-01", periods=100, freq="15min", name="timestamp")
    frame = frame.drop(frame.index[40:43])
    info = upload(c, csv_bytes(frame)).json()
    assert info["interval"] == "15m" and info["gaps"] == 1 and info["missing_bars"] == 3


def _bad_frames():
    good = candles(60)
    nan = good.copy()
    nan.iloc[10, nan.columns.get_loc("close")] = np.nan
    unsorted = good.iloc[[*range(20), 25, *range(20, 25), *range(26, 60)]]
    dup = good.copy()
    dup.index = dup.index.where(np.arange(60) != 30, dup.index[29])
    text = good.astype(object)
    text.iloc[5, 0] = "abc"
    return {
        "missing columns": (csv_bytes(good.drop(columns=["close", "low"])), "candles.csv", 422,
                            ["missing required column", "close"]),
        "NaN value": (csv_bytes(nan), "candles.csv", 422, ["missing value", "close"]),
        "unsorted timestamps": (csv_bytes(unsorted), "candles.csv", 422, ["out of order"]),
        "duplicate timestamps": (csv_bytes(dup), "candles.csv", 422, ["duplicate timestamp"]),
        "not a number": (csv_bytes(text), "candles.csv", 422, ["not a number", "abc"]),
        "not a CSV (binary)": (bytes(range(256)) * 40, "candles.csv", 422, ["not utf-8"]),
        "not a CSV (prose)": (b"hello world\nthis is not a table\n", "candles.csv", 422, ["missing required column"]),
        "ragged CSV": (b"timestamp,open,high,low,close\n2024-01-01,1,2,0.5,1.5\n2024-01-02,1,2\n", "c.csv", 422,
                       ["fields"]),
        "empty file": (b"", "candles.csv", 422, ["empty"]),
        "header only": (b"timestamp,open,high,low,close\n", "candles.csv", 422, ["no data rows"]),
        "too few bars": (csv_bytes(good.iloc[:5]), "candles.csv", 422, ["at least"]),
        "wrong type (.txt)": (csv_bytes(good), "candles.txt", 415, ["unsupported file type", ".txt"]),
        "wrong type (.xlsx)": (b"PK\x03\x04" + b"0" * 100, "book.xlsx", 415, ["unsupported file type"]),
        "no suffix": (csv_bytes(good), "candles", 415, ["unsupported file type"]),
        "broken feather": (b"not really arrow" * 10, "bars.feather", 422, ["not a readable feather"]),
        "bad OHLC": (csv_bytes(good.assign(high=good["low"] * 0.5)), "candles.csv", 422, ["high"]),
    }


@pytest.mark.parametrize("case", list(_bad_frames()))
def test_bad_uploads_get_a_clear_one_line_message(c, case):
    data, name, status, needles = _bad_frames()[case]
    message = assert_one_line_error(upload(c, data, name), status, *needles)
    if status == 422 and case not in ("too few bars",):
        assert message.startswith(name), message  # names the user's file, never the temp path


def test_upload_too_large_by_content_length(c):
    small = client(make_app(settings=settings(max_upload_mb=0.01)))
    assert_one_line_error(upload(small, b"x" * 20_000), 413, "larger than", "0.01 MB")


def test_upload_too_large_while_streaming(c):
    """No Content-Length (chunked): the limit is enforced while the body streams in."""
    small = client(make_app(settings=settings(max_upload_mb=0.01)))
    chunks = (b"timestamp,open,high,low,close\n" + b"2024-01-01,1,1,1,1\n" * 300 for _ in range(10))
    assert_one_line_error(upload(small, chunks), 413, "larger than")


def test_multipart_upload_is_refused_with_a_hint(c):
    r = c.post("/api/datasets/upload", files={"file": ("a.csv", b"x")}, headers={"X-Filename": "a.csv"})
    assert_one_line_error(r, 415, "request body", "--data-binary")


def test_upload_needs_filename_header(c):
    assert_one_line_error(c.post("/api/datasets/upload", content=b"a,b\n1,2\n"), 400, "X-Filename")


def test_uploads_leave_no_temp_files(c):
    tmp = Path(tempfile.gettempdir())
    before = set(tmp.glob("kronos-web-*"))
    upload(c, csv_bytes(candles(60)), "../../../etc/evil.csv")
    upload(c, b"\x00\x01", "x.csv")
    assert set(tmp.glob("kronos-web-*")) - before <= {p for p in tmp.glob("kronos-web-tests-*")}


def test_traversal_in_filename_is_only_a_label(c):
    info = upload(c, csv_bytes(candles(60)), "../../../etc/evil.csv").json()
    assert info["name"] == "evil.csv"


def test_dataset_candles_and_locate(c, dataset_id):
    part = c.get(f"/api/datasets/{dataset_id}/candles?start=10&count=20").json()
    assert part["start"] == 10 and len(part["timestamps"]) == 20 and part["timestamps"][0] == "2024-01-01 10:00:00"
    assert c.get(f"/api/datasets/{dataset_id}/locate?time=2024-01-02T00:00").json() == {"index": 24}
    assert_one_line_error(c.get(f"/api/datasets/{dataset_id}/candles?start=999"), 422, "past the last bar")
    assert_one_line_error(c.get(f"/api/datasets/{dataset_id}/candles?count=0"), 422, "count")
    assert_one_line_error(c.get(f"/api/datasets/{dataset_id}/locate?time=soon"), 422, "not a date")
    assert_one_line_error(c.get("/api/datasets/abc123"), 404, "unknown dataset")


def test_stored_candles_as_a_dataset(c):
    store().upsert_candles("testex", "SOL/USDT", "4h", candles(80).set_axis(
        pd.date_range("2024-02-01", periods=80, freq="4h", name="timestamp")))
    series = c.get("/api/datasets/stored").json()["series"]
    assert {"source": "testex", "symbol": "SOL/USDT", "timeframe": "4h", "rows": 80,
            "start": "2024-02-01 00:00:00", "end": "2024-02-14 04:00:00"} in series
    info = c.post("/api/datasets/stored", json={"source": "testex", "symbol": "SOL/USDT", "timeframe": "4h"}).json()
    assert info["rows"] == 80 and info["interval"] == "4h" and info["source"] == "database"
    assert_one_line_error(c.post("/api/datasets/stored", json={"source": "testex", "symbol": "X/Y",
                                                              "timeframe": "4h"}), 404, "no stored candles")
    assert_one_line_error(c.post("/api/datasets/stored", json={"source": "testex"}), 422, "symbol")


def test_database_unavailable_is_a_one_line_503(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    app = make_app(settings=settings(db_url=f"sqlite:///{blocker}/sub/x.db"), store=None)
    assert_one_line_error(client(app).get("/api/backtests"), 503, "database unavailable")


# ----------------------------------------------------------------------------- forecasts
def forecast_body(ds, **overrides):
    body = {"dataset_id": ds, "model": MODEL_ID, "device": "cpu", "lookback": 64, "horizon": 16,
            "sample_count": 4, "temperature": 1.0, "top_p": 0.9, "top_k": 0, "seed": 7}
    body.update(overrides)
    return body


@pytest.fixture(scope="module")
def finished_job(c, dataset_id):
    r = c.post("/api/forecasts", json=forecast_body(dataset_id, start=200))
    assert r.status_code == 202, r.text
    job = wait_job(c, r.json()["id"])
    assert job["status"] == "done", job
    return job["id"]


def test_forecast_job_result(c, finished_job):
    job = c.get(f"/api/jobs/{finished_job}").json()
    assert job["progress"] == 1.0 and job["has_result"]
    r = c.get(f"/api/jobs/{finished_job}/result").json()
    assert len(r["history"]["timestamps"]) == 64 and r["history"]["timestamps"][0] == "2024-01-09 08:00:00"
    f = r["forecast"]
    assert len(f["timestamps"]) == 16 and f["timestamps"][0] == "2024-01-12 00:00:00"
    assert set(f["quantiles"]) == {"0.05", "0.25", "0.5", "0.75", "0.95"}
    lo, hi = np.array(f["quantiles"]["0.05"]["close"]), np.array(f["quantiles"]["0.95"]["close"])
    assert (lo <= hi).all() and all(0 <= p <= 1 for p in f["p_up"])
    assert len(r["actual"]["timestamps"]) == 16  # 300 bars: 200 + 64 + 16 fits
    m = r["metrics"]
    assert m["steps"] == 16 and m["mae"] > 0 and m["rmse"] >= m["mae"]
    assert 0 <= m["direction_hit_rate"] <= 1 and 0 <= m["coverage_90"] <= 1
    assert r["meta"]["device"] == "cpu" and r["meta"]["seed"] == 7 and r["meta"]["window_start"] == 200
    assert r["meta"]["model"] == "tiny-pair" and r["meta"]["model_id"].endswith(r["meta"]["model_id"][-16:])


def test_forecast_is_reproducible_with_its_seed(c, dataset_id, finished_job):
    again = wait_job(c, c.post("/api/forecasts", json=forecast_body(dataset_id, start=200)).json()["id"])
    a = c.get(f"/api/jobs/{finished_job}/result").json()["forecast"]
    b = c.get(f"/api/jobs/{again['id']}/result").json()["forecast"]
    assert a == b


def test_forecast_downloads(c, finished_job):
    r = c.get(f"/api/jobs/{finished_job}/result.json")
    assert r.status_code == 200 and "attachment" in r.headers["content-disposition"]
    assert r.headers["content-disposition"].endswith('.json"')
    assert json.loads(r.content)["meta"]["horizon"] == 16
    r = c.get(f"/api/jobs/{finished_job}/result.csv")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    table = pd.read_csv(io.StringIO(r.text))
    assert len(table) == 16 and {"timestamp", "mean_close", "close_q05", "close_q95", "p_up",
                                 "actual_close"} <= set(table.columns)
    assert table["actual_close"].notna().all()


def test_forecast_at_the_end_has_no_actuals(c, dataset_id):
    job = wait_job(c, c.post("/api/forecasts", json=forecast_body(dataset_id, start=236, horizon=4)).json()["id"])
    r = c.get(f"/api/jobs/{job['id']}/result").json()
    assert r["actual"]["timestamps"] == [] and r["metrics"] == {"steps": 0}
    table = pd.read_csv(io.StringIO(c.get(f"/api/jobs/{job['id']}/result.csv").text))
    assert table["actual_close"].isna().all()


def test_default_window_leaves_room_for_actuals_and_start_time_works(c, dataset_id):
    job = wait_job(c, c.post("/api/forecasts", json=forecast_body(dataset_id, horizon=8)).json()["id"])
    meta = c.get(f"/api/jobs/{job['id']}/result").json()["meta"]
    assert meta["window_start"] == 300 - 64 - 8
    job = wait_job(c, c.post("/api/forecasts", json=forecast_body(
        dataset_id, horizon=2, start_time="2024-01-02T00:00:00Z")).json()["id"])
    assert c.get(f"/api/jobs/{job['id']}/result").json()["meta"]["window_start_time"] == "2024-01-02 00:00:00"


@pytest.mark.parametrize("overrides, status, needles", [
    ({"model": "no-such-model"}, 422, ["unknown model"]),
    ({"model": "../../../../etc"}, 422, ["unknown model"]),
    ({"model": str(Path(tempfile.gettempdir()))}, 422, ["unknown model"]),
    ({"device": "tpu"}, 422, ["device 'tpu'"]),
    ({"lookback": 129}, 422, ["lookback 129 exceeds", "128"]),
    ({"horizon": 200}, 422, ["horizon 200 exceeds"]),
    ({"start": 290}, 422, ["runs past the end", "236"]),
    ({"start_time": "yesterday-ish"}, 422, ["not a date"]),
    ({"top_p": 2}, 422, ["top_p"]),
    ({"temperature": 0}, 422, ["temperature"]),
    ({"sample_count": 0}, 422, ["sample_count"]),
    ({"lookback": "many"}, 422, ["lookback"]),
    ({"surprise": 1}, 422, ["surprise"]),
    ({"dataset_id": "0123abcd"}, 404, ["unknown dataset"]),
])
def test_forecast_request_validation(c, dataset_id, overrides, status, needles):
    assert_one_line_error(c.post("/api/forecasts", json=forecast_body(dataset_id, **overrides)), status, *needles)


def test_forecast_body_must_be_json(c):
    assert_one_line_error(c.post("/api/forecasts", content=b"dataset_id=1", headers={
        "content-type": "application/x-www-form-urlencoded"}), 422, "invalid request")


def test_hub_model_download_failure_is_reported_clearly(dataset_id):
    from kronos.hub import CheckpointError

    def offline(name, device):
        raise CheckpointError("config.json of 'NeoQuasar/Kronos-small' could not be downloaded "
                              "(LocalEntryNotFoundError: connection error)\nsecond line")

    c2 = client(make_app(loader=offline))
    ds = upload(c2, csv_bytes(candles(600))).json()["id"]
    job = wait_job(c2, c2.post("/api/forecasts", json=forecast_body(ds, model="kronos-small", lookback=400,
                                                                     horizon=120)).json()["id"])
    assert job["status"] == "failed"
    assert "kronos-small could not be loaded from the Hugging Face hub" in job["error"]
    assert "\n" not in job["error"] and "Traceback" not in job["error"]
    assert_one_line_error(c2.get(f"/api/jobs/{job['id']}/result"), 409, "failed")


def test_unexpected_job_error_is_one_line(dataset_id):
    def broken(name, device):
        class M:
            name, model_id, max_context, trained_window = "x", "x@0", 512, None

            class predictor:  # noqa: N801
                device = "cpu"

                @staticmethod
                def forecast_batch(*a, **k):
                    raise RuntimeError("boom\nwith a second line")
        return M()

    c2 = client(make_app(loader=broken))
    ds = upload(c2, csv_bytes(candles(300))).json()["id"]
    job = wait_job(c2, c2.post("/api/forecasts", json=forecast_body(ds)).json()["id"])
    assert job["status"] == "failed" and job["error"] == "forecast failed: boom with a second line"


def test_jobs_unknown_and_not_finished(c, dataset_id):
    assert_one_line_error(c.get("/api/jobs/abc"), 404, "unknown job")
    gate = threading.Event()

    def slow(name, device):
        gate.wait(10)
        raise ValueError("stopped")

    c2 = client(make_app(loader=slow))
    ds = upload(c2, csv_bytes(candles(300))).json()["id"]
    job = c2.post("/api/forecasts", json=forecast_body(ds)).json()
    assert job["status"] in ("queued", "running")
    assert_one_line_error(c2.get(f"/api/jobs/{job['id']}/result.csv"), 409, "still")
    gate.set()
    assert wait_job(c2, job["id"])["status"] == "failed"


def test_unhandled_errors_hide_details(c):
    class Broken:
        def list_runs(self, *a, **k):
            raise RuntimeError("secret internals")

    app = make_app(store=Broken())
    from fastapi.testclient import TestClient

    r = TestClient(app, base_url="http://127.0.0.1", raise_server_exceptions=False).get("/api/backtests")
    message = assert_one_line_error(r, 500, "internal error")
    assert "secret" not in message


def test_error_metrics():
    from kronos_trader.web.services.forecasting import error_metrics

    actual = np.array([101.0, 99.0, 104.0])
    mean = np.array([102.0, 101.0, 103.0])
    m = error_metrics(actual, mean, mean - 2, mean + 2, mean - 0.5, mean + 0.5, last_close=100.0)
    assert m["steps"] == 3 and m["mae"] == pytest.approx(4 / 3) and m["rmse"] == pytest.approx(np.sqrt(6 / 3))
    assert m["direction_hit_rate"] == pytest.approx(2 / 3)  # step 2: forecast up, actual down
    assert m["coverage_90"] == pytest.approx(1.0) and m["coverage_50"] == pytest.approx(0.0)


def test_fx_weekends_are_closures_not_gaps(c):
    """Issue 25 (web): FX weekends were shown as 'gaps 42 (2063 missing bars)'."""
    index = pd.date_range("2024-01-01", periods=24 * 7 * 4, freq="1h", name="timestamp")
    index = index[index.day_of_week < 5]
    frame = candles(len(index))
    frame.index = index
    info = upload(c, csv_bytes(frame)).json()
    assert info["gaps"] == 0 and info["missing_bars"] == 0 and info["closures"] == 3
