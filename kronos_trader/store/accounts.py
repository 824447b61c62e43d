"""Run-scoped account state of paper/live trading: balances, fills and order moves.

The brokers read and write their state only through these methods. Every order move goes
through the order state machine (``transition``) and lands in ONE transaction with its
fills and the balances it moves.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from ._util import to_utc_naive
from .base import StoreBase
from .errors import StoreError
from .models import OPEN_ORDER_STATUSES, Balance, Fill, Order, utcnow
from .order_state import transition


@dataclass
class OrderUpdate:
    """A move of one order: its new status and what comes with it."""

    client_order_id: str
    status: str
    reason: str | None = None
    exchange_order_id: str | None = None
    #: executions (ts, price, amount, fee, fee_currency); ``seq`` is the position in the list,
    #: so re-applying the same update adds nothing
    fills: list[tuple[Any, float, float, float, str | None]] = field(default_factory=list)


class AccountsMixin(StoreBase):
    def account_rows(self, run_id: str) -> tuple[list[Balance], list[tuple], list[Order]]:
        """(balances, fills as (symbol, timeframe, side, amount, price, fee, fee_currency) in
        execution order, open orders oldest decision first) of a run."""
        with self.session(readonly=True) as s:
            balances = list(s.scalars(select(Balance).where(Balance.run_id == run_id)))
            fills = [tuple(r) for r in s.execute(
                select(Order.symbol, Order.timeframe, Order.side, Fill.amount, Fill.price, Fill.fee, Fill.fee_currency)
                .join(Fill, Fill.order_id == Order.id)
                .where(Fill.run_id == run_id).order_by(Fill.ts, Fill.id)).all()]
            open_rows = list(s.scalars(
                select(Order).where(Order.run_id == run_id, Order.status.in_(OPEN_ORDER_STATUSES))
                .order_by(Order.bar_time, Order.id)))
        return balances, fills, open_rows

    def adopt_balances(self, run_id: str, held: Mapping[str, tuple[float, float]]) -> None:
        """Mark ``amount`` of each currency's stored balance as adopted at ``price``: the
        run's position from its start (``held``: currency -> (amount, price))."""
        with self.session() as s:
            for b in s.scalars(select(Balance).where(Balance.run_id == run_id, Balance.currency.in_(list(held)))
                               .with_for_update()):
                b.adopted, b.adopted_price = map(float, held[b.currency])

    def fill_count(self, client_order_id: str) -> int:
        """How many fills of the order are stored."""
        from sqlalchemy import func

        with self.session(readonly=True) as s:
            return int(s.scalar(select(func.count(Fill.id)).join(Order, Fill.order_id == Order.id)
                                .where(Order.client_order_id == client_order_id)) or 0)

    def order_ids(self, run_id: str) -> set[str]:
        with self.session(readonly=True) as s:
            return set(s.scalars(select(Order.client_order_id).where(Order.run_id == run_id)))

    def open_balances(self, run_id: str, balances: Mapping[str, tuple[float, float]],
                      opening: Callable[[str, float], float | None] | None = None) -> bool:
        """Opening balances of a run, once (False when it already has balances).
        ``opening(currency, total)`` gives the opening value to keep (live runs)."""
        with self.session() as s:
            if s.scalar(select(Balance.id).where(Balance.run_id == run_id).limit(1)) is not None:
                return False
            self._upsert_balances(s, run_id, balances, opening)
        return True

    def apply_order_updates(
        self,
        run_id: str,
        updates: Iterable[OrderUpdate],
        balances: Mapping[str, tuple[float, float]] | None = None,
        *,
        opening: Callable[[str, float], float | None] | None = None,
        inside: Callable[[], None] | None = None,
    ) -> None:
        """Move orders (state machine), add their new fills and set ``balances`` (currency ->
        (free, used)) in one transaction. ``inside`` runs before the commit (a crash there
        leaves nothing written)."""
        updates = list(updates)
        with self.session() as s:
            rows = {o.client_order_id: o for o in s.scalars(
                select(Order).where(Order.client_order_id.in_([u.client_order_id for u in updates]))
                .with_for_update())}
            now = utcnow()
            for u in updates:
                row = rows.get(u.client_order_id)
                if row is None:
                    raise StoreError(f"unknown order {u.client_order_id!r}")
                row.status, row.updated_at = transition(row.status, u.status).value, now
                if u.reason:
                    row.reason = f"{row.reason}; {u.reason}" if row.reason else u.reason
                if u.exchange_order_id is not None:
                    row.exchange_order_id = u.exchange_order_id
                have = set(s.scalars(select(Fill.seq).where(Fill.order_id == row.id)))
                for seq, (ts, price, amount, fee, currency) in enumerate(u.fills):
                    if seq not in have:
                        s.add(Fill(order_id=row.id, run_id=run_id, seq=seq, ts=to_utc_naive(ts), price=float(price),
                                   amount=float(amount), fee=float(fee or 0.0), fee_currency=currency))
            if balances:
                s.flush()
                self._upsert_balances(s, run_id, balances, opening)
            s.flush()
            if inside is not None:
                inside()

    @staticmethod
    def _upsert_balances(s, run_id: str, balances: Mapping[str, tuple[float, float]],
                         opening: Callable[[str, float], float | None] | None) -> None:
        now = utcnow()
        rows = {b.currency: b for b in s.scalars(
            select(Balance).where(Balance.run_id == run_id, Balance.currency.in_(list(balances))).with_for_update())}
        for currency, (free, used) in balances.items():
            row = rows.get(currency)
            if row is None:
                start = opening(currency, float(free) + float(used)) if opening is not None else None
                s.add(Balance(run_id=run_id, currency=currency, free=float(free), used=float(used), opening=start,
                              updated_at=now))
            else:
                row.free, row.used, row.updated_at = float(free), float(used), now
