"""Text for people: a message (an exception's, a library's wrapped error) as one line.

A module of its own that imports nothing, so every layer may use it (the web, the MCP
server, the freqtrade columns, data errors) without an import cycle between them."""
from __future__ import annotations

__all__ = ["one_line"]


def one_line(text: object, limit: int | None = 500) -> str:
    """`text` on one line (runs of whitespace, newlines included, become one space) of at most
    `limit` characters (None: any length), cut with an ellipsis; an exception without a message reads as the
    name of its type."""
    line = " ".join(str(text).split())
    if not line and isinstance(text, BaseException):
        line = type(text).__name__
    return line if limit is None or len(line) <= limit else line[: limit - 1] + "…"
