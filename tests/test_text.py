"""The one one-line helper (kronos_trader.text) the web, the MCP server, the freqtrade columns and
the data errors share."""
from __future__ import annotations

from kronos_trader.text import one_line


def test_one_line():
    assert one_line("a\n  b\tc ") == "a b c"
    assert one_line(ValueError()) == "ValueError" and one_line(RuntimeError("x\n  y")) == "x y"
    long = one_line("x" * 600)
    assert len(long) == 500 and long.endswith("…")
    assert one_line("x" * 600, limit=None) == "x" * 600
