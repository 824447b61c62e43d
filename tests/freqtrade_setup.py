"""A freqtrade user directory for tests: candle files in freqtrade's data layout, a config
pointing ccxt at the local fake exchange, the ready strategy, and freqtrade's own commands."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from kronos_trader.exchange import make_client
from kronos_trader.freqtrade import STRATEGY_FILE

FREQTRADE = [sys.executable, "-m", "freqtrade"]


def write_candles(datadir: Path, pair: str, timeframe: str, candles: pd.DataFrame, fmt: str = "feather") -> Path:
    """Candles as freqtrade stores them: <datadir>/<PAIR>-<tf>.feather with a UTC `date`
    column (futures pairs in futures/ with a -futures suffix), or its JSON list of lists."""
    futures = ":" in pair
    name = pair.replace("/", "_").replace(":", "_") + f"-{timeframe}" + ("-futures" if futures else "")
    directory = datadir / "futures" if futures else datadir
    directory.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame({"date": pd.DatetimeIndex(candles.index).tz_localize("UTC").as_unit("ms"),
                          **{c: candles[c].to_numpy(dtype=np.float64)
                             for c in ("open", "high", "low", "close", "volume")}})
    if fmt == "feather":
        path = directory / f"{name}.feather"
        frame.to_feather(path, compression_level=9, compression="lz4")
    else:
        path = directory / f"{name}.json"
        stamps = pd.DatetimeIndex(candles.index).as_unit("ms").asi8  # epoch milliseconds
        values = frame[["open", "high", "low", "close", "volume"]].to_numpy()
        path.write_text(json.dumps([[int(t), *map(float, row)] for t, row in zip(stamps, values)]))
    return path


def make_user_dir(root: Path, server_url: str, kronos: dict, timeframe: str = "1h", pairs=("BTC/USDT",),
                  startup: int | None = None, fmt: str = "feather", **extra) -> Path:
    """user_data with the ready strategy and config.json; returns the config path."""
    user = root / "user_data"
    (user / "strategies").mkdir(parents=True, exist_ok=True)
    (user / "data" / "binance").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(STRATEGY_FILE, user / "strategies" / STRATEGY_FILE.name)
    api = make_client("binance", api_url=server_url).urls["api"]
    config = {
        "max_open_trades": 1, "stake_currency": "USDT", "stake_amount": "unlimited",
        "tradable_balance_ratio": 0.99, "fiat_display_currency": "", "dry_run": True, "dry_run_wallet": 1000,
        "cancel_open_orders_on_exit": False, "trading_mode": "spot", "margin_mode": "", "timeframe": timeframe,
        "unfilledtimeout": {"entry": 10, "exit": 10, "unit": "minutes"},
        "entry_pricing": {"price_side": "other", "use_order_book": False, "order_book_top": 1,
                          "price_last_balance": 0.0, "check_depth_of_market": {"enabled": False,
                                                                               "bids_to_ask_delta": 1}},
        "exit_pricing": {"price_side": "other", "use_order_book": False, "order_book_top": 1},
        "exchange": {"name": "binance", "key": "", "secret": "", "pair_whitelist": list(pairs), "enable_ws": False,
                     "pair_blacklist": [],
                     "ccxt_config": {"urls": {"api": api}, "rateLimit": 1,
                                     "options": {"fetchMarkets": {"types": ["spot"]}, "fetchCurrencies": False,
                                                 "fetchMargins": False}}},
        "pairlists": [{"method": "StaticPairList"}],
        "bot_name": "kronos-test", "initial_state": "running", "force_entry_enable": False,
        "internals": {"process_throttle_secs": 1, "heartbeat_interval": 0},
        "dataformat_ohlcv": fmt, "user_data_dir": str(user), "datadir": str(user / "data" / "binance"),
        "db_url": f"sqlite:///{user / 'trades.sqlite'}",
        "kronos": kronos,
        **extra,
    }
    if startup is not None:
        config["startup_candle_count"] = startup
    path = root / "config.json"
    path.write_text(json.dumps(config, indent=1))
    return path


def freqtrade(args: list[str], config: Path, timeout: float = 240, env: dict | None = None,
              strategy: str = "KronosDirectional") -> subprocess.CompletedProcess:
    """Run one freqtrade command on `config` with `strategy` (output as text)."""
    cmd = [*FREQTRADE, *args, "--config", str(config), "--userdir", str(config.parent / "user_data"),
           "--strategy", strategy]
    run_env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "1000", **(env or {})}  # one record a line
    return subprocess.run(cmd, cwd=config.parent, env=run_env, capture_output=True, text=True, timeout=timeout)
