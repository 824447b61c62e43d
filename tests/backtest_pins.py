"""Pinned backtests: what a few representative runs produce, fingerprinted, so a change to
the backtest engine is proven behaviour-preserving (test_backtest_pins.py).

The runs trade on fixed forecasts, not on the model's: each window is forecast once by the
tiny test model (which stores its row), then the stored payload is replaced by paths drawn
from integers seeded by the window's end and symbol (exact arithmetic), so the pins do not
depend on the model's floating-point numerics on a given machine. Everything downstream
(the strategy, Backtrader, the metrics, the report's summary, the stored records) is then
compared exactly.

Regenerate the pins (only when a change of results is intended, and say so in the commit):
    python tests/backtest_pins.py --write
"""
from __future__ import annotations

import hashlib
import json
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

PINS_PATH = Path(__file__).parent / "data" / "backtest_pins.json"
BARS = 260
SYMBOLS = ("AAA/USDT", "BBB/USDT", "CCC/USDT")
VOLATILE = {"id", "run_id", "created_at", "updated_at", "order_id"}


def pin_settings(model_dir: str, db_url: str, **overrides):
    """The shipped demo config (gate, stops, costs, Directional) on the tiny model, with
    dotted `overrides` (None removes a value, e.g. the gate)."""
    import yaml

    from kronos_trader.config import DEMO_CONFIG_PATH, parse_settings

    raw = yaml.safe_load(DEMO_CONFIG_PATH.read_text())
    for key, value in {"model.name": model_dir, "model.device": "cpu", "database.url": db_url,
                       "forecast.lookback": 32, "forecast.horizon": 4, "forecast.sample_count": 8,
                       "forecast.batch_windows": 512, **overrides}.items():
        *parents, leaf = key.split(".")
        section = raw
        for part in parents:
            section = section.setdefault(part, {})
        section[leaf] = value
    return parse_settings(raw)


def pin_candles() -> dict[str, pd.DataFrame]:
    """The bundled sample's first bars, and two other stretches of it on the same stamps."""
    from kronos_trader.data import SAMPLE_DATA_PATH, load_candles

    sample = load_candles(SAMPLE_DATA_PATH)
    frames = {}
    for symbol, start in zip(SYMBOLS, (0, 300, 600)):
        frame = sample.iloc[start:start + BARS].copy()
        frame.index = sample.index[:BARS]
        frames[symbol] = frame
    return frames


