"""Forecast skill scorer and the skill gate on constructed series with known answers."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kronos_trader.decision import Decision, PositionState, RiskLimits, decide, load_policy, series_policy
from kronos_trader.evaluation.skill import (rank_correlation, resolve_forecasts, score_forecasts, score_run,
                                           wilson_interval)
from kronos_trader.forecasting.values import WindowForecast
from kronos_trader.gate import GateRule, GateState, SkillGate, transition

H = 6
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def market(n: int = 600, seed: int = 3, vol: float = 0.01) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, vol, n)))
    index = pd.date_range("2024-01-01", periods=n, freq="1h")
    return pd.DataFrame({"open": close, "high": close, "low": close, "close": close, "volume": 1.0}, index=index)


def forecast_from_paths(candles: pd.DataFrame, p: int, paths: np.ndarray) -> WindowForecast:
    last = float(candles["close"].iloc[p])
    mean = np.zeros((paths.shape[1], 6))
    mean[:, 3] = paths.mean(axis=0)
    quantiles = dict(zip(QUANTILES, np.quantile(paths, QUANTILES, axis=0)))
    return WindowForecast(candles.index[p] + pd.Timedelta(hours=1), candles.index[p], last, mean, quantiles,
                          (paths > last).mean(axis=0), close_paths=paths)


def perfect(candles, p, m=8):
    return forecast_from_paths(candles, p, np.repeat(candles["close"].to_numpy()[None, p + 1:p + 1 + H], m, 0))


def biased(candles, p, bias=0.5, m=8):
    return forecast_from_paths(candles, p, np.repeat(candles["close"].to_numpy()[None, p + 1:p + 1 + H] + bias,
                                                     m, 0))


def random_walk(candles, p, rng, m=64, vol=0.01):
    last = candles["close"].iloc[p]
    steps = rng.normal(0, vol, (m, H)).cumsum(axis=1)
    return forecast_from_paths(candles, p, last * np.exp(steps))


def test_perfect_forecaster_scores_zero_error_full_coverage_and_skill_one():
    c = market()
    fs = [perfect(c, p) for p in range(60, len(c) - H)]
    report = score_forecasts(resolve_forecasts(fs, c))
    assert report.windows == len(fs) and sorted(report.steps) == [1, 3, 6]
    for step, rows in report.steps.items():
        m = rows["model"]
        assert m["mae"] == pytest.approx(0, abs=1e-9) and m["crps"] == pytest.approx(0, abs=1e-9)
        assert m["crps_skill_random_walk"] == pytest.approx(1) and m["crps_skill_random_walk_vol"] == pytest.approx(1)
        assert m["coverage_50"] == 1 and m["coverage_90"] == 1
        assert m["hit_rate"] == 1 and m["hit_low"] > 0.98 and m["rank_corr"] == pytest.approx(1)
        y = c["close"].to_numpy()[np.arange(60, len(c) - H) + step]
        last = c["close"].to_numpy()[60:len(c) - H]
        assert rows["random_walk"]["mae"] == pytest.approx(np.mean(np.abs(y - last)))
        assert rows["random_walk"]["crps"] == pytest.approx(rows["random_walk"]["mae"])


def test_forecasts_whose_horizon_has_not_passed_are_not_scored():
    c = market(200)
    fs = [perfect(c, p) for p in range(60, len(c) - H)]
    r = resolve_forecasts(fs, c, upto=c.index[150])
    # a forecast from bar p is resolved once bar p + H has closed: p + H + 1 <= 150
    assert r.times[-1] == c.index[150 - H - 1] + pd.Timedelta(hours=1)


def test_random_walk_forecaster_has_no_skill_against_the_rolling_vol_walk():
    c = market(3000, seed=5)
    rng = np.random.default_rng(11)
    fs = [random_walk(c, p, rng) for p in range(60, len(c) - H, 2)]
    report = score_forecasts(resolve_forecasts(fs, c))
    m = report.steps[H]["model"]
    assert abs(m["crps_skill_random_walk_vol"]) < 0.05
    assert m["hit_low"] < 0.5 < m["hit_high"]           # the interval includes a coin flip
    assert abs(m["rank_corr"]) < 0.1
    assert 0.85 < m["coverage_90"] < 0.95 and 0.45 < m["coverage_50"] < 0.56
    assert 0.85 < report.steps[H]["random_walk_vol"]["coverage_90"] < 0.95


def test_biased_forecaster_error_equals_its_bias_and_its_bands_miss():
    c = market()
    fs = [biased(c, p, bias=0.5) for p in range(60, len(c) - H)]
    report = score_forecasts(resolve_forecasts(fs, c))
    m = report.steps[1]["model"]
    assert m["mae"] == pytest.approx(0.5) and m["crps"] == pytest.approx(0.5)
    assert m["coverage_90"] == 0 and m["coverage_50"] == 0
    close = c["close"].to_numpy()
    move = close[61:len(c) - H + 1] - close[60:len(c) - H]
    expected = np.mean((move + 0.5 > 0) == (move > 0))  # it calls "up" whenever the move is above -0.5
    assert m["hit_rate"] == pytest.approx(expected)


def test_wilson_interval_and_rank_correlation_known_values():
    lo, hi = wilson_interval(50, 100)
    assert (lo, hi) == pytest.approx((0.4038, 0.5962), abs=1e-4)
    assert wilson_interval(0, 0)[0] != wilson_interval(0, 0)[0]  # NaN
    assert rank_correlation([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1)
    assert rank_correlation([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1)


def test_report_dict_round_trip():
    c = market(200)
    report = score_forecasts(resolve_forecasts([perfect(c, p) for p in range(60, 190)], c), pending=3)
    again = type(report).from_dict(report.to_dict())
    assert again.steps[6]["model"]["crps"] == report.steps[6]["model"]["crps"] and again.pending == 3
    assert "beats" in report.verdict()


class AlwaysLong:
    def decide(self, forecast, position):
        return Decision(0.5, "long: test")


def run_gate(gate, forecasts):
    state = PositionState(0.0, None, 10_000.0, 100.0)
    return [series_policy(gate, "X").decide(f, state) for f in forecasts]


def test_gate_warms_up_opens_on_skill_and_closes_when_skill_goes():
    c = market(400)
    rule = GateRule(rule="crps_skill", window=20)
    good = [perfect(c, p) for p in range(60, 200)]
    bad = [biased(c, p, bias=5.0) for p in range(200, 390)]
    decisions = run_gate(SkillGate(AlwaysLong(), rule), good + bad)
    reasons = [d.reason for d in decisions]
    # the first forecast resolves H bars later, the gate needs `window` of them
    first_open = H + rule.window - 1
    assert all(r.startswith("gate warming up") for r in reasons[:first_open])
    assert decisions[first_open].target == 0.5 and "gate open" in reasons[first_open]
    assert all(d.target == 0.5 for d in decisions[first_open:140 + H])   # perfect forecasts keep it open
    closed = [i for i, r in enumerate(reasons) if r.startswith("gate closed")]
    assert closed and 140 + H <= closed[0] <= 140 + H + rule.window  # bad outcomes arrive H bars late
    assert all(decisions[i].target == 0 for i in closed)
    assert all(d.target == 0 for d in decisions[closed[0]:])


def test_hit_rate_rule_uses_the_wilson_lower_bound():
    rule = GateRule(rule="hit_rate", window=20)
    assert transition(rule, 19, 0.9) is GateState.WARMING_UP
    assert transition(rule, 20, 0.51) is GateState.OPEN and transition(rule, 20, 0.5) is GateState.CLOSED
    c = market(300)
    decisions = run_gate(SkillGate(AlwaysLong(), rule), [perfect(c, p) for p in range(60, 290)])
    assert decisions[-1].target == 0.5 and "lower bound" in decisions[-1].reason


def test_gate_sees_every_forecast_even_when_a_risk_exit_decides():
    c = market(200)
    gate = load_policy("strategies.directional:Directional", {}, {"rule": "crps_skill", "window": 50})
    held = PositionState(1.0, 200.0, 10_000.0, 100.0)   # far below entry: the stop-loss fires every time
    for p in range(60, 80):
        d = decide(series_policy(gate, "X"), perfect(c, p), held, RiskLimits(stop_loss=0.05))
        assert d.reason.startswith("stop-loss")
    assert len(gate.for_series("X").ledger.scores) == 20 - H
    assert series_policy(gate, "Y") is not series_policy(gate, "X")  # one ledger per series


def test_gate_ignores_a_repeated_bar():
    c = market(100)
    gate = SkillGate(AlwaysLong(), GateRule(window=5))
    f = perfect(c, 60)
    gate.observe(f)
    gate.observe(f)
    assert len(gate.ledger.pending) == 1


def weekday_market(n: int = 600, seed: int = 5) -> pd.DataFrame:
    """Hourly bars Monday to Friday: no bars at weekends, as for FX."""
    index = pd.date_range("2024-01-01", periods=n * 2, freq="1h")
    index = index[index.day_of_week < 5][:n]
    frame = market(n, seed)
    return frame.set_axis(index)


def with_calendar(candles: pd.DataFrame, f: WindowForecast, p: int) -> WindowForecast:
    from dataclasses import replace

    from kronos_trader.data.calendar import future_stamps
    return replace(f, stamps=future_stamps(candles.index[:p + 1], H))


def test_forecasts_across_a_weekend_resolve_at_their_calendar_bars():
    gaps = weekday_market()
    continuous = gaps.set_axis(pd.date_range("2024-01-01", periods=len(gaps), freq="1h"))
    origins = range(130, len(gaps) - H)
    friday = gaps.index.get_loc(pd.Timestamp("2024-01-12 20:00"))
    assert friday in origins and gaps.index[friday + H] == pd.Timestamp("2024-01-15 02:00")
    stamped = [with_calendar(gaps, biased(gaps, p, bias=0.3), p) for p in origins]
    assert (stamped[friday - 130].stamps == gaps.index[friday + 1:friday + 1 + H]).all()
    resolved = resolve_forecasts(stamped, gaps)
    assert len(resolved) == len(origins)  # none dropped at a weekend
    assert np.array_equal(resolved.realized[friday - 130], gaps["close"].to_numpy()[friday + 1:friday + 1 + H])
    # the same closes on a 24/7 index score the same; without stamps the bars are counted
    plain = [biased(continuous, p, bias=0.3) for p in origins]
    expected = score_forecasts(resolve_forecasts(plain, continuous)).to_dict()["steps"]
    assert score_forecasts(resolved).to_dict()["steps"] == expected
    unstamped = [biased(gaps, p, bias=0.3) for p in origins]
    assert score_forecasts(resolve_forecasts(unstamped, gaps)).to_dict()["steps"] == expected
    # a target not in the data (a bar the calendar expected) resolves at the next bar
    missing = gaps.index[-2]
    hit = [f for f in stamped[-2 * H:] if missing in f.stamps and f.stamps[-1] < gaps.index[-1]]
    assert hit
    short = gaps.drop(missing)
    again = resolve_forecasts(stamped[-2 * H:], short)
    assert set(f.window_end for f in hit) <= set(again.times)
    row = list(again.times).index(hit[0].window_end)
    k = list(hit[0].stamps).index(missing)
    assert again.realized[row, k] == gaps["close"].iloc[-1]


def test_gate_scores_across_weekends_at_the_calendar_bars():
    gaps = weekday_market()
    continuous = gaps.set_axis(pd.date_range("2024-01-01", periods=len(gaps), freq="1h"))
    origins = range(130, len(gaps) - H)
    rule = GateRule(rule="crps_skill", window=20)
    on_gaps = SkillGate(AlwaysLong(), rule)
    on_calendar = [on_gaps.observe(with_calendar(gaps, biased(gaps, p, bias=0.3), p)) for p in origins]
    plain = SkillGate(AlwaysLong(), rule)
    on_clock = [plain.observe(biased(continuous, p, bias=0.3)) for p in origins]
    assert on_calendar[-1].state is not GateState.WARMING_UP
    assert on_calendar[-1].resolved == rule.window
    assert [v.state for v in on_calendar] == [v.state for v in on_clock]
    assert np.allclose([v.value for v in on_calendar], [v.value for v in on_clock], equal_nan=True)
    assert on_calendar[-1].value == pytest.approx(on_clock[-1].value, rel=1e-12)


def test_gate_reports_the_inner_policys_p_up_thresholds():
    from kronos_trader.forecasting.probability import threshold_warnings
    from strategies.directional import Directional

    params = {"long_threshold": 0.55, "allow_short": True, "short_threshold": 0.4}
    gate = load_policy("strategies.directional:Directional", params, {"rule": "crps_skill", "window": 50})
    assert isinstance(gate, SkillGate)
    assert gate.p_up_thresholds() == Directional(**params).p_up_thresholds() != {}
    assert series_policy(gate, "X").p_up_thresholds() == gate.p_up_thresholds()
    assert threshold_warnings(gate.p_up_thresholds(), 8)  # 0.55 lies between 4/8 and 5/8
    assert SkillGate(AlwaysLong(), GateRule()).p_up_thresholds() == {}


def stock_days(n: int = 300, seed: int = 7) -> pd.DataFrame:
    """Daily bars on NYSE sessions: weekends and exchange holidays (Juneteenth, July 4th,
    Labor Day, Thanksgiving, Christmas...) have no bar, as in a daily stock file."""
    import exchange_calendars as xc

    sessions = xc.get_calendar("XNYS", start="2023-01-01", end="2024-12-31").sessions_in_range(
        "2023-06-01", "2024-12-31")
    index = pd.DatetimeIndex(sessions[:n]).tz_localize(None)
    return market(n, seed).set_axis(index)


def test_daily_stock_forecasts_across_holidays_resolve():
    """Issue 25.1: a forecast whose calendar targets include a holiday resolved never, so
    most daily-stock forecasts stayed 'open'. Each step resolves at the bar at or after its
    stamp; only forecasts the data cannot resolve yet stay open."""
    days = stock_days()
    origins = range(60, len(days))
    stamped = [with_calendar(days, biased(days, p, bias=0.3) if p + H < len(days) else
                             forecast_from_paths(days, p, np.full((8, H), 100.0)), p) for p in origins]
    holidays = [f for f in stamped if not f.stamps.isin(days.index).all() and f.stamps[-1] <= days.index[-1]]
    assert len(holidays) > 30  # the calendar's stamps do fall on holidays
    report = score_run(stamped, days)
    assert report.pending <= H + 1 and report.windows == len(stamped) - report.pending
    resolved = resolve_forecasts(stamped, days)
    close = days["close"].to_numpy()
    for f, realized in zip(stamped, resolved.realized):
        expected = close[np.searchsorted(days.index, f.stamps)]
        assert np.array_equal(realized, expected)
    # a holiday step resolves against the next session's close
    f = holidays[0]
    k = int(np.flatnonzero(~f.stamps.isin(days.index))[0])
    row = list(resolved.times).index(f.window_end)
    assert resolved.realized[row, k] == close[days.index.searchsorted(f.stamps[k])]


def test_gate_scores_daily_stock_forecasts_across_holidays():
    days = stock_days()
    rule = GateRule(rule="crps_skill", window=20)
    gate = SkillGate(AlwaysLong(), rule)
    origins = range(60, len(days) - H)
    verdicts = [gate.observe(with_calendar(days, biased(days, p, bias=0.3), p)) for p in origins]
    # every forecast made H bars (or more) before the last one has been scored
    scored = sum(1 for _ in origins) - len(gate.ledger.pending)
    assert len(gate.ledger.pending) <= H + 1
    assert verdicts[-1].resolved == rule.window and scored > 150
    # warming up ends after window + H forecasts, not later because of holidays
    first = next(i for i, v in enumerate(verdicts) if v.state is not GateState.WARMING_UP)
    assert first <= rule.window + H + 2


def _headers(table) -> list[str]:
    return [str(c.header) for c in table.columns]


def _first_cells(table) -> list[str]:
    return [str(c) for c in table.columns[1]._cells]


def test_evaluate_and_backtest_skill_tables_share_one_vocabulary():
    """Issue 25.3b: 'RW static'/'RW (last close)', 'RW rolling'/'RW+vol', 'dir. acc'/'hit rate'
    named the same scores differently in `evaluate` and the backtest's skill table."""
    from kronos_trader.evaluation.report import MODEL_SHORT
    from kronos_trader.evaluation.skill import FORECASTER_SHORT, SCORE_COLUMNS

    c = market()
    report = score_forecasts(resolve_forecasts([perfect(c, p) for p in range(60, len(c) - H)], c))
    skill_cols = _headers(report.table())
    assert "dir. acc" not in MODEL_SHORT.values()
    assert MODEL_SHORT["rw_rolling"] == FORECASTER_SHORT["random_walk_vol"]
    assert MODEL_SHORT["kronos"] == FORECASTER_SHORT["model"]
    assert set(_first_cells(report.table())) - {""} <= set(FORECASTER_SHORT.values())
    assert set(skill_cols) <= set(SCORE_COLUMNS.values())
