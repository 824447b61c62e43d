"""fetch_closed_candles against the fake Binance through the real ccxt.binance."""
import numpy as np
import pandas as pd
import pytest

from fake_exchange import drop_bars, make_candles
from fake_exchange.helpers import fast_client
from kronos_trader.exchange import (
    CANDLE_COLUMNS,
    ExchangeConfigError,
    UnknownSymbolError,
    fetch_closed_candles,
    last_closed_candle_open,
    ohlcv_to_frame,
)
from kronos_trader.exchange.timeframes import to_ms

pytest_plugins = ["fake_exchange.fixtures"]

T0 = pd.Timestamp("2024-01-01")
FAST = {"backoff": 0.001}


def assert_canonical(frame):
    assert list(frame.columns) == CANDLE_COLUMNS
    assert isinstance(frame.index, pd.DatetimeIndex) and frame.index.tz is None and frame.index.unit == "ns"
    assert frame.index.name == "timestamp"
    assert frame.index.is_monotonic_increasing and frame.index.is_unique
    assert all(dtype == np.float64 for dtype in frame.dtypes)


def served(server, symbol="BTCUSDT"):
    """The server's source candles as a canonical frame."""
    s = server.series[symbol]
    index = pd.DatetimeIndex(pd.to_datetime(s.open_ms, unit="ms"), name="timestamp").as_unit("ns")
    return pd.DataFrame({"open": s.o, "high": s.h, "low": s.l, "close": s.c, "volume": s.v}, index=index)


def test_paginates_over_1000_candles_and_drops_forming(binance_public_client, binance_server):
    frame = fetch_closed_candles(binance_public_client, "BTC/USDT", "1m", since=T0, **FAST)
    assert_canonical(frame)
    source = served(binance_server)
    # 3000 candles on the server, the last one is still forming at server time
    assert len(frame) == 2999
    assert frame.index[0] == T0 and frame.index[-1] == source.index[-2]
    pd.testing.assert_frame_equal(frame[["open", "high", "low", "close", "volume"]], source.iloc[:-1])
    expected_amount = frame["volume"] * frame[["open", "high", "low", "close"]].mean(axis=1)
    np.testing.assert_allclose(frame["amount"], expected_amount)
    klines = binance_server.requests_to("/api/v3/klines")
    assert len(klines) == 3
    assert [int(r.params["limit"]) for r in klines] == [1000, 1000, 1000]  # the last one asks for the forming
    assert [int(r.params["startTime"]) for r in klines] == [to_ms(T0) + i * 60_000_000 for i in range(3)]
    # "now" came from the exchange clock
    assert len(binance_server.requests_to("/api/v3/time")) == 1


def test_pagination_across_gaps(binance_server):
    candles = make_candles(T0, 4000, "1min", seed=11)
    gappy = drop_bars(candles, ("2024-01-01 05:00", "2024-01-01 05:09"), ("2024-01-01 10:00", "2024-01-02 05:59"))
    assert len(candles) - len(gappy) == 10 + 1200  # second gap is wider than a whole page
    binance_server.set_candles("BTCUSDT", gappy)
    binance_server.set_now(candles.index[-1] + pd.Timedelta(minutes=1))  # every candle closed by the clock
    client = fast_client(binance_server, keys=False)
    frame = fetch_closed_candles(client, "BTC/USDT", "1m", since=T0, **FAST)
    assert_canonical(frame)
    # ... but nothing confirms the last one (no later candle): it is not taken as closed
    assert frame.index[-1] == gappy.index[-2]
    candles, gappy = candles.iloc[:-1], gappy.iloc[:-1]
    pd.testing.assert_frame_equal(frame[["open", "high", "low", "close", "volume"]], gappy[["open", "high", "low", "close", "volume"]], check_freq=False)
    pd.testing.assert_series_equal(frame["amount"], gappy["amount"], check_freq=False, check_exact=False)

    filled = fetch_closed_candles(client, "BTC/USDT", "1m", since=T0, fill_gaps=True, **FAST)
    assert len(filled) == len(candles)
    assert (filled.index == candles.index).all()
    hole = filled.loc["2024-01-01 05:00":"2024-01-01 05:09"]
    prev_close = candles.loc["2024-01-01 04:59", "close"]
    assert (hole[["open", "high", "low", "close"]] == prev_close).all().all()
    assert (hole[["volume", "amount"]] == 0).all().all()
    real = filled.index.isin(gappy.index)
    pd.testing.assert_frame_equal(filled[real], frame, check_freq=False)


