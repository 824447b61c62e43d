"""The screening pass: the vectorised replay against Backtrader, and the screened sweep."""
from __future__ import annotations

import numpy as np
import pytest
from optuna.trial import TrialState

from kronos_trader.backtest.runner import run_backtest
from kronos_trader.config import parse_settings
from kronos_trader.forecasting.service import ForecastService
from kronos_trader.store import open_store
from kronos_trader.sweep import SweepData, build_space, run_sweep
from kronos_trader.sweep.screen import replay
from kronos_trader.sweep.space import with_params

# the replay's stated tolerance against Backtrader, per metric (absolute)
TOLERANCE = {"total_return": 1e-6, "max_drawdown": 1e-6, "sharpe": 1e-4, "trades": 0}

GRID = {"strategy.params.long_threshold": [0.4, 0.6], "strategy.params.allow_short": [True, False],
        "strategy.params.sizing.fraction": [0.5, 0.95], "risk.stop_loss": [0.01, None],
        "risk.take_profit": [0.02], "costs.commission": [0.001], "costs.slippage": [0.0, 0.001]}


def _settings(fast_settings, **sweep):
    raw = fast_settings.model_dump(mode="json")
    raw["sweep"] = {"sampler": "grid", "params": GRID, "min_trades": 0, **sweep}  # its own test covers min_trades
    return parse_settings(raw)


def test_vectorised_replay_matches_backtrader_on_every_point(fast_settings, sample_candles):
    settings = _settings(fast_settings)
    candles = sample_candles.iloc[:260]
    service = ForecastService.from_settings(settings, open_store(settings.database.url), False)
    grid = build_space(settings, settings.sweep).grid
    screen = replay(settings, candles, service, "BTC/USDT", "1h", grid)
    assert len(grid) == 32
    trades, returns = [], set()
    for i, point in enumerate(grid):
        exact = run_backtest(with_params(settings, point), candles, "BTC/USDT", "1h", None, progress=False,
                             service=service).metrics["strategy"]
        for name, tolerance in TOLERANCE.items():
            assert screen.metrics[name][i] == pytest.approx(exact[name], abs=tolerance, nan_ok=True), (name, point)
        trades.append(exact["trades"])
        returns.add(round(exact["total_return"], 6))
    assert max(trades) >= 10 and len(returns) >= 16  # the points really trade, and differently
    assert np.isfinite(screen.scores).all()


def test_screened_sweep_reruns_the_best_points_exactly(fast_settings, sample_candles):
    settings = _settings(fast_settings, screen=3, objective="total_return")
    data = SweepData({"BTC/USDT": sample_candles.iloc[:200]}, "1h")
    summary = run_sweep(settings, data, progress=False)
    done = summary.study.get_trials(states=(TrialState.COMPLETE,))
    assert len(done) == 3 and len(summary.screen.scores) == 32
    best3 = sorted(summary.screen.scores, reverse=True)[:3]
    assert sorted(t.user_attrs["screen_value"] for t in done) == pytest.approx(sorted(best3))
    for t in done:
        assert t.value == pytest.approx(t.user_attrs["screen_value"], abs=TOLERANCE["total_return"])
    bad = _settings(fast_settings, screen=3, params={"forecast.horizon": [4]})
    with pytest.raises(ValueError):
        run_sweep(bad, data, progress=False)
    topk = parse_settings({**settings.model_dump(mode="json"), "strategy": {
        "name": "strategies.cross_sectional:TopK", "params": {}}, "sweep": {
        "sampler": "grid", "screen": 2, "params": {"strategy.params.k": [1, 2]}}})
    with pytest.raises(ValueError, match="sweep.screen: the screening pass replays strategies.directional"):
        run_sweep(topk, data, progress=False)


def test_screening_scores_follow_the_objectives_rules():
    from kronos_trader.sweep.screen import _scores

    metrics = {"sharpe": np.array([1.0, 2.0, np.nan, 3.0]), "max_drawdown": np.array([-0.1, -0.1, 0.0, -0.5]),
               "exposure": np.array([0.5, 0.5, 0.0, 0.5]), "trades": np.array([20, 5, 0, 20]),
               "annual_return": np.array([0.1, 0.1, 0.0, 0.1])}
    scores = _scores(metrics, "sharpe", 0.3, 10)  # as objective.score: min trades, drawdown cap, flat = 0
    assert list(scores) == [1.0, -np.inf, -np.inf, -np.inf]
    assert list(_scores(metrics, "sharpe", None, 0)) == [1.0, 2.0, 0.0, 3.0]
