"""KronosIndicator and PolicyStrategy in a Backtrader user's own setup, in real Backtrader:
plotting to a PNG (headless), optstrategy on two processes reusing stored forecasts, daily +
resampled weekly feeds, the user's sizer, non-overlapping feeds, P(up) resolution."""
from __future__ import annotations

import os
import pickle
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import func, select

from kronos_trader.backtest import ForecastUsage, FractionalCommission, PolicyStrategy, frame_feed
from kronos_trader.backtest.compat import bt
from kronos_trader.backtest.services import service_for
from kronos_trader.config import ForecastSettings
from kronos_trader.data import SAMPLE_DATA_PATH, load_candles
from kronos_trader.forecasting.probability import kernel_p_up, p_up_gap, threshold_warnings
from kronos_trader.store import Forecast, open_store
from strategies.directional import Directional

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"lookback": 16, "horizon": 4, "sample_count": 4}


@pytest.fixture(scope="module")
def daily() -> pd.DataFrame:
    """About 200 daily bars from the bundled (synthetic) hourly sample."""
    hourly = load_candles(SAMPLE_DATA_PATH)
    agg = {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum", "amount": "sum"}
    return hourly.resample("1D").agg(agg).dropna().iloc[:200]


def _cerebro(**kwargs) -> bt.Cerebro:
    cerebro = bt.Cerebro(stdstats=False, **kwargs)
    cerebro.broker.setcash(10_000)
    cerebro.broker.addcommissioninfo(FractionalCommission(commission=0.001))
    return cerebro


def _daily_feed(frame: pd.DataFrame, name: str = "D"):
    return bt.feeds.PandasData(dataname=frame, name=name, timeframe=bt.TimeFrame.Days, openinterest=None)


# --- plotting -------------------------------------------------------------------------------
PLOT_SCRIPT = """
import sys
import backtrader as bt
from kronos_trader.backtest import KronosIndicator, PolicyStrategy, frame_feed   # no backend set up by hand
from kronos_trader.data import SAMPLE_DATA_PATH, load_candles
from strategies.directional import Directional
import matplotlib

class Mine(bt.Strategy):
    def __init__(self):
        self.kronos = KronosIndicator(self.data, model=sys.argv[1], lookback=16, horizon=4, sample_count=4)

    def next(self):
        if not self.position and self.kronos.p_up[0] > 0.5:
            self.buy(size=0.01)
        elif self.position and self.kronos.p_up[0] < 0.5:
            self.close()

cerebro = bt.Cerebro()
cerebro.adddata(frame_feed(load_candles(SAMPLE_DATA_PATH).iloc[:80], "BTC/USDT"))
cerebro.addstrategy(Mine)
cerebro.addstrategy(PolicyStrategy, policy=Directional(long_threshold=0.5), model=sys.argv[1], lookback=16,
                    horizon=4, sample_count=4)
cerebro.run()
figures = cerebro.plot(iplot=False)
fills = 0
for (figure,) in figures:
    for ax in figure.axes:
        fills += sum(type(c).__name__ in ("PolyCollection", "FillBetweenPolyCollection") for c in ax.collections)
figures[0][0].savefig(sys.argv[2], dpi=80)
print(matplotlib.get_backend().lower(), len(figures), fills)
"""


def test_cerebro_plot_to_png_without_a_display(tiny_model_dir, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "MPLBACKEND")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    png = tmp_path / "run.png"
    out = subprocess.run([sys.executable, "-c", PLOT_SCRIPT, tiny_model_dir, str(png)], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    backend, n_figures, fills = out.stdout.split()[-3:]
    assert backend == "agg" and int(n_figures) == 2
    assert int(fills) >= 4, "P(up) above/below 0.5 is shaded on each Kronos subplot"
    assert png.stat().st_size > 20_000


def test_backend_chosen_by_the_user_is_kept(tmp_path):
    env = {**os.environ, "MPLBACKEND": "svg", "PYTHONPATH": str(ROOT)}
    code = "import kronos_trader.backtest, matplotlib; print(matplotlib.get_backend().lower())"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.stdout.split()[-1] == "svg", out.stderr[-2000:]


# --- optstrategy on several processes -------------------------------------------------------
def _sweep(model: str, frame: pd.DataFrame, db: str, optreturn: bool = True, **extra):
    cerebro = _cerebro(maxcpus=2, optreturn=optreturn)
    cerebro.adddata(frame_feed(frame, "BTC/USDT"))
    cerebro.optstrategy(PolicyStrategy, policy=[Directional(long_threshold=t) for t in (0.5, 0.6, 0.7)],
                        model=model, db=db, **SMALL, **extra)
    cerebro.addanalyzer(ForecastUsage, _name="usage")
    cerebro.addanalyzer(bt.analyzers.TradeAnalyzer, _name="trades")
    return [run[0] for run in cerebro.run()]


def test_optstrategy_on_two_processes_reuses_stored_forecasts(tiny_model_dir, sample_candles, tmp_path):
    frame = sample_candles.iloc[:90]
    windows = len(frame) - SMALL["lookback"] + 1
    db = f"sqlite:///{tmp_path / 'sweep.db'}"
    cerebro = _cerebro()  # one ordinary run fills the store
    cerebro.adddata(frame_feed(frame, "BTC/USDT"))
    cerebro.addstrategy(PolicyStrategy, policy=Directional(long_threshold=0.5), model=tiny_model_dir, db=db, **SMALL)
    first = cerebro.run()[0]
    assert first.kronos[first.data].computed == windows

    results = _sweep(tiny_model_dir, frame, db)
    assert [r.params.policy.long_threshold for r in results] == [0.5, 0.6, 0.7]
    for r in results:
        assert r.analyzers.usage.get_analysis() == {"computed": 0, "reused": windows}
    with open_store(db).session(readonly=True) as s:
        assert s.scalar(select(func.count()).select_from(Forecast)) == windows


def test_optstrategy_computes_each_window_once_across_processes(tiny_model_dir, sample_candles, tmp_path):
    frame = sample_candles.iloc[:70]
    windows = len(frame) - SMALL["lookback"] + 1
    results = _sweep(tiny_model_dir, frame, f"sqlite:///{tmp_path / 'fresh.db'}")
    usage = [r.analyzers.usage.get_analysis() for r in results]
    assert sum(u["computed"] for u in usage) == windows, usage  # one process computed, the others read
    assert all(u["computed"] + u["reused"] == windows for u in usage)


def test_optstrategy_returns_whole_strategies_and_accepts_a_service(tiny_model_dir, sample_candles, tmp_path):
    """optreturn=False pickles strategies (indicators, forecasts) back; a ForecastService
    passed in travels as its recipe and is rebuilt in each process."""
    frame = sample_candles.iloc[:60]
    db = f"sqlite:///{tmp_path / 'svc.db'}"
    service = service_for(tiny_model_dir, ForecastSettings(**SMALL), db)
    results = _sweep(tiny_model_dir, frame, db, optreturn=False, service=service)
    assert len(results) == 3
    for strategy in results:
        indicator = strategy.kronos[strategy.datas[0]]
        assert len(indicator.forecasts) == len(frame) - 15 and strategy.journal.signals
        assert strategy.p.service is service  # unpickled here: this process's own service again
    assert pickle.loads(pickle.dumps(service)) is service


# --- several feeds and timeframes -------------------------------------------------------------
class Watcher(PolicyStrategy):
    """PolicyStrategy that also notes how many forecasts were ready at each feed's first bar."""

    def start(self):
        super().start()
        self.ready_at_first_bar = {}
        self.weekly_bars = []

    def prenext(self):
        self._note()
        super().prenext()

    def next(self):
        self._note()
        super().next()

    def _note(self):
        for data, indicator in self.kronos.items():
            if len(data) and data._name not in self.ready_at_first_bar:
                self.ready_at_first_bar[data._name] = len(indicator.forecasts)
        weekly = self.datas[1]
        if len(weekly) and (not self.weekly_bars or self.weekly_bars[-1][0] != weekly.datetime[0]):
            self.weekly_bars.append((weekly.datetime[0], weekly.open[0], weekly.high[0], weekly.low[0],
                                     weekly.close[0], weekly.volume[0]))


def test_daily_and_resampled_weekly_feeds_each_get_their_forecasts(tiny_model_dir, daily):
    service = service_for(tiny_model_dir, ForecastSettings(**SMALL))
    cerebro = _cerebro()
    feed = _daily_feed(daily)
    cerebro.adddata(feed)
    cerebro.resampledata(feed, timeframe=bt.TimeFrame.Weeks, name="W")
    cerebro.addstrategy(Watcher, policy=Directional(long_threshold=0.5), service=service)
    strategy = cerebro.run()[0]
    d_ind, w_ind = strategy.kronos.values()
    n_weeks = len(strategy.weekly_bars)
    assert n_weeks >= 28
    assert len(d_ind.forecasts) == len(daily) - 15 and len(w_ind.forecasts) == n_weeks - 15
    # known up front: every window was forecast in batches at the feed's first bar
    assert strategy.ready_at_first_bar == {"D": len(daily) - 15, "W": n_weeks - 15}
    # each weekly forecast equals one made from the weekly bars delivered up to it
    weeks = pd.DataFrame([row[1:] for row in strategy.weekly_bars], columns=["open", "high", "low", "close", "volume"],
                         index=pd.DatetimeIndex([bt.num2date(row[0]) for row in strategy.weekly_bars]))
    expected = service.forecast_at(weeks, list(range(15, n_weeks)), "W", "1w")
    by_open = {f.bar_open: f for f in w_ind.forecasts.values()}
    for position, forecast in expected.items():
        assert by_open[weeks.index[position]].prob_up() == pytest.approx(forecast.prob_up())
        assert by_open[weeks.index[position]].close() == pytest.approx(forecast.close())
    # the daily feed trades from its own 16th bar, not after 16 weeks
    first_signal = {}
    for signal in strategy.journal.signals:
        first_signal.setdefault(signal.symbol, signal.bar_time)
    assert first_signal["D"] == daily.index[15] + pd.Timedelta("1D")
    assert first_signal["W"] > daily.index[15 * 7]
    assert sum(s.symbol == "D" for s in strategy.journal.signals) == len(daily) - 15


def test_feeds_without_common_dates_fail_fast(tiny_model_dir, daily):
    service = service_for(tiny_model_dir, ForecastSettings(**SMALL))
    before = service.computed + service.reused
    late = daily.iloc[100:].copy()
    late.index = late.index + pd.Timedelta(days=400)
    for runonce, resample in ((True, False), (False, True)):
        cerebro = _cerebro(runonce=runonce)
        cerebro.adddata(_daily_feed(daily.iloc[:100], "EARLY"))
        late_feed = _daily_feed(late, "LATE")
        if resample:
            cerebro.resampledata(late_feed, timeframe=bt.TimeFrame.Weeks, name="LATE-W")
        else:
            cerebro.adddata(late_feed)
        cerebro.addstrategy(PolicyStrategy, policy=Directional(), service=service)
        with pytest.raises(ValueError, match=r"share no dates.*EARLY 2023-01-01 00:00\.\.2023-04-10"):
            cerebro.run()
    assert service.computed + service.reused == before, "nothing was forecast"


# --- a user's sizer ---------------------------------------------------------------------------
def test_policy_strategy_honours_the_users_sizer(tiny_model_dir, daily):
    service = service_for(tiny_model_dir, ForecastSettings(**SMALL))
    runs = {}
    for sizer in (None, 0.25):
        cerebro = _cerebro()
        cerebro.adddata(_daily_feed(daily))
        if sizer:
            cerebro.addsizer(bt.sizers.FixedSize, stake=sizer)
        cerebro.addstrategy(PolicyStrategy, policy=Directional(long_threshold=0.5, short_threshold=0.5,
                                                               allow_short=True), service=service)
        runs[sizer] = cerebro.run()[0]
    sized = runs[0.25]
    entries = [o for o in sized.journal.orders if o.reason and not o.reason.startswith("flat")]
    assert entries and sized.journal.trades
    position = 0.0
    for order in sized.journal.orders:  # every order is an entry of 0.25 or closes the whole position
        signed = order.amount if order.side == "buy" else -order.amount
        assert signed == pytest.approx(0.25 if order.side == "buy" else -0.25) or \
            position + signed == pytest.approx(0.0), (position, order)
        position += signed
    assert all(abs(t["size"]) == pytest.approx(0.25) for t in sized.journal.trades)
    # without a sizer the policy's own sizing (95% of equity) decides the units
    first = runs[None].journal.orders[0]
    close = daily["close"].loc[first.bar_time - pd.Timedelta("1D")]
    assert first.amount == pytest.approx(0.95 * 10_000 / close, rel=1e-6)


# --- P(up) resolution -------------------------------------------------------------------------
def test_kernel_p_up_is_smooth_and_agrees_with_the_empirical_share():
    rng = np.random.default_rng(0)
    last = 100.0
    paths = last * (1 + rng.normal(0.002, 0.01, size=(8, 5)))
    smooth = kernel_p_up(paths, last)
    empirical = (paths > last).mean(axis=0)
    assert np.all((smooth > 0) & (smooth < 1)) and np.abs(smooth - empirical).max() < 0.3
    assert not np.allclose(smooth * 8, np.round(smooth * 8)), "not restricted to steps of 1/8"
    assert kernel_p_up(np.full((8, 3), 101.0), last).tolist() == [1.0, 1.0, 1.0]  # nothing to smooth
    many = last * (1 + rng.normal(0.001, 0.01, size=(20_000, 1)))
    assert kernel_p_up(many, last)[0] == pytest.approx((many > last).mean(), abs=0.01)


def test_p_up_setting_kernel_reads_the_same_stored_paths(tiny_model_dir, sample_candles, tmp_path):
    db = f"sqlite:///{tmp_path / 'p.db'}"
    frame = sample_candles.iloc[:40]
    positions = list(range(15, 40))
    empirical = service_for(tiny_model_dir, ForecastSettings(**SMALL), db).forecast_at(frame, positions, "X", "1h")
    kernel_service = service_for(tiny_model_dir, ForecastSettings(**SMALL, p_up="kernel"), db)
    kernel = kernel_service.forecast_at(frame, positions, "X", "1h")
    assert kernel_service.computed == 0, "the P(up) estimator is applied to stored paths"
    values = np.array([f.prob_up() for f in kernel.values()])
    steps = np.array([f.prob_up() for f in empirical.values()]) * 4
    assert np.allclose(steps, np.round(steps)) and not np.allclose(values * 4, np.round(values * 4))
    for p in positions:
        assert kernel[p].prob_up() == pytest.approx(kernel_p_up(empirical[p].close_paths, empirical[p].last_close)[-1])


def test_thresholds_between_p_up_values_warn():
    assert p_up_gap(0.6, 8) == (0.5, 0.625) and p_up_gap(0.5, 8) is None and p_up_gap(0.6, 8, "kernel") is None
    assert p_up_gap(0.3, 10) is None  # 0.3 * 10 is 3 up to rounding
    lines = threshold_warnings(Directional(long_threshold=0.6, short_threshold=0.5).p_up_thresholds(), 8)
    assert len(lines) == 1 and lines[0].startswith("long_threshold 0.6 falls between 0.5 and 0.625")
    assert Directional(signal="return", long_threshold=0.01, short_threshold=-0.01).p_up_thresholds() == {}


def test_policy_strategy_warns_about_its_thresholds(tiny_model_dir, sample_candles):
    def run(threshold: float, p_up: str) -> list[str]:
        cerebro = _cerebro()
        cerebro.adddata(frame_feed(sample_candles.iloc[:30], "BTC/USDT"))
        cerebro.addstrategy(PolicyStrategy, policy=Directional(long_threshold=threshold), model=tiny_model_dir,
                            p_up=p_up, **SMALL)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            cerebro.run()
        return [str(w.message) for w in caught if "P(up)" in str(w.message)]

    assert run(0.6, "empirical") == ["Directional: long_threshold 0.6 falls between 0.5 and 0.75, neighbouring "
                                     "values of P(up) from 4 sample paths: every threshold in between decides the "
                                     "same (use more samples or forecast.p_up: kernel)"]
    assert run(0.5, "empirical") == [] and run(0.6, "kernel") == []


def test_indicator_dict_split_by_optstrategy_gets_a_clear_message(tiny_model_dir, sample_candles):
    cerebro = _cerebro(maxcpus=1)
    cerebro.adddata(frame_feed(sample_candles.iloc[:30], "BTC/USDT"))
    cerebro.optstrategy(PolicyStrategy, policy=Directional(), indicator={"model": tiny_model_dir, "lookback": 16})
    with pytest.raises(ValueError, match="sweeps over the keys of a dict"):
        cerebro.run()


# --- the README's Backtrader examples, as written -------------------------------------------------
def _readme_blocks(section: str) -> list[str]:
    text = (ROOT / "README.md").read_text()
    start = text.index(section)
    end = text.find("\n## ", start)
    part = text[start:end if end > 0 else None]
    return [block.split("```")[0] for block in part.split("```python\n")[1:]]


@pytest.mark.slow
def test_readme_backtrader_examples_run(tmp_path):
    blocks = _readme_blocks("### In your own Cerebro")
    assert len(blocks) >= 3
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "MPLBACKEND")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    outputs = []
    for number, block in enumerate(blocks):  # each block runs on its own (issue 25: they needed block 1)
        script = tmp_path / f"readme_example_{number}.py"
        script.write_text(block)
        out = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=1200)
        assert out.returncode == 0, out.stderr[-4000:]
        outputs.append(out.stdout)
    assert "'sharperatio': None" not in outputs[2] and "sharperatio" in outputs[2]
    from PIL import Image

    with Image.open(tmp_path / "kronos_cerebro.png") as image:
        assert image.size[0] > 1000 and image.size[1] > 700
