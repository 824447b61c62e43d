"""ForecastSettings is the one source of forecast defaults and limits, checked once when the
settings are built, wherever they come from (issue 21, "One core")."""
from __future__ import annotations

import pytest

from kronos_trader.backtest import PolicyStrategy, frame_feed
from kronos_trader.backtest.compat import bt
from kronos_trader.backtest.indicator import FORECAST_PARAMS, KronosIndicator
from kronos_trader.config import MAX_SAMPLE_COUNT, ConfigError, ForecastSettings, Settings, forecast_settings
from kronos_trader.forecasting.models import load_model
from kronos_trader.forecasting.service import ForecastService
from strategies.directional import Directional


def test_the_indicator_params_default_to_the_forecast_settings():
    params = dict(KronosIndicator.params._gettuple())
    defaults = ForecastSettings()
    assert {name: params[name] for name in FORECAST_PARAMS} == {name: getattr(defaults, name) for name in FORECAST_PARAMS}
    strategy = dict(PolicyStrategy.params._gettuple())  # the strategy's copies are the indicator's
    assert {name: strategy[name] for name in FORECAST_PARAMS} == {name: params[name] for name in FORECAST_PARAMS}


def test_the_sample_cap_holds_outside_a_config_file():
    """The cap of 256 paths was checked on a whole config only: ForecastSettings(sample_count=10**6)
    (the indicator's params, an MCP or API override) was accepted and the process ran out of memory."""
    with pytest.raises(ValueError):
        ForecastSettings(sample_count=MAX_SAMPLE_COUNT + 1)
    with pytest.raises(ConfigError) as err:
        forecast_settings({"sample_count": 10**6, "lookback": 4}, "KronosIndicator")
    message = str(err.value)
    assert "\n" not in message and "KronosIndicator.sample_count: Input should be less than or equal to 256" in message
    assert "KronosIndicator.lookback: Input should be greater than or equal to 8" in message


def test_an_indicator_with_a_bad_setting_is_one_line(sample_candles, tiny_model_dir):
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(frame_feed(sample_candles.iloc[:40], "BTC/USDT"))
    cerebro.addstrategy(PolicyStrategy, policy=Directional(), model=tiny_model_dir, lookback=16, horizon=4,
                        sample_count=10**6)
    with pytest.raises(ConfigError, match=r"^KronosIndicator\.sample_count: Input should be less than or equal"):
        cerebro.run()


def test_service_overrides_are_checked_in_one_line(tiny_model_dir):
    """A request's overrides (web, MCP) were re-validated as a whole ForecastSettings: a bad one
    was pydantic's multi-line report, and sample_count beyond the cap was accepted."""
    model = load_model(tiny_model_dir, "cpu")
    with pytest.raises(ConfigError, match=r"^forecast\.sample_count: Input should be less than or equal to 256"):
        ForecastService.from_settings(Settings(), None, False, model, sample_count=10**6)
    with pytest.raises(ConfigError, match=r"^forecast\.top_p: Input should be less than or equal to 1 \(got 2\.0\)$"):
        ForecastService.from_settings(Settings(), None, False, model, top_p=2.0)
    service = ForecastService.from_settings(Settings(), None, False, model, sample_count=MAX_SAMPLE_COUNT, lookback=32)
    assert service.settings.sample_count == MAX_SAMPLE_COUNT and service.settings.lookback == 32
