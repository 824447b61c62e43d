"""ccxt adapter used by the live runner and the ``fetch`` command.

Only depends on ccxt, pandas and numpy (no backtrader / database imports).
"""
from .candles import (
    CANDLE_COLUMNS,
    empty_candle_frame,
    exchange_now,
    fetch_closed_candles,
    fetch_last_candles,
    fill_candle_gaps,
    last_price,
    ohlcv_to_frame,
)
from .client import make_client
from .errors import (
    BadSymbolError,
    ExchangeAdapterError,
    ExchangeAuthError,
    ExchangeConfigError,
    ExchangeFault,
    ExchangeRejected,
    InsufficientFundsError,
    InvalidOrderError,
    OrderNotFoundError,
    UnknownSymbolError,
)
from .markets import MarketRules, check_min_notional, ensure_markets, market_rules, resolve_symbol, round_amount, round_price
from .retry import call_with_retry, is_retryable
from .timeframes import (
    candle_close_time,
    floor_to_timeframe,
    last_closed_candle_open,
    shift_open,
    timeframe_to_ms,
    timeframe_to_timedelta,
    to_utc_timestamp,
)

__all__ = [
    "CANDLE_COLUMNS",
    "BadSymbolError",
    "ExchangeAdapterError",
    "ExchangeAuthError",
    "ExchangeConfigError",
    "ExchangeFault",
    "ExchangeRejected",
    "InsufficientFundsError",
    "InvalidOrderError",
    "MarketRules",
    "OrderNotFoundError",
    "UnknownSymbolError",
    "call_with_retry",
    "candle_close_time",
    "check_min_notional",
    "empty_candle_frame",
    "ensure_markets",
    "exchange_now",
    "fetch_closed_candles",
    "fetch_last_candles",
    "fill_candle_gaps",
    "floor_to_timeframe",
    "is_retryable",
    "last_closed_candle_open",
    "make_client",
    "market_rules",
    "last_price",
    "ohlcv_to_frame",
    "resolve_symbol",
    "round_amount",
    "round_price",
    "shift_open",
    "timeframe_to_ms",
    "timeframe_to_timedelta",
    "to_utc_timestamp",
]
