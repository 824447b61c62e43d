"""`python -m kronos_trader.freqtrade DIRECTORY`: copy the ready strategy (KronosDirectional)
into a freqtrade strategies directory (e.g. user_data/strategies)."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

from . import STRATEGY_FILE


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0].startswith("-"):
        print("usage: python -m kronos_trader.freqtrade DIRECTORY  (e.g. user_data/strategies)", file=sys.stderr)
        return 2
    directory = Path(argv[0])
    if not directory.is_dir():
        print(f"error: {directory} is not a directory (create it with: freqtrade create-userdir)", file=sys.stderr)
        return 2
    target = directory / STRATEGY_FILE.name
    if target.exists():
        print(f"error: {target} exists; remove it first to replace it", file=sys.stderr)
        return 1
    shutil.copyfile(STRATEGY_FILE, target)
    print(f"copied KronosDirectional to {target}: freqtrade backtesting --strategy KronosDirectional ...")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
