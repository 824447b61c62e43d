"""Small read queries the store's API does not offer (forecasts by id, recent events)."""
from __future__ import annotations

from sqlalchemy import select

from kronos_trader.store import Event, Forecast


def forecasts_by_id(store, ids) -> dict[int, Forecast]:
    wanted = sorted({int(i) for i in ids if i is not None})
    out: dict[int, Forecast] = {}
    with store.session(readonly=True) as s:
        for k in range(0, len(wanted), 500):
            part = wanted[k:k + 500]
            out.update((f.id, f) for f in s.scalars(select(Forecast).where(Forecast.id.in_(part))))
    return out


def recent_events(store, run_id: str, limit: int = 30) -> list[Event]:
    q = select(Event).where(Event.run_id == run_id).order_by(Event.ts.desc(), Event.id.desc()).limit(limit)
    with store.session(readonly=True) as s:
        return list(s.scalars(q))
