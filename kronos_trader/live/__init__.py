"""Live paper trading (and optional real trading) around Kronos forecasts.

``LiveRunner`` runs cycles (one per candle close, scheduled by APScheduler), using the same
``decide`` + ``rebalance`` as the backtest; ``PaperBroker`` simulates fills with the
backtest's fill rule; ``ExchangeBroker`` sends real orders through ccxt.
"""
from .accounting import Account, Position
from .audit import audit_run
from .ids import client_order_id
from .broker import Broker, PendingOrder, SendResult
from .exchange_broker import ExchangeBroker
from .paper_broker import FILL_MODES, FillResult, PaperBroker, slipped_open
from .runner import HOOK_POINTS, CycleReport, LiveRunner

__all__ = ["Account", "Broker", "CycleReport", "ExchangeBroker", "SendResult", "FILL_MODES", "FillResult", "HOOK_POINTS", "LiveRunner", "PaperBroker",
           "PendingOrder", "Position", "audit_run", "client_order_id", "slipped_open"]