def test_forming_candle_dropped_at_exact_boundary(binance_public_client, binance_server):
    boundary = T0 + pd.Timedelta(minutes=100)
    binance_server.set_now(boundary)  # the 01:40 candle just opened (forming); 01:39 just closed
    frame = fetch_closed_candles(binance_public_client, "BTC/USDT", "1m", since=T0, **FAST)
    assert frame.index[-1] == boundary - pd.Timedelta(minutes=1) and len(frame) == 100
    # the server reveals the forming candle: the adapter asks for it (it confirms 01:39) and drops it
    raw = binance_public_client.fetch_ohlcv("BTC/USDT", "1m", limit=1)
    assert raw[-1][0] == to_ms(boundary)


def test_explicit_now_and_until(binance_public_client, binance_server):
    now = T0 + pd.Timedelta(minutes=50, seconds=20)
    frame = fetch_closed_candles(binance_public_client, "BTC/USDT", "1m", since=T0, now=now, **FAST)
    assert frame.index[-1] == last_closed_candle_open(now, "1m") == T0 + pd.Timedelta(minutes=49)
    assert binance_server.requests_to("/api/v3/time") == []  # caller's clock, no exchange clock needed
    until = T0 + pd.Timedelta(minutes=9)
    frame = fetch_closed_candles(binance_public_client, "BTC/USDT", "1m", since=T0, until=until, **FAST)
    assert len(frame) == 10 and frame.index[-1] == until  # inclusive
    empty = fetch_closed_candles(binance_public_client, "BTC/USDT", "1m", since=until, until=T0, **FAST)
    assert empty.empty and list(empty.columns) == CANDLE_COLUMNS


def test_since_none_returns_latest_page(binance_public_client, binance_server):
    frame = fetch_closed_candles(binance_public_client, "BTC/USDT", "1m", since=None, limit_per_call=300, **FAST)
    source = served(binance_server)
    assert len(frame) == 300 and frame.index[-1] == source.index[-2]
    assert len(binance_server.requests_to("/api/v3/klines")) == 2  # 300 + the confirming candle


def test_replay_bar_by_bar_sees_each_candle_once(binance_public_client, binance_server):
    source = served(binance_server)
    binance_server.set_now(source.index[10])
    frame = fetch_closed_candles(binance_public_client, "BTC/USDT", "1m", since=T0, **FAST)
    seen = list(frame.index)
    for i in range(11, 16):
        # a late wake-up inside the bar still only yields the newly closed candle
        binance_server.set_now(source.index[i] + pd.Timedelta(seconds=37))
        new = fetch_closed_candles(binance_public_client, "BTC/USDT", "1m", since=seen[-1] + pd.Timedelta(minutes=1), **FAST)
        assert list(new.index) == [source.index[i - 1]]
        seen += list(new.index)
    assert seen == list(source.index[:15])


def test_coarser_timeframe(binance_public_client, binance_server):
    frame = fetch_closed_candles(binance_public_client, "BTC/USDT", "1h", since=T0, **FAST)
    source = served(binance_server)
    # 3000 one-minute bars = 50 hours, the 50th hour is forming
    assert len(frame) == 49 and frame.index[-1] == T0 + pd.Timedelta(hours=48)
    hour = source.loc[T0:T0 + pd.Timedelta(minutes=59)]
    assert frame.iloc[0]["high"] == hour["high"].max() and frame.iloc[0]["close"] == hour["close"].iloc[-1]
    assert frame.iloc[0]["volume"] == pytest.approx(hour["volume"].sum())


def test_unknown_symbol(binance_public_client, binance_server):
    with pytest.raises(UnknownSymbolError) as err:
        fetch_closed_candles(binance_public_client, "BTC/USD", "1m", since=T0)
    msg = str(err.value)
    assert "\n" not in msg and "'BTC/USD'" in msg and "BTC/USDT" in msg
    assert binance_server.requests_to("/api/v3/klines") == []
    # the exchange id spelling is accepted
    frame = fetch_closed_candles(binance_public_client, "BTCUSDT", "1m", since=None, limit_per_call=3, **FAST)
    assert len(frame) == 3


