"""The single exception type for bad candle data.

Users feed the bot their own exports; when one is wrong they need to know *what*
is wrong and *where* (file, line/row, column) in one readable line, not a
pandas traceback. Every data-layer check raises this.
"""

from __future__ import annotations

from kronos_trader.text import one_line

__all__ = ["CandleDataError"]


class CandleDataError(ValueError):
    """A one-line description of a candle-data problem and its location.

    The message reads ``"<source>, <row>, column '<col>': <problem>"`` with the
    location parts omitted when unknown. The parts are kept as attributes so
    callers (CLI, API) can render them differently.
    """

    def __init__(
        self,
        problem: str,
        *,
        source: str | None = None,
        row: str | None = None,
        column: str | None = None,
    ) -> None:
        self.problem = one_line(problem, limit=None)
        self.source = one_line(source, limit=None) if source else None
        self.row = row
        self.column = column
        super().__init__(self._render())

    def _render(self) -> str:
        where = [p for p in (self.source, self.row) if p]
        if self.column is not None:
            where.append(f"column '{self.column}'")
        return f"{', '.join(where)}: {self.problem}" if where else self.problem
