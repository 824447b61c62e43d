"""Walk-forward fine-tuning: fold models trained only on bars before their fold, stored once."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from factories import make_candles
from kronos_trader.config import FinetuneSettings, ForecastSettings
from kronos_trader.forecasting.finetune import FinetunedForecasts, fine_tune_fold, parse_refit_every, plan_folds
from kronos_trader.forecasting.models import load_model
from kronos_trader.forecasting.service import ForecastService

LOOKBACK, HORIZON = 32, 4


def _settings(tmp_path, **kw) -> FinetuneSettings:
    return FinetuneSettings(**{"train_bars": 120, "epochs": 1, "batch_size": 8, "stride": 8, "lr": 1e-4,
                               "cache_dir": tmp_path / "folds", **kw})


def _service(tiny_model_dir) -> ForecastService:
    settings = ForecastSettings(lookback=LOOKBACK, horizon=HORIZON, sample_count=4, seed=3)
    return ForecastService(load_model(tiny_model_dir, "cpu"), settings, None, progress=False)


def test_refit_every_parses_bars_and_periods_and_refuses_garbage():
    assert parse_refit_every("500") == 500 and parse_refit_every(24) == 24
    assert parse_refit_every("30D") == pd.Timedelta(days=30)
    for bad in ("monthly-ish", "0", "-3D"):
        with pytest.raises(ValueError, match="refit-every"):
            parse_refit_every(bad)


def test_folds_by_bars_and_by_period_train_strictly_before_the_fold():
    index = pd.date_range("2024-01-01", periods=400, freq="h")
    folds = plan_folds(index, 150, 399, 100, 120, LOOKBACK, HORIZON)
    assert [(f.start, f.end, f.train_start) for f in folds] == [(150, 250, 30), (250, 350, 130), (350, 400, 230)]
    assert all(f.train_end == f.start for f in folds)
    daily = plan_folds(index, 150, 399, pd.Timedelta("1D"), 120, LOOKBACK, HORIZON)
    assert all(index[f.start].hour == 0 for f in daily[1:]) and daily[0].start == 150
    with pytest.raises(ValueError, match="too short"):
        plan_folds(index, 150, 399, 100, 20, LOOKBACK, HORIZON)  # shorter than lookback + horizon
    with pytest.raises(ValueError, match="only 100 bars before"):
        plan_folds(index, 100, 399, 100, 120, LOOKBACK, HORIZON)  # the training span would reach before the data


def test_fold_models_are_stored_once_and_key_the_forecasts(tiny_model_dir, tmp_path):
    candles = make_candles(330, seed=1)
    s = _settings(tmp_path)
    folds = plan_folds(candles.index, 150, 329, 90, s.train_bars, LOOKBACK, HORIZON)
    base = _service(tiny_model_dir)
    ft = FinetunedForecasts(base, candles, folds, s)
    positions = list(range(150, 326, 5))
    first = ft.forecast_at(candles, positions, "X", "1h")
    reports = ft.summary()
    assert [r["trained"] for r in reports] == [True, True]
    assert len({r["model_id"] for r in reports} | {base.model.model_id}) == 3  # each fold its own weights id
    stored = sorted(p.name for p in (tmp_path / "folds").iterdir())
    assert len(stored) == 2 and all((tmp_path / "folds" / d / "model" / "model.safetensors").is_file()
                                    or any((tmp_path / "folds" / d / "model").glob("*.safetensors")) for d in stored)
    card = json.loads((tmp_path / "folds" / stored[0] / "fold.json").read_text())
    assert pd.Timestamp(card["last"]) < candles.index[150] or pd.Timestamp(card["last"]) < candles.index[240]
    zero_shot = base.forecast_at(candles, positions, "X", "1h")
    assert any(not np.allclose(first[p].close_paths, zero_shot[p].close_paths) for p in positions)
    # a rerun reads the stored fold models back: nothing is trained, forecasts are identical
    again = FinetunedForecasts(_service(tiny_model_dir), candles, folds, s)
    second = again.forecast_at(candles, positions, "X", "1h")
    assert [r["trained"] for r in again.summary()] == [False, False]
    for p in positions:
        np.testing.assert_array_equal(first[p].close_paths, second[p].close_paths)


def test_data_after_a_cut_changes_no_fold_trained_before_it(tiny_model_dir, tmp_path):
    candles = make_candles(330, seed=2)
    s = _settings(tmp_path)
    folds = plan_folds(candles.index, 150, 329, 90, s.train_bars, LOOKBACK, HORIZON)
    cut = 245  # inside fold 0 (150..239 decide with fold 0; fold 1 starts at 240)
    changed = candles.copy()
    changed.iloc[cut + 1:, :4] *= 1.7
    before = [p for p in range(150, 326, 5) if p <= cut]
    runs = []
    for frame in (candles, changed):
        ft = FinetunedForecasts(_service(tiny_model_dir), frame, folds, s)
        runs.append((ft.forecast_at(frame, before, "X", "1h"), ft.summary()))
    assert [r["model_id"] for r in runs[0][1]] == [r["model_id"] for r in runs[1][1]]
    for p in before:
        np.testing.assert_array_equal(runs[0][0][p].close_paths, runs[1][0][p].close_paths)


def test_a_diverging_fold_falls_back_and_says_so(tiny_model_dir, tmp_path):
    candles = make_candles(330, seed=3)
    s = _settings(tmp_path, lr=1e30, batch_size=4, stride=4)
    folds = plan_folds(candles.index, 150, 329, 90, s.train_bars, LOOKBACK, HORIZON)
    base = _service(tiny_model_dir)
    ft = FinetunedForecasts(base, candles, folds, s)
    out = ft.forecast_at(candles, [150, 250], "X", "1h")
    reports = ft.summary()
    assert all(r["fallback"] for r in reports), reports
    assert "loss became" in reports[0]["fallback"] and "base model" in reports[0]["fallback"]
    assert reports[1]["model_id"] == base.model.model_id
    np.testing.assert_array_equal(out[150].close_paths, base.forecast_at(candles, [150], "X", "1h")[150].close_paths)
    assert not list((tmp_path / "folds").glob("[0-9a-f]*"))  # nothing half-written is kept


def test_fine_tune_fold_tokenizer_and_predictor(tiny_model_dir, tmp_path):
    candles = make_candles(130, seed=4)
    base = load_model(tiny_model_dir, "cpu")
    directory, trained = fine_tune_fold(base, candles.iloc[:120], _settings(tmp_path, stage="both"), LOOKBACK, HORIZON)
    assert trained and (directory / "tokenizer").is_dir() and (directory / "kronos.json").is_file()
    assert fine_tune_fold(base, candles.iloc[:120], _settings(tmp_path, stage="both"), LOOKBACK, HORIZON) == \
        (directory, False)