def fix_forecasts(store) -> None:
    """Replace every stored forecast by integer-seeded paths (see the module's docstring)."""
    from sqlalchemy import select, update

    from kronos_trader.forecasting.values import WindowForecast
    from kronos_trader.store import Forecast

    with store.session() as s:
        for row in s.scalars(select(Forecast)).all():
            f = WindowForecast.from_payload(row.window_end, row.payload)
            samples, horizon = np.asarray(row.payload["close_paths"]).shape
            end = int(pd.Timestamp(row.window_end).value // 1_000_000_000)
            rng = np.random.default_rng([end, zlib.crc32(row.symbol.encode())])
            steps = np.cumsum(rng.integers(-4, 5, size=(samples, horizon)), axis=1)
            paths = f.last_close * (1.0 + 0.002 * steps)
            flat = f.__class__(**{**f.__dict__, "mean": np.repeat(paths.mean(axis=0)[:, None], 6, axis=1)})
            s.execute(update(Forecast).where(Forecast.id == row.id)
                      .values(payload=flat.with_close_paths(paths).to_payload()))


def _digest(frame: pd.DataFrame) -> str:
    frame = frame.drop(columns=[c for c in frame.columns if c in VOLATILE]).reset_index(drop=True)
    return hashlib.sha256(frame.to_csv(index=False).encode()).hexdigest()[:20]


def _relative_refs(frame: pd.DataFrame, base: int) -> pd.DataFrame:
    if "ref" in frame.columns:
        frame = frame.assign(ref=frame["ref"] - base)
    return frame


def fingerprint(result, store, scrub: str) -> dict:
    """The run's outputs: equity, trades, journal, summary.json and the stored records."""
    from kronos_trader.backtest.report import summary_json

    summary = json.loads(summary_json(result))
    for key in ("run_id", "settings"):
        summary.pop(key, None)
    summary = json.loads(json.dumps(summary).replace(scrub, "<tmp>"))
    run_id = result.run_id
    orders = store.load_orders(run_id)
    orders["client_order_id"] = orders["client_order_id"].str.replace(run_id[:12], "<run>")
    # Backtrader numbers orders from a process-wide counter: pin the refs relative to the run's first
    base = min((o.ref for o in result.journal.orders if o.ref is not None), default=0)
    orders["client_order_id"] = orders["client_order_id"].str.replace(
        r"-(\d+)$", lambda m: f"-{int(m.group(1)) - base}", regex=True)
    stored = {"signals": store.load_signals(run_id), "orders": orders.sort_values("client_order_id"),
              "fills": store.load_fills(run_id).sort_values(["ts", "price"]), "trades": store.load_trades(run_id),
              "equity": store.load_equity(run_id)}
    run = store.get_run(run_id)
    return {
        "equity": _digest(result.equity.reset_index()),
        "trades": _digest(result.trades),
        "journal": {name: _digest(_relative_refs(pd.DataFrame(rows), base)) for name, rows in vars(result.journal).items()},
        "forecasts": _digest(pd.DataFrame([f.to_payload() for f in result.forecasts.values()]).astype(str)),
        "counts": {"computed": result.forecasts_computed, "reused": result.forecasts_reused,
                   "signals": len(result.journal.signals), "orders": len(result.journal.orders),
                   "trades": len(result.trades)},
        "final_equity": float(result.equity["equity"].iloc[-1]),
        "summary": summary,
        "stored": {name: _digest(frame) for name, frame in stored.items()},
        "stored_summary": hashlib.sha256(json.dumps(run.summary, sort_keys=True, default=str).encode()
                                         ).hexdigest()[:20],
    }


def run_pins(model_dir: str, workdir: str) -> dict[str, dict]:
    """Every pinned scenario's fingerprint (three single-symbol runs, two portfolio runs)."""
    from kronos_trader.backtest.runner import run_backtest
    from kronos_trader.forecasting.service import ForecastService
    from kronos_trader.store import open_store

    db_url = f"sqlite:///{workdir}/pins.db"
    store = open_store(db_url)
    frames = pin_candles()
    base = pin_settings(model_dir, db_url)
    service = ForecastService.from_settings(base, store, progress=False)
    for symbol, frame in frames.items():
        service.forecast_series(frame, symbol, "1h")
    fix_forecasts(store)
    directional = {"strategy.gate": None, "strategy.params.allow_short": True}
    scenarios = {
        "default": ({}, "AAA/USDT"),
        "stops": ({**directional, "risk.stop_loss": 0.01, "risk.take_profit": 0.015, "costs.commission": 0.0,
                   "costs.slippage": 0.0}, "AAA/USDT"),
        "costs": ({**directional, "risk.stop_loss": None, "risk.take_profit": None, "costs.commission": 0.004,
                   "costs.slippage": 0.002}, "BBB/USDT"),
        "portfolio_directional": (directional, None),
        "portfolio_topk": ({"strategy.name": "strategies.cross_sectional:TopK", "strategy.gate": None,
                            "strategy.params": {"k": 1, "every": 4}}, None),
    }
    out = {}
    for name, (overrides, symbol) in scenarios.items():
        settings = pin_settings(model_dir, db_url, **overrides)
        candles = frames[symbol] if symbol else frames
        result = run_backtest(settings, candles, symbol or "", "1h", store, progress=False)
        out[name] = fingerprint(result, store, workdir)
    return out


def main() -> None:
    sys.path[:0] = [str(Path(__file__).parents[1]), str(Path(__file__).parent)]  # this checkout's packages
    from factories import save_tiny_pair

    with tempfile.TemporaryDirectory() as tmp:
        pins = run_pins(str(save_tiny_pair(Path(tmp) / "pair", max_context=128)), tmp)
    text = json.dumps(pins, indent=1, sort_keys=True)
    if "--write" in sys.argv:
        PINS_PATH.parent.mkdir(exist_ok=True)
        PINS_PATH.write_text(text + "\n")
        print(f"wrote {PINS_PATH}")
    else:
        print(text)


if __name__ == "__main__":
    main()
