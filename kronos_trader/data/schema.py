"""Canonical candle columns and the header aliases that map onto them.

Exchanges and tools name the same fields differently (``Date``, ``open_time``,
``vol``, ``quote_volume``...). Normalising names in one place keeps every
reader and validator agreeing on what a column means.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable

from .errors import CandleDataError

__all__ = [
    "INDEX_NAME",
    "PRICE_COLUMNS",
    "CANONICAL_COLUMNS",
    "TIME_ALIASES",
    "map_columns",
    "normalise_name",
]

INDEX_NAME = "timestamp"
PRICE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close")
CANONICAL_COLUMNS: tuple[str, ...] = (*PRICE_COLUMNS, "volume", "amount")

TIME_ALIASES = frozenset({"timestamp", "timestamps", "time", "date", "datetime", "open_time"})
_ALIASES: dict[str, str] = {
    **{alias: INDEX_NAME for alias in TIME_ALIASES},
    **{name: name for name in CANONICAL_COLUMNS},
    "vol": "volume",
    "turnover": "amount",
    "quote_volume": "amount",
}
# Header of a column that was a pandas index written without a name.
_UNNAMED_FIRST = frozenset({"", "unnamed: 0"})


def normalise_name(name: Hashable) -> str:
    """Case-insensitive, whitespace-trimmed form used for alias lookup."""
    return str(name).strip().lower()


def map_columns(columns: Iterable[Hashable], source: str) -> dict[Hashable, str]:
    """Map original column labels to canonical names; unknown columns are left out.

    An unnamed first column is taken as the timestamp when nothing else is,
    because that is what ``DataFrame.to_csv()`` writes for an unnamed index.
    Two columns meaning the same thing is ambiguous, so it is an error.
    """
    columns = list(columns)
    mapping: dict[Hashable, str] = {}
    seen: dict[str, Hashable] = {}
    for label in columns:
        canonical = _ALIASES.get(normalise_name(label))
        if canonical is None:
            continue
        if canonical in seen:
            raise CandleDataError(
                f"columns '{seen[canonical]}' and '{label}' both mean '{canonical}'; keep only one",
                source=source,
            )
        seen[canonical] = label
        mapping[label] = canonical
    if INDEX_NAME not in seen and columns and normalise_name(columns[0]) in _UNNAMED_FIRST:
        mapping[columns[0]] = INDEX_NAME
    return mapping
