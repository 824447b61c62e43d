"""Loading, validating, saving and inspecting candle files.

Every bad input must give a single-line CandleDataError naming the problem and
where it is (file, line/row, column).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kronos_trader.data import (
    CANONICAL_COLUMNS,
    CandleDataError,
    assert_no_gaps,
    data_hash,
    find_gaps,
    generate_market,
    infer_bar_interval,
    load_candles,
    resample_candles,
    save_candles,
    validate_candles,
)

HEADER = "timestamp,open,high,low,close,volume"
GOOD_ROWS = [
    "2023-01-01 00:00:00,100,110,90,105,10",
    "2023-01-01 01:00:00,105,112,101,108,12",
    "2023-01-01 02:00:00,108,109,100,101,8",
]


def write(tmp_path: Path, text: str, name: str = "candles.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def csv_with(tmp_path: Path, *, header: str = HEADER, rows: list[str] | None = None) -> Path:
    return write(tmp_path, "\n".join([header, *(GOOD_ROWS if rows is None else rows)]) + "\n")


def replace_row(index: int, row: str) -> list[str]:
    rows = list(GOOD_ROWS)
    rows[index] = row
    return rows


def error_of(call, *args) -> str:
    with pytest.raises(CandleDataError) as info:
        call(*args)
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def assert_mentions(message: str, *parts: str) -> None:
    for part in parts:
        assert part in message, f"{part!r} not in {message!r}"


# --------------------------------------------------------------------------- good input


def test_load_csv_gives_canonical_frame(tmp_path):
    frame = load_candles(csv_with(tmp_path))
    assert list(frame.columns) == list(CANONICAL_COLUMNS)
    assert all(dtype == np.float64 for dtype in frame.dtypes)
    assert isinstance(frame.index, pd.DatetimeIndex)
    assert frame.index.name == "timestamp" and frame.index.tz is None
    assert frame.index[0] == pd.Timestamp("2023-01-01 00:00")
    assert frame.loc["2023-01-01 01:00", "close"] == 108.0


def test_missing_amount_is_volume_times_mean_ohlc(tmp_path):
    frame = load_candles(csv_with(tmp_path))
    assert frame["amount"].iloc[0] == pytest.approx(10 * (100 + 110 + 90 + 105) / 4)


def test_missing_volume_gives_zero_volume_and_amount(tmp_path):
    rows = [",".join(r.split(",")[:5]) for r in GOOD_ROWS]
    frame = load_candles(csv_with(tmp_path, header="timestamp,open,high,low,close", rows=rows))
    assert (frame["volume"] == 0).all() and (frame["amount"] == 0).all()


def test_aliases_case_and_whitespace(tmp_path):
    header = " Timestamps , OPEN,High,low ,Close,Vol,Turnover,extra"
    rows = [r + ",5.5,ignored" for r in GOOD_ROWS]
    frame = load_candles(csv_with(tmp_path, header=header, rows=rows))
    assert list(frame.columns) == list(CANONICAL_COLUMNS)
    assert frame["volume"].iloc[1] == 12 and frame["amount"].iloc[0] == 5.5


@pytest.mark.parametrize("name", ["time", "date", "datetime", "open_time", "Date"])
def test_time_column_aliases(tmp_path, name):
    frame = load_candles(csv_with(tmp_path, header=HEADER.replace("timestamp", name)))
    assert frame.index[2] == pd.Timestamp("2023-01-01 02:00")


def test_quote_volume_alias(tmp_path):
    rows = [r + ",7" for r in GOOD_ROWS]
    frame = load_candles(csv_with(tmp_path, header=HEADER + ",quote_volume", rows=rows))
    assert (frame["amount"] == 7).all()


@pytest.mark.parametrize(
    ("stamps", "unit"),
    [
        (["1672531200", "1672534800", "1672538400"], "s"),
        (["1672531200000", "1672534800000", "1672538400000"], "ms"),
        (["1672531200.0", "1672534800.0", "1672538400.0"], "s"),
    ],
)
def test_epoch_seconds_and_milliseconds(tmp_path, stamps, unit):
    rows = [f"{stamp},{row.split(',', 1)[1]}" for stamp, row in zip(stamps, GOOD_ROWS, strict=True)]
    frame = load_candles(csv_with(tmp_path, rows=rows))
    expected = pd.date_range("2023-01-01", periods=3, freq="h")
    assert list(frame.index) == list(expected), unit


def test_epoch_ms_in_parquet_open_time(tmp_path):
    raw = pd.DataFrame(
        {
            "open_time": np.array([1672531200000, 1672534800000], dtype=np.int64),
            "open": [1.0, 2.0],
            "high": [2.0, 3.0],
            "low": [0.5, 1.5],
            "close": [2.0, 2.5],
        }
    )
    raw.to_parquet(tmp_path / "x.parquet")
    frame = load_candles(tmp_path / "x.parquet")
    assert frame.index[1] == pd.Timestamp("2023-01-01 01:00")


def test_timezone_offsets_become_naive_utc(tmp_path):
    stamps = ["2023-01-01T02:00:00+02:00", "2023-01-01T01:00:00Z", "2023-01-01 02:00:00"]
    rows = [f"{stamp},{row.split(',', 1)[1]}" for stamp, row in zip(stamps, GOOD_ROWS, strict=True)]
    frame = load_candles(csv_with(tmp_path, rows=rows))
    assert frame.index.tz is None
    assert list(frame.index) == list(pd.date_range("2023-01-01", periods=3, freq="h"))


def test_frame_with_aware_datetime_index(tmp_path):
    index = pd.date_range("2023-01-01 01:00", periods=3, freq="h", tz="Europe/Berlin")
    raw = pd.DataFrame(
        {"Open": [1.0, 1, 1], "High": [2.0, 2, 2], "Low": [0.5, 0.5, 0.5], "Close": [1.5, 1.5, 1.5]},
        index=index,
    )
    frame = validate_candles(raw)
    assert frame.index[0] == pd.Timestamp("2023-01-01 00:00") and frame.index.tz is None


def test_object_column_of_datetimes_and_epoch_index():
    import datetime as dt

    utc = dt.timezone.utc
    raw = pd.DataFrame(
        {
            "Time": [
                dt.datetime(2023, 1, 1, tzinfo=utc),
                pd.Timestamp("2023-01-01 03:00", tz="Asia/Tokyo") + pd.Timedelta("7h"),
            ],
            "open": [1.0, 1.0],
            "high": [2.0, 2.0],
            "low": [0.5, 0.5],
            "close": [1.5, 1.5],
        }
    )
    assert raw["Time"].dtype == object
    frame = validate_candles(raw)
    assert list(frame.index) == [pd.Timestamp("2023-01-01 00:00"), pd.Timestamp("2023-01-01 01:00")]
    by_index = raw.drop(columns="Time").set_axis(pd.Index([1672531200000, 1672534800000], name="date"))
    assert validate_candles(by_index).index[1] == pd.Timestamp("2023-01-01 01:00")
    raw.loc[1, "Time"] = "garbage"
    assert_mentions(
        error_of(validate_candles, raw), "row 2", "column 'Time'", "cannot read timestamp 'garbage'"
    )


def test_error_is_a_value_error_with_parts(tmp_path):
    with pytest.raises(ValueError) as info:
        load_candles(str(csv_with(tmp_path, rows=replace_row(0, "2023-01-01,1,2,0.5,x,1"))))
    err = info.value
    assert isinstance(err, CandleDataError)
    assert (err.row, err.column, err.problem) == (
        "line 2 (2023-01-01 00:00:00)",
        "close",
        "not a number: 'x'",
    )


def test_unnamed_index_column_from_to_csv(tmp_path):
    frame = generate_market(5)
    path = tmp_path / "plain.csv"
    frame.rename_axis(None).to_csv(path)
    pd.testing.assert_frame_equal(load_candles(path), frame)


def test_blank_lines_skipped_but_counted(tmp_path):
    text = HEADER + "\n\n" + GOOD_ROWS[0] + "\n\n" + "2023-01-01 01:00:00,105,abc,101,108,12\n"
    message = error_of(load_candles, write(tmp_path, text))
    assert_mentions(message, "line 5", "column 'high'")


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".feather"])
def test_round_trip_all_formats(tmp_path, suffix):
    frame = generate_market(300, interval="15min", seed=3)
    path = save_candles(frame, tmp_path / "sub" / f"candles{suffix}")
    loaded = load_candles(path)
    pd.testing.assert_frame_equal(loaded, frame, check_exact=True)
    assert data_hash(loaded) == data_hash(frame)


def test_round_trip_daily_and_subsecond(tmp_path):
    daily = generate_market(10, interval="1D")
    pd.testing.assert_frame_equal(
        load_candles(save_candles(daily, tmp_path / "d.csv")), daily, check_exact=True
    )
    fine = daily.copy()
    fine.index = fine.index + pd.Timedelta(milliseconds=250)
    pd.testing.assert_frame_equal(load_candles(save_candles(fine, tmp_path / "f.csv")), fine)


# --------------------------------------------------------------------------- bad files


@pytest.mark.parametrize(
    ("header", "rows", "parts"),
    [
        (
            "timestamp,open,high,low,volume",
            [r.rsplit(",", 2)[0] + ",1" for r in GOOD_ROWS],
            ["missing required column(s) close", "found columns: timestamp, open, high, low, volume"],
        ),
        (
            "timestamp,high,low",
            ["2023-01-01,1,1"],
            ["missing required column(s) open, close", "found columns: timestamp, high, low"],
        ),
        (
            "when,open,high,low,close",
            ["2023-01-01,1,1,1,1"],
            ["no timestamp column", "found columns: when, open"],
        ),
        (
            "time,timestamp,open,high,low,close",
            ["1,1,1,1,1,1"],
            ["columns 'time' and 'timestamp' both mean 'timestamp'"],
        ),
        (
            HEADER,
            replace_row(1, "2023-01-01 01:00:00,105,112,101,abc,12"),
            ["line 3", "column 'close'", "not a number: 'abc'"],
        ),
        (
            HEADER,
            replace_row(2, "2023-01-01 02:00:00,108,,100,101,8"),
            ["line 4", "column 'high'", "missing value"],
        ),
        (
            HEADER,
            replace_row(0, "2023-01-01 00:00:00,100,110,90,NaN,10"),
            ["line 2", "column 'close'", "missing value"],
        ),
        (
            HEADER,
            replace_row(1, "2023-01-01 01:00:00,105,inf,101,108,12"),
            ["line 3", "column 'high'", "infinite"],
        ),
        (
            HEADER,
            replace_row(1, "2023-01-01 01:00:00,0,112,0,108,12"),
            ["line 3", "column 'open'", "price must be positive, got 0"],
        ),
        (
            HEADER,
            replace_row(2, "2023-01-01 02:00:00,-1,109,-2,101,8"),
            ["line 4", "price must be positive, got -1"],
        ),
        (
            HEADER,
            replace_row(1, "2023-01-01 01:00:00,105,100,101,100.5,12"),
            ["line 3", "column 'high'", "high 100 is below low 101"],
        ),
        (
            HEADER,
            replace_row(1, "2023-01-01 01:00:00,105,106,101,108,12"),
            ["line 3", "column 'high'", "high 106 is below max(open, close) 108"],
        ),
        (
            HEADER,
            replace_row(2, "2023-01-01 02:00:00,108,109,102,101,8"),
            ["line 4", "column 'low'", "low 102 is above min(open, close) 101"],
        ),
        (
            HEADER,
            replace_row(2, "2023-01-01 02:00:00,108,109,100,101,-8"),
            ["line 4", "column 'volume'", "volume must not be negative, got -8"],
        ),
        (
            HEADER,
            replace_row(2, "2023-01-01 01:00:00,108,109,100,101,8"),
            ["line 4", "duplicate timestamp 2023-01-01 01:00:00", "already on line 3"],
        ),
        (
            HEADER,
            replace_row(2, "2022-12-31 23:00:00,108,109,100,101,8"),
            ["line 4", "out of order", "2022-12-31 23:00:00", "2023-01-01 01:00:00", "(line 3)"],
        ),
        (
            HEADER,
            replace_row(1, "yesterday,105,112,101,108,12"),
            ["line 3", "column 'timestamp'", "cannot read timestamp 'yesterday'"],
        ),
        (
            HEADER,
            replace_row(1, ",105,112,101,108,12"),
            ["line 3", "column 'timestamp'", "missing timestamp"],
        ),
        (
            HEADER,
            ["1672531200,100,110,90,105,10", "2023-01-01 01:00:00,105,112,101,108,12"],
            ["line 3", "cannot read timestamp '2023-01-01 01:00:00'", "epoch"],
        ),
        (
            HEADER,
            replace_row(1, "2023-01-01 01:00:00,105,112,101,108,12,99"),
            ["line 3", "row has 7 fields but the header (line 1) has 6"],
        ),
        (HEADER, replace_row(2, "2023-01-01 02:00:00,108,109"), ["line 4", "row has 3 fields"]),
        (HEADER, replace_row(1, '2023-01-01 01:00:00,"105"x,112,101,108,12'), ["line 3", "malformed CSV"]),
        (HEADER, replace_row(2, '2023-01-01 02:00:00,"108,109,100,101,8'), ["line 4", "malformed CSV"]),
        (HEADER, [], ["no data rows", "header on line 1"]),
    ],
    ids=lambda value: None,
)
def test_bad_csv_content(tmp_path, header, rows, parts):
    path = csv_with(tmp_path, header=header, rows=rows)
    message = error_of(load_candles, path)
    assert_mentions(message, str(path), *parts)


def test_row_error_includes_the_bar_time(tmp_path):
    message = error_of(
        load_candles, csv_with(tmp_path, rows=replace_row(1, "2023-01-01 01:00:00,105,112,101,x,12"))
    )
    assert re.search(r"line 3 \(2023-01-01 01:00:00\), column 'close': not a number", message), message


def test_reports_earliest_bad_row_across_columns(tmp_path):
    rows = replace_row(2, "2023-01-01 02:00:00,108,109,100,oops,8")
    rows[1] = "2023-01-01 01:00:00,105,112,101,108,bad"
    message = error_of(load_candles, csv_with(tmp_path, rows=rows))
    assert_mentions(message, "line 3", "column 'volume'")


def test_missing_file(tmp_path):
    assert_mentions(error_of(load_candles, tmp_path / "nope.csv"), "nope.csv", "file not found")


def test_empty_file(tmp_path):
    assert_mentions(error_of(load_candles, write(tmp_path, "")), "candles.csv", "file is empty")


def test_whitespace_only_file(tmp_path):
    assert_mentions(error_of(load_candles, write(tmp_path, "\n  \n")), "file is empty")


def test_directory(tmp_path):
    folder = tmp_path / "dir.csv"
    folder.mkdir()
    assert_mentions(error_of(load_candles, folder), "dir.csv", "not a regular file")


@pytest.mark.parametrize("name", ["candles.txt", "candles.xlsx", "candles"])
def test_unknown_suffix(tmp_path, name):
    path = write(tmp_path, HEADER, name)
    assert_mentions(
        error_of(load_candles, path), name, "unsupported file type", ".csv", ".parquet", ".feather"
    )


def test_non_utf8(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes((HEADER + "\n2023-01-01,1,1,1,1,1 \xe9\xff\n").encode("latin-1"))
    assert_mentions(error_of(load_candles, path), "latin.csv", "not UTF-8")


@pytest.mark.parametrize(("name", "kind"), [("bad.parquet", "Parquet"), ("bad.feather", "Feather")])
def test_corrupt_binary_files(tmp_path, name, kind):
    path = tmp_path / name
    path.write_bytes(b"this is not a columnar file at all")
    assert_mentions(error_of(load_candles, path), name, f"not a readable {kind} file")


def test_parquet_errors_use_one_based_rows(tmp_path):
    frame = generate_market(5).reset_index()
    frame.loc[3, "low"] = -1.0
    frame.to_parquet(tmp_path / "x.parquet")
    assert_mentions(
        error_of(load_candles, tmp_path / "x.parquet"), "x.parquet", "row 4", "column 'low'", "positive"
    )


# --------------------------------------------------------------------------- frames


def test_validate_frame_rows_and_source():
    frame = generate_market(4).reset_index()
    frame.loc[1, "close"] = np.nan
    message = error_of(validate_candles, frame)
    assert_mentions(message, "<frame>", "row 2", "column 'close'", "missing value")
    message = error_of(validate_candles, frame, "my upload")
    assert message.startswith("my upload, row 2")


def test_validate_frame_non_numeric_object_column():
    frame = generate_market(3).reset_index().astype({"open": object})
    frame.loc[2, "open"] = "n/a?"
    assert_mentions(error_of(validate_candles, frame), "row 3", "column 'open'", "not a number: 'n/a?'")


def test_validate_rejects_non_frames_and_empty():
    assert_mentions(error_of(validate_candles, [1, 2]), "expected a pandas DataFrame, got list")
    empty = generate_market(3).iloc[:0]
    assert_mentions(error_of(validate_candles, empty), "no data rows")


def test_validate_is_idempotent_and_copies():
    frame = generate_market(50)
    once = validate_candles(frame)
    pd.testing.assert_frame_equal(validate_candles(once), once)
    once.iloc[0, 0] = 1.0
    assert frame.iloc[0, 0] != 1.0


def test_integer_and_nullable_dtypes_are_accepted():
    frame = pd.DataFrame(
        {
            "date": ["2023-01-01", "2023-01-02"],
            "open": pd.array([1, 2], dtype="Int64"),
            "high": [3, 3],
            "low": [1, 1],
            "close": pd.array([2.0, 2.5], dtype="Float64"),
            "volume": [1, 2],
        }
    )
    out = validate_candles(frame)
    assert all(dtype == np.float64 for dtype in out.dtypes)
    assert out.index[1] == pd.Timestamp("2023-01-02")


# --------------------------------------------------------------------------- bars


def hourly_with_gaps() -> pd.DataFrame:
    frame = generate_market(48)
    return frame.drop(frame.index[[5, 6, 7, 20]])


def test_infer_interval_is_robust_to_gaps():
    assert infer_bar_interval(hourly_with_gaps().index) == pd.Timedelta("1h")
    assert infer_bar_interval(generate_market(30, interval="15min")) == pd.Timedelta("15min")


def test_infer_interval_needs_two_rows():
    assert_mentions(error_of(infer_bar_interval, generate_market(1).index), "at least 2 bars")


def test_find_gaps_lists_missing_ranges():
    frame = hourly_with_gaps()
    gaps = find_gaps(frame, "1h")
    assert list(gaps["missing_bars"]) == [3, 1]
    assert gaps["gap_start"].iloc[0] == pd.Timestamp("2023-01-01 05:00")
    assert gaps["gap_end"].iloc[0] == pd.Timestamp("2023-01-01 07:00")
    assert gaps["gap_start"].iloc[1] == gaps["gap_end"].iloc[1] == pd.Timestamp("2023-01-01 20:00")
    assert find_gaps(generate_market(10)).empty


def test_assert_no_gaps_names_first_gap():
    message = error_of(assert_no_gaps, hourly_with_gaps(), "1h", "btc.csv")
    assert_mentions(
        message, "btc.csv", "3 missing 1h bar(s) from 2023-01-01 05:00:00 to 2023-01-01 07:00:00", "2 gaps"
    )
    assert_no_gaps(generate_market(10), "1h", "ok.csv")


def test_resample_aggregates_ohlcv():
    frame = generate_market(48)
    out = resample_candles(frame, "4h")
    assert len(out) == 12 and list(out.columns) == list(CANONICAL_COLUMNS)
    first = frame.iloc[:4]
    assert out.iloc[0]["open"] == first["open"].iloc[0]
    assert out.iloc[0]["high"] == first["high"].max()
    assert out.iloc[0]["low"] == first["low"].min()
    assert out.iloc[0]["close"] == first["close"].iloc[-1]
    assert out.iloc[0]["volume"] == pytest.approx(first["volume"].sum())
    assert out.iloc[0]["amount"] == pytest.approx(first["amount"].sum())
    validate_candles(out)


def test_resample_drops_empty_bars():
    frame = generate_market(48)
    frame = frame.drop(frame.index[8:16])  # two whole 4h bars
    out = resample_candles(frame, "4h")
    assert len(out) == 10 and pd.Timestamp("2023-01-01 08:00") not in out.index


def test_resample_bad_rule():
    assert_mentions(error_of(resample_candles, generate_market(5), "bogus"), "invalid resample rule 'bogus'")


# --------------------------------------------------------------------------- hashing


def test_data_hash_is_stable_and_sensitive():
    frame = generate_market(100, seed=2)
    digest = data_hash(frame)
    assert re.fullmatch(r"[0-9a-f]{64}", digest)
    assert data_hash(frame[list(reversed(frame.columns))]) == digest
    changed = frame.copy()
    changed.iloc[50, 3] = changed.iloc[50, 3] * 1.0000001
    changed.iloc[50, 1] = max(changed.iloc[50, 1], changed.iloc[50, 3])
    assert data_hash(changed) != digest
    shifted = frame.copy()
    shifted.index = shifted.index + pd.Timedelta("1s")
    assert data_hash(shifted) != digest


def test_data_hash_known_value():
    frame = pd.DataFrame(
        {
            "open": [1.0, 2.0],
            "high": [2.0, 3.0],
            "low": [0.5, 1.5],
            "close": [2.0, 2.5],
            "volume": [1.0, 0.0],
        },
        index=pd.DatetimeIndex(["2023-01-01", "2023-01-01 01:00"], name="timestamp"),
    )
    assert data_hash(frame) == KNOWN_HASH


KNOWN_HASH = "169914c90dac077040256ea2dc53457070313af37bb535bb8c59d5389f13a67b"
