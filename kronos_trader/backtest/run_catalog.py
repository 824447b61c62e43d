"""Stored backtests you can find again: a name that says what ran (symbol, timeframe,
strategy), one catalogue row per run (data, span, key metrics), lookup by id prefix, and
what differs between two runs' settings."""
from __future__ import annotations

from typing import Any, Sequence

__all__ = ["run_name", "display_name", "catalog_row", "find_run", "settings_diff", "dotted_leaves", "LEGACY_NAME"]

LEGACY_NAME = "backtest"  # what every stored backtest was called before run names said what ran
MAX_NAMED_SYMBOLS = 3


def run_name(symbols: Sequence[str], timeframe: str, strategy: str) -> str:
    """'BTC/USDT 1h Directional'; several symbols joined by '+' (the first three, then a count)."""
    shown = list(symbols[:MAX_NAMED_SYMBOLS])
    extra = len(symbols) - len(shown)
    pairs = "+".join(shown) + (f"+{extra} more" if extra > 0 else "")
    return f"{pairs} {timeframe} {strategy.rpartition(':')[2] or strategy}"


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def display_name(run) -> str:
    """The run's name; for runs stored under the old generic name, one made from what it holds."""
    if run.name and run.name != LEGACY_NAME:
        return run.name
    summary, config = _dict(run.summary), _dict(run.config)
    data = _dict(config.get("data"))
    symbol, timeframe = summary.get("symbol") or data.get("symbol"), summary.get("timeframe") or data.get("timeframe")
    strategy = _dict(config.get("strategy")).get("name") or ""
    return run_name(str(symbol or "?").split(","), str(timeframe or "?"), strategy) if symbol else run.name


def catalog_row(run) -> dict[str, Any]:
    """One run as a catalogue row: id, name, status, when, data, span and key metrics."""
    summary, config = _dict(run.summary), _dict(run.config)
    strategy = _dict(summary.get("strategy"))
    data = _dict(config.get("data"))
    return {"id": run.id, "name": display_name(run), "kind": run.kind, "status": run.status,
            "started_at": None if run.started_at is None else str(run.started_at),
            "data": data.get("path") or ("bundled synthetic sample" if summary.get("synthetic") else "stored candles"),
            "symbol": summary.get("symbol") or data.get("symbol"),
            "timeframe": summary.get("timeframe") or data.get("timeframe"), "bars": summary.get("bars"),
            "first_bar": summary.get("first_bar"), "last_bar": summary.get("last_bar"),
            "model": _dict(config.get("model")).get("name"),
            "total_return": strategy.get("total_return"), "sharpe": strategy.get("sharpe"),
            "max_drawdown": strategy.get("max_drawdown"), "trades": strategy.get("trades"),
            "win_rate": strategy.get("win_rate")}


def find_run(store, ref: str, kind: str | None = "backtest"):
    """The stored run whose id is `ref` or starts with it; one-line errors otherwise."""
    run = store.get_run(ref)
    if run is not None and (kind is None or run.kind == kind):
        return run
    matches = [r for r in store.list_runs(kind) if r.id.startswith(ref)]
    if not matches:
        raise ValueError(f"no run '{ref}' in {store.url} (`kronos-trader runs` lists them)")
    if len(matches) > 1:
        raise ValueError(f"run id '{ref}' is ambiguous: {', '.join(r.id[:12] for r in matches[:5])}")
    return matches[0]


def dotted_leaves(value: Any, prefix: str = "") -> dict[str, Any]:
    """A nested settings dict as {"section.name": value} (empty dicts are leaves)."""
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(dotted_leaves(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


def settings_diff(a: dict | None, b: dict | None) -> list[tuple[str, Any, Any]]:
    """(dotted setting, value in a, value in b) for every setting the two runs differ in."""
    left, right = dotted_leaves(_dict(a)), dotted_leaves(_dict(b))
    return [(k, left.get(k), right.get(k)) for k in sorted(set(left) | set(right)) if left.get(k) != right.get(k)]
