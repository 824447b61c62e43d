"""Local fake exchange servers for tests (no network beyond 127.0.0.1)."""
from .candles import drop_bars, make_candles
from .server import FAULTS, INTERVAL_MS, FakeBinance, RequestRecord

__all__ = ["FAULTS", "INTERVAL_MS", "FakeBinance", "RequestRecord", "drop_bars", "make_candles"]
