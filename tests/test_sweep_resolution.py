"""Issue 25.5: sweep grids that mostly try the same thing, trials with a handful of trades
winning, and a flood of raw UserWarnings."""
from __future__ import annotations

import math
import warnings

import pytest
from optuna.trial import TrialState

from kronos_trader.config import parse_settings
from kronos_trader.sweep import SweepData, build_space, run_sweep
from kronos_trader.sweep.objective import score


def _settings(fast_settings, samples=8, **sweep):
    raw = fast_settings.model_dump(mode="json")
    raw["forecast"]["sample_count"] = samples
    raw["sweep"] = {"sampler": "grid", **sweep}
    return parse_settings(raw)


README_GRID = {"strategy.params.long_threshold": {"low": 0.55, "high": 0.75, "step": 0.05}}


def test_grid_points_that_decide_alike_run_once_and_a_note_says_why(fast_settings):
    settings = _settings(fast_settings, params={**README_GRID, "risk.stop_loss": [0.02, 0.05]})
    space = build_space(settings, settings.sweep)
    thresholds = sorted({p["strategy.params.long_threshold"] for p in space.grid})
    # with 8 paths P(up) is k/8: 0.55 and 0.60 lie in (0.5, 0.625), 0.65 and 0.70 in (0.625, 0.75)
    assert thresholds == [0.55, 0.65, 0.75] and len(space.grid) == 6
    assert len(space.notes) == 1
    note = space.notes[0]
    assert "long_threshold" in note and "1/8" in note and "5 values" in note and "3 distinct" in note
    # the kernel P(up) is continuous: nothing is merged
    raw = settings.model_dump(mode="json")
    raw["forecast"]["p_up"] = "kernel"
    kernel = parse_settings(raw)
    assert len(build_space(kernel, kernel.sweep).grid) == 10


def test_tpe_threshold_ranges_step_through_the_p_up_resolution(fast_settings):
    settings = _settings(fast_settings, sampler="tpe", params=README_GRID)
    space = build_space(settings, settings.sweep)
    dist = space.distributions["strategy.params.long_threshold"]
    assert dist.step == pytest.approx(1 / 16)   # the P(up) values k/8 and the gaps between them
    assert dist.low == pytest.approx(0.5625) and dist.high == pytest.approx(0.75)
    assert space.notes


def test_a_trial_with_too_few_trades_cannot_win():
    metrics = {"sharpe": 9.0, "max_drawdown": -0.01, "exposure": 0.1, "trades": 4}
    assert score(metrics, "sharpe", min_trades=10) == -math.inf
    assert score({**metrics, "trades": 10}, "sharpe", min_trades=10) == 9.0
    assert parse_settings({}).sweep.min_trades == 10


def test_sweep_prints_no_raw_warnings(fast_settings, sample_candles):
    settings = _settings(fast_settings, params=README_GRID, min_trades=0)
    data = SweepData({"BTC/USDT": sample_candles.iloc[:150]}, "1h")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = run_sweep(settings, data, progress=False)
    assert not [w for w in caught if issubclass(w.category, UserWarning)], [str(w.message) for w in caught]
    assert len(summary.study.get_trials(states=(TrialState.COMPLETE,))) == 3
    assert summary.notes and "3 distinct" in summary.notes[0]


def test_trials_drop_the_resolution_warning_by_its_class_not_its_text():
    """trial_warnings dropped any warning whose text mentioned "neighbouring values of P(up)" (a
    policy's own warning quoting it was lost) and would keep the resolution warning once its
    wording changed; it has a class of its own now."""
    from kronos_trader.forecasting.probability import PUpResolutionWarning
    from kronos_trader.sweep.trial import trial_warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.warn("Directional: long_threshold 0.6 falls between 0.5 and 0.625", PUpResolutionWarning)
        warnings.warn("MyPolicy: exit at neighbouring values of P(up) is coarse", UserWarning)
        warnings.warn("a deprecation", DeprecationWarning)
    assert trial_warnings(caught) == ["MyPolicy: exit at neighbouring values of P(up) is coarse"]
