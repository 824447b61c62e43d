"""Kronos columns inside freqtrade: the helper in-process, then freqtrade's own commands
(backtesting, lookahead-analysis, recursive-analysis, trade --dry-run) on candle files in
freqtrade's layout, against the local fake exchange, with a tiny random-weight model."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("freqtrade")

from fake_exchange.candles import make_candles  # noqa: E402
from fake_exchange.server import FakeBinance  # noqa: E402
from freqtrade_setup import FREQTRADE, freqtrade, make_user_dir, write_candles  # noqa: E402
from kronos_trader.forecasting.values import WindowForecast  # noqa: E402
from kronos_trader.freqtrade import CALIBRATED, COLUMNS, GATE_COLUMN, KronosColumns, KronosFreqtradeError  # noqa: E402
from kronos_trader.store import open_store  # noqa: E402

KRONOS = {"lookback": 32, "horizon": 4, "sample_count": 4, "device": "cpu"}


def frame_of(candles: pd.DataFrame) -> pd.DataFrame:
    """Candles as freqtrade hands them to populate_indicators (UTC `date` column)."""
    out = candles[["open", "high", "low", "close", "volume"]].reset_index(drop=True)
    out.insert(0, "date", pd.DatetimeIndex(candles.index).tz_localize("UTC"))
    return out


def config_for(tmp_path: Path, model: str, runmode: str = "backtest", timeframe: str = "1h", startup: int = 31,
               **kronos) -> dict:
    return {"timeframe": timeframe, "runmode": runmode, "startup_candle_count": startup,
            "user_data_dir": str(tmp_path), "kronos": {"model": model, **KRONOS, **kronos}}


# --- the helper, in-process ----------------------------------------------------------------
def test_rows_use_only_their_lookback(tiny_model_dir, tmp_path):
    candles = make_candles("2024-01-01", 90, "1h", seed=11, with_amount=False)
    full = KronosColumns(config_for(tmp_path, tiny_model_dir)).add(frame_of(candles), {"pair": "BTC/USDT"})
    assert full[list(COLUMNS)].iloc[:31].isna().all().all()  # no full lookback yet
    assert full[list(COLUMNS)].iloc[31:].notna().all().all()
    assert full["kronos_lower"].le(full["kronos_upper"]).iloc[31:].all()
    for t in (31, 50, 89):  # the same row from only its own 32 candles, and with later candles changed
        alone = frame_of(candles.iloc[t - 31:t + 1])
        later = candles.copy()
        later.iloc[t + 1:, :4] *= 1.5
        got = KronosColumns(config_for(tmp_path, tiny_model_dir)).add(alone, {"pair": "BTC/USDT"})
        moved = KronosColumns(config_for(tmp_path, tiny_model_dir)).add(frame_of(later), {"pair": "BTC/USDT"})
        for name in COLUMNS:
            assert got[name].iloc[-1] == full[name].iloc[t]
            assert moved[name].iloc[t] == full[name].iloc[t]


def test_dry_run_forecasts_only_the_newest_candle_once(tiny_model_dir, tmp_path):
    candles = make_candles("2024-01-01", 80, "5min", seed=12, with_amount=False)
    backtest = KronosColumns(config_for(tmp_path, tiny_model_dir, timeframe="5m", db=f"sqlite:///{tmp_path}/bt.db"))
    expected = backtest.add(frame_of(candles), {"pair": "BTC/USDT"})
    live = KronosColumns(config_for(tmp_path, tiny_model_dir, runmode="dry_run", timeframe="5m",
                                    db=f"sqlite:///{tmp_path}/live.db"))
    before = live.raw.computed
    for end in (60, 61, 61, 62):  # a candle seen twice is not forecast again
        got = live.add(frame_of(candles.iloc[:end]), {"pair": "BTC/USDT"})
        for name in COLUMNS:
            assert got[name].iloc[-1] == expected[name].iloc[end - 1]
    assert live.raw.computed - before == 3
    # the rows of earlier candles keep the values they got as the newest; before the bot ran: NaN
    assert got["kronos_p_up"].iloc[:59].isna().all()
    for name in COLUMNS:
        assert got[name].iloc[59:].equals(expected[name].iloc[59:62])


def test_calibrated_and_gate_columns_depend_on_a_fixed_history(tiny_model_dir, tmp_path):
    options = dict(calibration="conformal", calibration_window=10, gate={"window": 6, "vol_window": 3})
    config = config_for(tmp_path, tiny_model_dir, startup=200, **options)
    columns = KronosColumns(config)
    need = columns.required_startup
    assert need == 31 + 10 + (6 + 4 + 3 + 2)
    candles = make_candles("2024-01-01", 160, "1h", seed=13, with_amount=False)
    full = columns.add(frame_of(candles), {"pair": "ETH/USDT"})
    assert full[GATE_COLUMN].iloc[:need].isna().all() and full[GATE_COLUMN].iloc[need:].isin([0.0, 1.0]).all()
    assert full[list(CALIBRATED)].iloc[:41].isna().all().all() and full[list(CALIBRATED)].iloc[41:].notna().all().all()
    live = KronosColumns({**config, "runmode": "dry_run"})
    for t in (need, 120, 159):  # only the `need` candles before a row decide its values, backtest or live
        short = columns.add(frame_of(candles.iloc[t - need:t + 1]), {"pair": "ETH/USDT"})
        newest = live.add(frame_of(candles.iloc[:t + 1]), {"pair": "ETH/USDT"})
        for name in (*COLUMNS, *CALIBRATED, GATE_COLUMN):
            assert short[name].iloc[-1] == full[name].iloc[t], name
            assert newest[name].iloc[-1] == full[name].iloc[t], name


def test_pairs_and_timeframes_map_to_the_store(tiny_model_dir, tmp_path):
    db = f"sqlite:///{tmp_path}/map.db"
    for pair, timeframe, freq in (("BTC/USDT", "5m", "5min"), ("BTC/USDT:USDT", "1h", "1h")):
        candles = make_candles("2024-01-01", 40, freq, seed=14, with_amount=False)
        KronosColumns(config_for(tmp_path, tiny_model_dir, timeframe=timeframe, db=db)).add(
            frame_of(candles), {"pair": pair})
        rows = open_store(db).load_forecasts(pair, timeframe)
        assert len(rows) == 9
        # the forecast made at a candle's close is stamped with that close (open + timeframe)
        assert pd.Timestamp(rows[-1].window_end) == candles.index[-1] + pd.Timedelta(freq)


def test_freqtrade_files_read_as_they_are(tmp_path):
    from kronos_trader.data import load_candles

    candles = make_candles("2024-01-01", 30, "1h", seed=15, with_amount=False)
    path = write_candles(tmp_path, "BTC/USDT:USDT", "1h", candles)
    assert path.name == "BTC_USDT_USDT-1h-futures.feather"
    loaded = load_candles(path)
    assert (loaded.index == candles.index).all()
    assert np.array_equal(loaded[["open", "high", "low", "close", "volume"]].to_numpy(),
                          candles[["open", "high", "low", "close", "volume"]].to_numpy())


def test_freqtrade_json_data_and_pickled_helper_give_the_same_columns(tiny_model_dir, tmp_path):
    """Candles freqtrade loads from its JSON files (its own loader) give the values its
    feather files give; the helper pickles (hyperopt workers) and rebuilds its service."""
    import pickle

    from freqtrade.configuration import TimeRange
    from freqtrade.data.history import load_pair_history

    candles = make_candles("2024-01-01", 60, "1h", seed=16, with_amount=False)
    columns = KronosColumns(config_for(tmp_path, tiny_model_dir))
    loaded = {}
    for fmt in ("feather", "json"):
        write_candles(tmp_path / fmt, "BTC/USDT", "1h", candles, fmt=fmt)
        frame = load_pair_history(pair="BTC/USDT", timeframe="1h", datadir=tmp_path / fmt, data_format=fmt,
                                  timerange=TimeRange(None, None, 0, 0))
        assert len(frame) == 60
        loaded[fmt] = columns.add(frame, {"pair": "BTC/USDT"})
    copy = pickle.loads(pickle.dumps(columns))
    again = copy.add(frame_of(candles), {"pair": "BTC/USDT"})
    for name in COLUMNS:
        assert loaded["json"][name].equals(loaded["feather"][name]) and again[name].equals(loaded["feather"][name])
    assert loaded["json"]["kronos_p_up"].notna().sum() == 29


def test_ready_strategy_is_copied_into_user_data(tmp_path, capsys):
    from kronos_trader.freqtrade.__main__ import main

    assert main([str(tmp_path)]) == 0
    assert (tmp_path / "kronos_directional.py").read_text().count("class KronosDirectional(IStrategy)") == 1
    assert main([str(tmp_path)]) == 1  # never overwrites a user's copy
    assert main([str(tmp_path / "missing")]) == 2
    assert "freqtrade create-userdir" in capsys.readouterr().err


@pytest.mark.parametrize("change, message", [
    ({"timeframe": "1M"}, "Kronos cannot forecast timeframe '1M'"),
    ({"startup_candle_count": 20}, "startup_candle_count is 20, too few candles for Kronos (32 candles of lookback): "
                                   "set startup_candle_count = 31 in the strategy"),
    ({"kronos": {"model": "kronos-nonesuch"}}, "Kronos model 'kronos-nonesuch': unknown model"),
    ({"kronos": {"lookback": 4}}, "Kronos option lookback: Input should be greater than or equal to 8"),
    ({"kronos": {"lookbak": 64}}, "unknown Kronos option(s) lookbak"),
])
def test_bad_settings_are_one_line_errors(tiny_model_dir, tmp_path, change, message):
    config = config_for(tmp_path, tiny_model_dir)
    for key, value in change.items():
        config[key] = {**config[key], **value} if key == "kronos" else value
    with pytest.raises(KronosFreqtradeError) as info:
        KronosColumns(config)
    assert message in str(info.value) and "\n" not in str(info.value)
    from freqtrade.exceptions import OperationalException

    assert isinstance(info.value, OperationalException)  # freqtrade prints it as one line and stops


def test_missing_freqtrade_is_a_one_line_error(tiny_model_dir, tmp_path):
    code = ("import sys; sys.modules['freqtrade'] = None\n"
            "from kronos_trader.freqtrade import KronosColumns\n"
            f"KronosColumns({config_for(tmp_path, tiny_model_dir)!r})\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "which is not installed here: pip install 'kronos-trader[freqtrade]'" in result.stderr.splitlines()[-1]


def test_parity_with_kronos_indicator_and_live_runner(tiny_model_dir, tmp_path):
    """The same candles and settings give the same P(up) in freqtrade, Backtrader and the
    live runner (each with its own store, so each computes its own forecasts)."""
    import backtrader as bt

    from fake_exchange.helpers import fast_client
    from kronos_trader.backtest.indicator import KronosIndicator
    from kronos_trader.forecasting.models import load_model
    from kronos_trader.forecasting.service import ForecastService
    from kronos_trader.live import LiveRunner
    from test_live_support import LOOKBACK, RUN_ID, cycle_times, make_server, series, settings_for

    server = make_server()
    try:
        candles = series(server)
        settings = settings_for(tiny_model_dir, server.url, f"sqlite:///{tmp_path / 'live.db'}")
        store = open_store(settings.database.url)
        runner = LiveRunner(settings, store=store, client=fast_client(server, keys=False), run_id=RUN_ID,
                            service=ForecastService(load_model(tiny_model_dir, "cpu"), settings.forecast, store,
                                                    False), backoff=0.001, retry_delay=0.0).start()
        for now in cycle_times(candles):
            server.set_now(now)
            runner.run_cycle()
    finally:
        server.stop()
    step = settings.forecast.horizon
    live = {pd.Timestamp(r.window_end): WindowForecast.from_payload(r.window_end, r.payload).prob_up(step)
            for r in store.load_forecasts("BTC/USDT", "1m")}
    assert len(live) == len(candles) - LOOKBACK + 1

    f = settings.forecast
    options = {"lookback": f.lookback, "horizon": f.horizon, "sample_count": f.sample_count,
               "batch_windows": f.batch_windows, "db": f"sqlite:///{tmp_path / 'ft.db'}"}
    config = {**config_for(tmp_path, tiny_model_dir, timeframe="1m", startup=LOOKBACK - 1), "kronos": {
        "model": tiny_model_dir, "device": "cpu", **options}}
    columns = KronosColumns(config).add(frame_of(candles), {"pair": "BTC/USDT"})
    ours = dict(zip(candles.index + pd.Timedelta(minutes=1), columns["kronos_p_up"]))

    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(bt.feeds.PandasData(dataname=candles[["open", "high", "low", "close", "volume"]]), name="BTC")
    seen = {}

    class Record(bt.Strategy):
        def __init__(self):
            self.k = KronosIndicator(self.data, model=tiny_model_dir, device="cpu", lookback=f.lookback,
                                     horizon=f.horizon, sample_count=f.sample_count,
                                     db=f"sqlite:///{tmp_path / 'bt.db'}")

        def next(self):
            seen[bt.num2date(self.data.datetime[0]) + pd.Timedelta(minutes=1)] = self.k.p_up[0]

    cerebro.addstrategy(Record)
    cerebro.run()
    assert len(seen) == len(live)
    for end, p_up in live.items():
        assert ours[end] == p_up == seen[end], end


# --- freqtrade's own commands --------------------------------------------------------------
def _kronos_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if "kronos_trader.freqtrade" in line]


@pytest.fixture(scope="module")
def hourly(tiny_model_dir, tmp_path_factory):
    """A user directory with 600 hourly BTC/USDT candles and the exchange they come from."""
    root = tmp_path_factory.mktemp("freqtrade")
    candles = make_candles("2024-01-01", 600, "1h", seed=3, price=42_000.0, with_amount=False)
    server = FakeBinance(api_key="k", api_secret="s").start()
    server.add_market("BTCUSDT", "BTC", "USDT", candles=candles, interval="1h", tick_size="0.01",
                      step_size="0.00001", min_qty="0.00001", min_notional="5.00")
    try:
        config = make_user_dir(root, server.url, {"model": tiny_model_dir, **KRONOS}, startup=31)
        write_candles(root / "user_data" / "data" / "binance", "BTC/USDT", "1h", candles)
        yield {"config": config, "server": server, "root": root, "candles": candles}
    finally:
        server.stop()


def _check_ran(result: subprocess.CompletedProcess) -> str:
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "Traceback" not in output and " - ERROR - " not in output, output[-3000:]
    return output


@pytest.mark.slow
def test_backtesting_trades_and_reuses_stored_forecasts(hourly):
    first = _check_ran(freqtrade(["backtesting", "--timerange", "20240103-20240125"], hourly["config"]))
    assert "KronosDirectional" in first
    done = [line for line in _kronos_lines(first) if "windows computed by the model" in line]
    assert len(done) == 1 and " 529 forecast rows, 529 windows computed by the model" in done[0]
    from freqtrade.data.btanalysis import load_backtest_data

    trades = load_backtest_data(hourly["root"] / "user_data" / "backtest_results")
    assert len(trades) >= 3
    db = open_store(f"sqlite:///{hourly['root'] / 'user_data' / 'kronos_forecasts.sqlite'}")
    stored = len(db.load_forecasts("BTC/USDT", "1h"))
    assert stored == 529

    again = _check_ran(freqtrade(["backtesting", "--timerange", "20240103-20240125", "--cache", "none"],
                                 hourly["config"]))  # freqtrade's own result cache would skip the strategy
    done = [line for line in _kronos_lines(again) if "windows computed by the model" in line]
    assert len(done) == 1 and ", 0 windows computed by the model" in done[0]
    assert len(db.load_forecasts("BTC/USDT", "1h")) == stored
    assert len(load_backtest_data(hourly["root"] / "user_data" / "backtest_results")) == len(trades)


@pytest.mark.slow
def test_hyperopt_epochs_share_one_set_of_forecasts(hourly):
    output = _check_ran(freqtrade(["hyperopt", "--timerange", "20240103-20240125", "--epochs", "4", "--spaces", "buy",
                                   "sell", "-j", "1", "--hyperopt-loss", "SharpeHyperOptLoss",
                                   "--disable-param-export"], hourly["config"]))
    assert "4 epochs saved to" in output
    done = [line for line in _kronos_lines(output) if "windows computed by the model" in line]
    assert len(done) == 1 and " 529 forecast rows" in done[0]  # once, before the epochs


@pytest.mark.slow
def test_lookahead_analysis_finds_no_bias(hourly):
    output = _check_ran(freqtrade(["lookahead-analysis", "--timerange", "20240103-20240125",
                                   "--minimum-trade-amount", "5", "--targeted-trade-amount", "10"],
                                  hourly["config"]))
    assert "KronosDirectional: no bias detected" in output
    assert "bias detected" not in output.replace("no bias detected", "")


@pytest.mark.slow
def test_recursive_analysis_finds_no_variance(tiny_model_dir, hourly, tmp_path):
    """With calibration and the gate too: every column depends on a fixed number of candles."""
    kronos = {"model": tiny_model_dir, **KRONOS, "calibration": "conformal", "calibration_window": 10,
              "gate": {"window": 6, "vol_window": 3}, "db": f"sqlite:///{tmp_path / 'rec.db'}"}
    config = make_user_dir(tmp_path, hourly["server"].url, kronos, startup=56)
    write_candles(tmp_path / "user_data" / "data" / "binance", "BTC/USDT", "1h", hourly["candles"])
    output = _check_ran(freqtrade(["recursive-analysis", "--timerange", "20240110-20240120",
                                   "--startup-candle", "60", "100", "200"], config))
    assert "No variance on indicator(s) found due to recursive formula." in output
    assert "No lookahead bias on indicators found." in output


@pytest.mark.slow
def test_too_few_startup_candles_stop_freqtrade_with_one_line(hourly):
    config = json.loads(hourly["config"].read_text())
    config["startup_candle_count"] = 10
    path = hourly["root"] / "short.json"
    path.write_text(json.dumps(config))
    result = freqtrade(["backtesting", "--timerange", "20240103-20240105"], path)
    output = result.stdout + result.stderr
    assert result.returncode == 2 and "Traceback" not in output
    errors = [line for line in output.splitlines() if " - ERROR - " in line]
    assert len(errors) == 1 and errors[0].endswith("set startup_candle_count = 31 in the strategy")


@pytest.mark.slow
def test_dry_run_decides_on_the_backtest_forecasts(tiny_model_dir, tmp_path):
    """`freqtrade trade --dry-run` against the fake exchange on the wall clock (1m candles):
    each closed candle is forecast once, and the same candles backtested afterwards (a fresh
    store: forecasts recomputed) give equal forecasts and the same entries."""
    now = pd.Timestamp.now(tz="UTC").tz_localize(None).floor("1min")
    candles = make_candles(now - pd.Timedelta(minutes=200), 210, "1min", seed=5, price=42_000.0, with_amount=False)
    server = FakeBinance(api_key="k", api_secret="s").start()
    server.add_market("BTCUSDT", "BTC", "USDT", candles=candles, interval="1m", tick_size="0.01",
                      step_size="0.00001", min_qty="0.00001", min_notional="5.00")
    server.set_now(None)  # the wall clock: freqtrade ignores candles older than it expects
    live_db = f"sqlite:///{tmp_path / 'dry.db'}"
    try:
        config = make_user_dir(tmp_path / "dry", server.url, {"model": tiny_model_dir, **KRONOS, "db": live_db},
                               timeframe="1m", startup=31)
        log = tmp_path / "dry.log"
        cmd = [*FREQTRADE, "trade", "--dry-run", "--config", str(config), "--userdir", str(config.parent / "user_data"),
               "--strategy", "KronosDirectional"]
        console = open(log, "w")
        process = subprocess.Popen(cmd, cwd=config.parent, stdout=console, stderr=subprocess.STDOUT,
                                   env={**os.environ, "COLUMNS": "1000"})  # one log record per line
        try:
            deadline = time.time() + 150
            while time.time() < deadline:
                lines = _kronos_lines(log.read_text()) if log.exists() else []
                if sum(" candle " in line for line in lines) >= 2 or process.poll() is not None:
                    break
                time.sleep(1)
        finally:
            process.send_signal(signal.SIGINT)
            process.wait(timeout=60)
            console.close()
    finally:
        server.stop()
    output = log.read_text()
    assert "Traceback" not in output
    decided = [line for line in _kronos_lines(output) if " candle " in line]
    assert len(decided) >= 2, output[-3000:]
    assert all("(1 window forecast in" in line for line in decided)  # only the newest candle, once
    live = {pd.Timestamp(r.window_end): r.payload for r in open_store(live_db).load_forecasts("BTC/USDT", "1m")}
    assert len(live) == len(decided)
    with sqlite3.connect(config.parent / "user_data" / "trades.sqlite") as db:  # freqtrade's own trade table
        opened = [pd.Timestamp(t).floor("1min") for (t,) in db.execute("select open_date from trades")]

    # the same candles, backtested from the first dry-run candle on (flat at its start, like the bot)
    first, last = min(live) - pd.Timedelta(minutes=1), max(live)
    bt_dir = tmp_path / "bt"
    bt_db = f"sqlite:///{tmp_path / 'bt.db'}"
    server = FakeBinance(api_key="k", api_secret="s").start()
    server.add_market("BTCUSDT", "BTC", "USDT", candles=candles, interval="1m", tick_size="0.01",
                      step_size="0.00001", min_qty="0.00001", min_notional="5.00")
    try:
        bt_config = make_user_dir(bt_dir, server.url, {"model": tiny_model_dir, **KRONOS, "db": bt_db},
                                  timeframe="1m", startup=31)
        write_candles(bt_dir / "user_data" / "data" / "binance", "BTC/USDT", "1m", candles[candles.index < last])
        timerange = f"{int(first.timestamp())}-{int(last.timestamp())}"
        _check_ran(freqtrade(["backtesting", "--timerange", timerange], bt_config))
    finally:
        server.stop()
    backtest = {pd.Timestamp(r.window_end): r.payload for r in open_store(bt_db).load_forecasts("BTC/USDT", "1m")}
    for end, payload in live.items():
        assert backtest[end]["p_up"] == payload["p_up"] and backtest[end]["mean"] == payload["mean"]
    from freqtrade.data.btanalysis import load_backtest_data

    trades = load_backtest_data(bt_dir / "user_data" / "backtest_results")
    bt_opened = [pd.Timestamp(t).tz_convert(None) for t in trades["open_date"]] if len(trades) else []
    assert [t for t in bt_opened if t < last] == [t for t in opened if t < last]
