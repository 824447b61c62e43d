#!/usr/bin/env python
"""Write the bundled sample ``kronos_trader/assets/sample/BTCUSDT-1h.csv``.

THE SAMPLE IS SYNTHETIC. It is produced by
:func:`kronos_trader.data.generate_market` (GARCH volatility clustering,
Student-t tails, regime switching, seasonal volume) and is NOT real BTCUSDT
market history; the name only says what kind of market it imitates. It exists
so demos, docs and tests run offline without exchange downloads.

About two years of hourly bars (17,520) from 2023-01-01 00:00 UTC with a fixed
seed, so re-running this script reproduces the file byte for byte. Prices are
rounded to 2 decimals and volume to 4 to keep the file small.

Usage: python scripts/make_sample_data.py [--out PATH]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from kronos_trader.data import SAMPLE_DATA_PATH, generate_market, save_candles

N_BARS = 2 * 365 * 24
SEED = 6
START = "2023-01-01"
START_PRICE = 30000.0


def build_sample():
    """The synthetic frame, rounded the way it is stored."""
    frame = generate_market(N_BARS, interval="1h", start=START, seed=SEED, start_price=START_PRICE)
    return frame.round({"open": 2, "high": 2, "low": 2, "close": 2, "volume": 4, "amount": 2})


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=SAMPLE_DATA_PATH, help="CSV to write")
    args = parser.parse_args(argv)
    path = save_candles(build_sample(), args.out)
    print(f"wrote {N_BARS} synthetic bars to {path}")
    return path


if __name__ == "__main__":
    main()
