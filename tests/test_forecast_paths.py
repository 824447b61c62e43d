"""One forecast path: the same window through every entry point gives the same numbers, and
degenerate input (1e300, a flat series, a lookback beyond the context) never gives NaN,
exit 0 or HTTP 500."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from kronos_trader.data import generate_market, save_candles
from kronos_trader.forecasting.service import ForecastService
from kronos_trader.forecasting.values import WindowRequest

LOOKBACK, HORIZON, SAMPLES = 128, 6, 4  # 128 hours: the window has seen a weekend


def fx_candles(n_hours: int = 24 * 7 * 4, seed: int = 5) -> pd.DataFrame:
    """Hourly FX-like candles (EUR/USD level), closed from Friday 22:00 to Sunday 22:00 UTC."""
    frame = generate_market(n_hours, "1h", start="2024-01-07 22:00", seed=seed, start_price=1.08,
                            hourly_vol=0.0008)
    wd, hr = frame.index.day_of_week, frame.index.hour
    closed = (wd == 5) | ((wd == 4) & (hr >= 22)) | ((wd == 6) & (hr < 22))
    return frame[~closed]


@pytest.fixture
def setup(tmp_path, tiny_model_dir):
    raw = {"model": {"name": tiny_model_dir, "device": "cpu"},
           "forecast": {"lookback": LOOKBACK, "horizon": HORIZON, "sample_count": SAMPLES, "seed": 11},
           "database": {"url": f"sqlite:///{tmp_path / 'kt.db'}"},
           "backtest": {"report_dir": str(tmp_path / "reports")},
           "web": {"model_dirs": [tiny_model_dir]}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(raw))
    from kronos_trader.config import load_settings

    return tmp_path, load_settings(tmp_path / "config.yaml")


def _web_forecast(settings, path, start, **body):
    from fastapi.testclient import TestClient

    from kronos_trader.web import create_app

    client = TestClient(create_app(settings), base_url="http://127.0.0.1")
    up = client.post("/api/datasets/upload", content=path.read_bytes(), headers={"X-Filename": path.name})
    assert up.status_code == 200, up.text
    submitted = client.post("/api/forecasts", json={"dataset_id": up.json()["id"], "model": "local:0",
                                                    "device": "cpu", "start": start, **body})
    assert submitted.status_code == 202, submitted.text
    import time

    for _ in range(600):
        job = client.get(f"/api/jobs/{submitted.json()['id']}").json()
        if job["status"] in ("done", "failed"):
            break
        time.sleep(0.1)
    return client, job


def test_same_window_same_numbers_through_every_entry_point(setup):
    tmp_path, settings = setup
    candles = fx_candles()
    friday = candles.index[candles.index.day_of_week == 4]
    p = int(candles.index.get_loc(friday[friday.hour == 18][-2]))  # Friday 18:00: the weekend is ahead
    path = tmp_path / "EURUSD-1h.csv"
    save_candles(candles, path)

    # 1. the Python service
    service = ForecastService.from_settings(settings, progress=False)
    ref = service.forecast_at(candles, [p], "EUR/USD", "1h")[p]
    assert list(ref.stamps) == list(candles.index[p + 1:p + 1 + HORIZON])  # over the weekend, as the data
    assert ref.stamps[-1] - ref.stamps[0] > pd.Timedelta(days=2)

    # 2. the CLI `forecast` on the file that ends with this window
    from kronos_trader.cli import app

    head = tmp_path / "EURUSD-1h-head.csv"
    save_candles(candles.iloc[:p + 1], head)
    result = CliRunner().invoke(app, ["forecast", "--config", str(tmp_path / "config.yaml"), "--data", str(head),
                                      "--symbol", "EUR/USD", "--timeframe", "1h", "--out", str(tmp_path / "fc")])
    assert result.exit_code == 0, result.output
    cli = pd.read_csv(tmp_path / "fc" / "forecast.csv", index_col="timestamp", parse_dates=True)
    assert list(cli.index) == list(ref.stamps)
    np.testing.assert_allclose(cli["mean"], ref.mean[:, 3], rtol=1e-12)
    np.testing.assert_allclose(cli["q05"], ref.quantiles[0.05], rtol=1e-12)
    np.testing.assert_allclose(cli["p_up"], ref.p_up, rtol=1e-12)
    assert "EUR/USD 1h" in result.output and "BTC" not in result.output
    assert f"{candles['close'].iloc[p]:.5f}"[:4] in result.output  # FX prices keep their digits

    # 3. the web workbench API (defaults from config: lookback and horizon are not sent)
    client, job = _web_forecast(settings, path, p - LOOKBACK + 1, sample_count=SAMPLES, seed=11)
    assert job["status"] == "done", job
    web = client.get(f"/api/jobs/{job['id']}/result").json()
    assert web["meta"]["lookback"] == LOOKBACK and web["meta"]["horizon"] == HORIZON
    assert web["forecast"]["timestamps"] == [t.strftime("%Y-%m-%d %H:%M:%S") for t in ref.stamps]
    assert web["actual"]["timestamps"] == web["forecast"]["timestamps"] and web["meta"]["stamps_aligned"] == HORIZON
    np.testing.assert_allclose(web["forecast"]["mean"]["close"], ref.mean[:, 3], rtol=1e-9)
    np.testing.assert_allclose(web["forecast"]["quantiles"]["0.95"]["close"], ref.quantiles[0.95], rtol=1e-9)
    np.testing.assert_allclose(web["forecast"]["p_up"], ref.p_up, atol=1e-6)

    # 4. `evaluate`'s walk-forward (one origin: this window)
    from kronos_trader.evaluation import run_walk_forward

    holdout = HORIZON / len(candles[:p + 1 + HORIZON])
    evaluation = ForecastService.from_settings(settings, progress=False, calibration="none")
    wf = run_walk_forward(evaluation, candles.iloc[:p + 1 + HORIZON], holdout=holdout, stride=1000)
    assert list(wf.origins) == [p] and wf.aligned == 1.0
    np.testing.assert_array_equal(wf.paths[0], ref.close_paths)

    # 5. the backtest
    from kronos_trader.backtest.runner import run_backtest

    backtest = run_backtest(settings, candles.iloc[:p + 1 + HORIZON], "EUR/USD", "1h", None, progress=False)
    np.testing.assert_array_equal(backtest.forecasts[p].close_paths, ref.close_paths)
    np.testing.assert_array_equal(backtest.forecasts[p].mean, ref.mean)

    # 6. the live runner's call: the window it fetched, the interval from the timeframe
    live = ForecastService.from_settings(settings, progress=False)
    frame = candles.iloc[p - LOOKBACK + 1:p + 1]
    got = live.forecast_many([WindowRequest(("EUR/USD", "1h"), frame, LOOKBACK - 1, "EUR/USD", "1h",
                                            pd.Timedelta("1h"))])[("EUR/USD", "1h")]
    np.testing.assert_array_equal(got.close_paths, ref.close_paths)
    assert list(got.stamps) == list(ref.stamps)


def test_lookback_beyond_the_context_is_an_error_naming_both(setup):
    tmp_path, settings = setup
    from kronos_trader.cli import app

    result = CliRunner().invoke(app, ["forecast", "--config", str(tmp_path / "config.yaml"), "--lookback", "5000",
                                      "--out", str(tmp_path / "fc")])
    assert result.exit_code == 1
    assert "lookback 5000 exceeds the model's context of 128 bars" in result.output


def test_far_from_the_training_window_warns():
    from kronos_trader.config import ForecastSettings
    from kronos_trader.forecasting.models import load_model
    from kronos_trader.forecasting.service import ForecastWindowWarning

    model = load_model("kronos-nano", "cpu")
    assert model.trained_window == (256, 32)  # from the bundled model's card
    with pytest.warns(ForecastWindowWarning, match="lookback 400 is far from the 256 bars"):
        service = ForecastService(model, ForecastSettings(lookback=400, horizon=120), progress=False)
    assert len(service.warnings) == 2
    assert ForecastService(model, ForecastSettings(), progress=False).warnings == []  # config's 256 + 24


def test_the_window_rule_is_one_helper_for_the_predictor_and_the_service():
    """The service's per-configuration warnings and the predictor's per-call ones are the
    same rule (`kronos.hub.window_warnings`); the trader's predictor keeps its card's window
    but leaves the warning to the service (`warn_window=False`), not by losing the window."""
    import warnings

    from kronos.hub import window_warnings
    from kronos.predictor import TrainedWindowWarning
    from kronos_trader.config import ForecastSettings
    from kronos_trader.forecasting.models import load_model
    from kronos_trader.forecasting.service import window_warnings as service_warnings

    model = load_model("kronos-nano", "cpu")
    assert model.predictor.trained_window == model.trained_window == (256, 32)
    assert model.predictor.warn_window is False
    settings = ForecastSettings(lookback=400, horizon=120)
    assert service_warnings(model, settings) == window_warnings((256, 32), 400, 120, model.name)
    assert window_warnings(None, 400, 120) == []
    assert window_warnings((256, 32), 256, 64) == []
    from kronos_trader.data import SAMPLE_DATA_PATH, load_candles

    candles = load_candles(SAMPLE_DATA_PATH)
    with warnings.catch_warnings():
        warnings.simplefilter("error", TrainedWindowWarning)
        model.predictor.forecast(candles.iloc[-64:], pred_len=2, sample_count=1, seed=1, verbose=False)


def test_1e300_is_a_one_line_error_in_the_cli_and_a_422_in_the_web(setup):
    tmp_path, settings = setup
    candles = fx_candles(24 * 7 * 2)
    candles.iloc[-5, :4] = 1e300
    path = tmp_path / "huge.csv"
    save_candles(candles, path)
    from kronos_trader.cli import app

    result = CliRunner().invoke(app, ["forecast", "--config", str(tmp_path / "config.yaml"), "--data", str(path),
                                      "--out", str(tmp_path / "fc")])
    assert result.exit_code == 1 and "overflows the model's float32 normalisation" in result.output
    assert len(result.output.strip().splitlines()) == 1
    client, job = _web_forecast(settings, path, len(candles) - LOOKBACK)
    assert job["status"] == "failed" and "overflows" in job["error"]
    r = client.get(f"/api/jobs/{job['id']}/result")
    assert r.status_code == 409 and "overflows" in r.json()["error"]


def flat_candles(n: int = 300) -> pd.DataFrame:
    index = pd.date_range("2024-01-01", periods=n, freq="h", name="timestamp")
    return pd.DataFrame({"open": 1.5, "high": 1.5, "low": 1.5, "close": 1.5, "volume": 10.0}, index=index)


def test_flat_series_gets_the_neutral_forecast_and_no_trades(setup):
    tmp_path, settings = setup
    candles = flat_candles()
    service = ForecastService.from_settings(settings, progress=False)
    f = service.forecast_latest(candles, "FLAT", "1h")
    assert (f.p_up == 0.5).all() and f.expected_return() == 0.0
    assert all((v == 1.5).all() for v in f.quantiles.values()) and np.isfinite(f.mean).all()
    from kronos_trader.backtest.runner import run_backtest

    result = run_backtest(settings, candles, "FLAT", "1h", None, progress=False)
    assert result.trades.empty and result.metrics["strategy"]["total_return"] == 0.0
    save_candles(candles, tmp_path / "flat.csv")
    client, job = _web_forecast(settings, tmp_path / "flat.csv", 0)
    assert job["status"] == "done", job
    web = client.get(f"/api/jobs/{job['id']}/result")
    assert web.status_code == 200 and web.json()["forecast"]["p_up"] == [0.5] * HORIZON


def test_ties_do_not_read_as_up():
    from kronos_trader.forecasting.values import prob_up

    paths = np.array([[1.0, 1.0], [1.0, 2.0], [1.0, 0.5], [1.0, 1.0]])
    np.testing.assert_allclose(prob_up(paths, 1.0), [0.5, 0.5])


def test_data_file_is_labelled_by_its_name_never_btc(setup):
    tmp_path, settings = setup
    candles = fx_candles(24 * 7 * 2)
    path = tmp_path / "prices.csv"
    save_candles(candles, path)
    from kronos_trader.backtest.report import default_report_dir
    from kronos_trader.backtest.runner import backtest_names, run_backtest

    with_file = settings.model_copy(update={"data": settings.data.model_copy(update={"path": path})})
    assert backtest_names(with_file, candles) == ("prices", "1h")
    assert backtest_names(with_file, candles, "EUR/USD") == ("EUR/USD", "1h")
    result = run_backtest(with_file, candles, *backtest_names(with_file, candles), None, progress=False)
    assert default_report_dir(tmp_path, result).name.startswith("prices-1h")
    assert result.journal.signals and {s.symbol for s in result.journal.signals} == {"prices"}
    assert result.trades.empty or set(result.trades["symbol"]) == {"prices"}  # trades.csv
