"""Consistency checks of a paper/live run in the database (used by tests and `status`)."""
from __future__ import annotations

from collections import Counter, defaultdict

from kronos_trader.store import Store

from .accounting import fill_deltas

EPS = 1e-6


def balance_gaps(store: Store, run_id: str) -> dict[str, tuple[float, float, float]]:
    """Live runs: per currency whose stored exchange balance differs from its opening
    balance plus the run's fills (net of fees, in the currency each fee was charged in):
    (exchange balance, opening, fills)."""
    totals: dict[str, float] = defaultdict(float)
    balances, fills, _ = store.account_rows(run_id)
    for symbol, _timeframe, side, amount, price, fee, fee_currency in fills:
        for currency, delta in fill_deltas(symbol, side, amount, price, fee, fee_currency).items():
            totals[currency] += delta
    gaps = {}
    for b in balances:
        if b.opening is None:
            continue
        expected, actual = b.opening + totals.get(b.currency, 0.0), b.free + b.used
        if abs(actual - expected) > EPS * max(1.0, abs(expected)):
            gaps[b.currency] = (actual, b.opening, totals.get(b.currency, 0.0))
    return gaps


def balance_problems(store: Store, run_id: str,
                     gaps: dict[str, tuple[float, float, float]] | None = None) -> list[str]:
    """``balance_gaps`` (computed unless given) as messages."""
    gaps = balance_gaps(store, run_id) if gaps is None else gaps
    return [f"{currency} balance {actual:.10g} on the exchange != opening {opening:.10g} + fills {moved:+.10g}"
            for currency, (actual, opening, moved) in gaps.items()]


def audit_run(store: Store, run_id: str, *, paper: bool | None = None) -> list[str]:
    """Problems found (empty when consistent): fills vs orders, orders vs signals, and the
    balances: paper runs vs the opening balance plus every fill, live runs vs the exchange
    balances read after the last fill (``balance_problems``). ``paper`` defaults to the
    run's kind."""
    problems: list[str] = []
    rows = store.run_rows(run_id)
    if rows is None:
        return [f"unknown run {run_id}"]
    run, orders, fills = rows.run, rows.orders, rows.fills
    signals = {(x.symbol, x.timeframe, x.bar_time) for x in rows.signals}
    balances = {b.currency: b.free + b.used for b in rows.balances}
    if paper is None:
        paper = run.kind != "live"
    by_order = defaultdict(list)
    for f in fills:
        by_order[f.order_id].append(f)
    per_bar = Counter((o.symbol, o.timeframe, o.bar_time) for o in orders)
    for key, n in per_bar.items():
        if n > 1:
            problems.append(f"{n} orders for {key}")
    quote_delta: float = 0.0
    base_delta: dict[str, float] = defaultdict(float)
    for o in orders:
        got = by_order.get(o.id, [])
        done = sum(f.amount for f in got)
        if (o.symbol, o.timeframe, o.bar_time) not in signals:
            problems.append(f"order {o.client_order_id} has no signal")
        if o.status == "filled" and abs(done - o.amount) > EPS * max(1.0, o.amount):
            problems.append(f"order {o.client_order_id} is filled but its fills sum to {done} of {o.amount}")
        if o.status in ("new", "sent", "unknown", "rejected", "expired") and got:
            problems.append(f"order {o.client_order_id} is {o.status} but has fills")
        for f in got:
            signed = f.amount if o.side == "buy" else -f.amount
            quote_delta -= signed * f.price + f.fee
            base_delta[o.symbol.split("/")[0]] += signed
    if paper and run.config:
        pairs = (run.config.get("paper") or {}).get("pairs") or []
        quotes = {p["symbol"].split("/")[1].split(":")[0] for p in pairs if "/" in p["symbol"]}
        opening = float((run.config.get("paper") or {}).get("quote_balance") or 0.0)
        for quote in quotes:
            expected = opening + quote_delta
            if abs(balances.get(quote, 0.0) - expected) > EPS * max(1.0, abs(expected)):
                problems.append(f"{quote} balance {balances.get(quote)} != opening + fills {expected}")
        for base, delta in base_delta.items():
            if abs(balances.get(base, 0.0) - delta) > EPS * max(1.0, abs(delta)):
                problems.append(f"{base} balance {balances.get(base)} != fills {delta}")
    if not paper:
        problems.extend(balance_problems(store, run_id))
    return problems