def test_unsupported_timeframe(binance_public_client):
    with pytest.raises(ExchangeConfigError, match="not supported by binance"):
        fetch_closed_candles(binance_public_client, "BTC/USDT", "7m", since=T0)
    with pytest.raises(ExchangeConfigError, match="invalid timeframe"):
        fetch_closed_candles(binance_public_client, "BTC/USDT", "1 minute", since=T0)


def test_symbol_without_data_returns_empty_frame(binance_public_client):
    frame = fetch_closed_candles(binance_public_client, "ETH/BTC", "1m", since=T0, **FAST)
    assert frame.empty and list(frame.columns) == CANDLE_COLUMNS


def test_ohlcv_to_frame_dedupes_sorts_and_uses_amount_column():
    rows = [
        [120_000, 3, 4, 2, 3.5, 10],
        [60_000, 1, 2, 0.5, 1.5, 4],
        [120_000, 3, 5, 2, 4.0, 11],  # duplicate open time: last wins
        [None, 1, 1, 1, 1, 1],
    ]
    frame = ohlcv_to_frame(rows)
    assert_canonical(frame)
    assert [to_ms(t) for t in frame.index] == [60_000, 120_000]
    assert frame.iloc[1]["high"] == 5 and frame.iloc[1]["volume"] == 11
    assert frame.iloc[0]["amount"] == pytest.approx(4 * (1 + 2 + 0.5 + 1.5) / 4)
    with_amount = ohlcv_to_frame([[60_000, 1, 2, 0.5, 1.5, 4, 99.0], [120_000, 1, 2, 0.5, 1.5, 4, None]])
    assert with_amount["amount"].tolist() == [99.0, 4 * 1.25]


def test_frame_is_accepted_by_the_data_layer(binance_public_client):
    data = pytest.importorskip("kronos_trader.data.candles")
    frame = fetch_closed_candles(binance_public_client, "BTC/USDT", "1m", since=None, limit_per_call=50, **FAST)
    pd.testing.assert_frame_equal(data.validate_candles(frame), frame, check_freq=False)


def test_clock_ahead_of_the_klines_never_yields_a_forming_candle(binance_public_client, binance_server):
    """The exchange's clock says 01:40 closed, but its kline feed still serves 01:40 as the
    newest candle (forming): it is not taken as closed until a later candle confirms it."""
    kline_now = T0 + pd.Timedelta(minutes=100, seconds=30)  # the feed: 01:40 forming
    binance_server.set_now(kline_now)
    clock = kline_now + pd.Timedelta(hours=1)                # the served clock: an hour ahead
    frame = fetch_closed_candles(binance_public_client, "BTC/USDT", "1m", since=T0, now=clock, **FAST)
    assert frame.index[-1] == T0 + pd.Timedelta(minutes=99)  # 01:40 (forming) left out
    assert len(frame) == 100 and frame.index[0] == T0


def test_history_by_count_across_a_weekend_gap(binance_server):
    """The last N closed candles, not the candles of the last N bars' time span."""
    from kronos_trader.exchange import fetch_last_candles

    candles = make_candles(T0, 600, "1min", seed=5)
    gappy = drop_bars(candles, ("2024-01-01 06:00", "2024-01-01 07:59"))  # 120 bars missing
    binance_server.set_candles("BTCUSDT", gappy)
    binance_server.set_now(candles.index[-1] + pd.Timedelta(seconds=30))  # the last one forming
    client = fast_client(binance_server, keys=False)
    frame = fetch_last_candles(client, "BTC/USDT", "1m", 200, limit_per_call=100, **FAST)
    assert len(frame) == 200 and frame.index[-1] == gappy.index[-2]
    assert (frame.index == gappy.index[-201:-1]).all()
    everything = fetch_last_candles(client, "BTC/USDT", "1m", 5000, limit_per_call=100, **FAST)
    assert len(everything) == len(gappy) - 1  # the whole history, then it stops
