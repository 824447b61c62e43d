"""A local fake of the Binance spot REST API, good enough for the real
``ccxt.binance`` client.

Endpoints (all under ``/api/v3``): ``ping``, ``time``, ``exchangeInfo``,
``klines``, ``ticker/24hr``, ``ticker/price``, ``ticker/bookTicker``,
``avgPrice``, ``depth`` (one level each side) and the signed ``order`` (POST/GET/DELETE), ``openOrders``,
``allOrders``, ``myTrades``, ``account``.

Market data is replayed from pandas frames: the server only reveals candles
whose open time is ``<= server.now_ms`` (the last one is the still-forming
candle).  ``server.now_ms = None`` means the wall clock.

Faults are injected with ``server.inject(name, count=1, path=None, **kw)``;
see :data:`FAULTS`.  Every request is logged in ``server.requests``.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import numpy as np
import pandas as pd

__all__ = ["FakeBinance", "RequestRecord", "FAULTS", "INTERVAL_MS"]

INTERVAL_MS = {
    "1s": 1_000,
    "1m": 60_000,
    "3m": 180_000,
    "5m": 300_000,
    "15m": 900_000,
    "30m": 1_800_000,
    "1h": 3_600_000,
    "2h": 7_200_000,
    "4h": 14_400_000,
    "6h": 21_600_000,
    "8h": 28_800_000,
    "12h": 43_200_000,
    "1d": 86_400_000,
    "3d": 259_200_000,
    "1w": 604_800_000,
}
_WEEK_ORIGIN_MS = 4 * 86_400_000  # Monday 1970-01-05

#: fault name -> aliases.  ``timeout``: sleep ``server.timeout_delay_s`` before
#: answering; ``rate_limit``: HTTP 429 (-1003); ``ddos``: HTTP 418 (IP ban);
#: ``unavailable``: HTTP 503 HTML page; ``server_error``: HTTP 500 (-1000);
#: ``malformed_json``: truncated JSON with status 200; ``empty_body``: 200 with
#: no body; ``empty_list``: 200 ``[]``; ``clock_skew``: /api/v3/time off by
#: ``skew_ms`` (kw, default 5000); ``timestamp_error``: -1021 on signed calls;
#: ``not_found``: -2013 "Order does not exist." (an order lookup that has not caught up).
FAULTS = {
    "timeout": ("timeout",),
    "rate_limit": ("rate_limit", "429"),
    "ddos": ("ddos", "418", "ip_ban"),
    "unavailable": ("unavailable", "503"),
    "server_error": ("server_error", "500"),
    "malformed_json": ("malformed_json", "malformed"),
    "empty_body": ("empty_body",),
    "empty_list": ("empty_list", "empty"),
    "clock_skew": ("clock_skew", "skew"),
    "timestamp_error": ("timestamp_error", "-1021"),
    "not_found": ("not_found", "-2013"),
}
_ALIASES = {alias: name for name, aliases in FAULTS.items() for alias in aliases}

_SIGNED = {
    ("POST", "/api/v3/order"),
    ("GET", "/api/v3/order"),
    ("DELETE", "/api/v3/order"),
    ("GET", "/api/v3/openOrders"),
    ("DELETE", "/api/v3/openOrders"),
    ("GET", "/api/v3/allOrders"),
    ("GET", "/api/v3/myTrades"),
    ("GET", "/api/v3/account"),
}


@dataclass
class RequestRecord:
    method: str
    path: str
    params: dict
    headers: dict
    time_ms: int
    status: int | None = None
    fault: str | None = None

    @property
    def signed(self) -> bool:
        return (self.method, self.path) in _SIGNED


@dataclass
class _Fault:
    name: str
    remaining: int
    path: str | None
    kwargs: dict = field(default_factory=dict)


class _ApiError(Exception):
    def __init__(self, status: int, code: int, msg: str):
        super().__init__(msg)
        self.status, self.code, self.msg = status, code, msg


def _fmt(x: float, places: int = 8) -> str:
    return f"{float(x):.{places}f}"


def _dec(x) -> Decimal:
    return Decimal(str(x))


class _Series:
    """Candles of one symbol at one base interval, as numpy arrays."""

    def __init__(self, frame: pd.DataFrame, interval: str):
        if interval not in INTERVAL_MS:
            raise ValueError(f"unsupported interval {interval!r}")
        idx = pd.DatetimeIndex(frame.index)
        idx = idx.tz_localize("UTC") if idx.tz is None else idx.tz_convert("UTC")
        order = np.argsort(idx.as_unit("ms").asi8, kind="stable")
        self.interval = interval
        self.interval_ms = INTERVAL_MS[interval]
        self.open_ms = idx.as_unit("ms").asi8[order].astype("int64")
        cols = {c: frame[c].to_numpy(dtype="float64")[order] for c in ("open", "high", "low", "close", "volume")}
        self.o, self.h, self.l, self.c, self.v = (cols[c] for c in ("open", "high", "low", "close", "volume"))
        if "amount" in frame.columns:
            self.a = frame["amount"].to_numpy(dtype="float64")[order]
        else:
            self.a = self.v * (self.o + self.h + self.l + self.c) / 4.0

    def revealed(self, now_ms: int) -> int:
        """Number of candles with open time <= now."""
        return int(np.searchsorted(self.open_ms, now_ms, side="right"))

    def bars(self, interval: str, now_ms: int):
        """Arrays (open_ms, o, h, l, c, v, a) at ``interval``, only revealed data;
        coarser intervals are aggregated (the last bucket may be partial)."""
        n = self.revealed(now_ms)
        base = (self.open_ms[:n], self.o[:n], self.h[:n], self.l[:n], self.c[:n], self.v[:n], self.a[:n])
        if interval == self.interval:
            return base
        target = INTERVAL_MS.get(interval)
        if target is None or target % self.interval_ms or target < self.interval_ms:
            return None
        if n == 0:
            return base
        origin = _WEEK_ORIGIN_MS if interval == "1w" else 0
        keys = base[0] - (base[0] - origin) % target
        starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
        ends = np.r_[starts[1:], n] - 1
        return (
            keys[starts],
            base[1][starts],
            np.maximum.reduceat(base[2], starts),
            np.minimum.reduceat(base[3], starts),
            base[4][ends],
            np.add.reduceat(base[5], starts),
            np.add.reduceat(base[6], starts),
        )


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # no 40 ms Nagle/delayed-ACK stalls between headers and body
    server_version = "FakeBinance/1.0"

    def log_message(self, format, *args):  # noqa: A002 - silence stderr access log
        pass

    def _dispatch(self):
        try:
            self.server.fake._handle(self)
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            self.close_connection = True

    do_GET = do_POST = do_DELETE = do_PUT = _dispatch


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):  # pragma: no cover - keep test output clean
        pass


class FakeBinance:
    """Fake Binance spot REST server on 127.0.0.1 (random free port).

    Usage::

        server = FakeBinance().start()
        server.add_market("BTCUSDT", "BTC", "USDT", candles=df, interval="1m")
        server.now_ms = ...          # replay clock (None = wall clock)
        server.inject("rate_limit", count=2, path="/api/v3/klines")
        ...
        server.stop()
    """

    DEFAULT_BALANCES = {"USDT": 10_000.0, "BTC": 1.0, "ETH": 10.0}

    def __init__(
        self,
        api_key: str | None = None,
        api_secret: str | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        balances: dict[str, float] | None = None,
        timeout_delay_s: float = 2.0,
        fee_rate: float = 0.001,
    ):
        self.host, self._port = host, port
        #: expected X-MBX-APIKEY (None: any non-empty key is accepted)
        self.api_key = api_key
        #: when set, HMAC-SHA256 signatures are verified (-1022 on mismatch)
        self.api_secret = api_secret
        #: replay clock in epoch ms; None = wall clock
        self.now_ms: int | None = None
        #: when True, signed requests are checked against the server clock
        #: (timestamp <= now + 1000 and now - timestamp <= recvWindow), -1021 otherwise
        self.check_recv_window = False
        #: seconds a "timeout" fault sleeps before answering
        self.timeout_delay_s = timeout_delay_s
        #: trading fee (Binance's default 0.1%), charged in the asset received: the base
        #: asset on a buy, the quote asset on a sell
        self.fee_rate = fee_rate
        #: fill marketable LIMIT orders and resting ones touched by later candles
        self.match_limit_orders = True
        self.requests: list[RequestRecord] = []
        self.markets: dict[str, dict] = {}
        self.series: dict[str, _Series] = {}
        self.balances: dict[str, list[float]] = {
            asset: [float(qty), 0.0] for asset, qty in (balances or self.DEFAULT_BALANCES).items()
        }
        self.orders: dict[int, dict] = {}
        self.trades: list[dict] = []
        self._next_order_id = 1000
        self._next_trade_id = 1
        self._faults: list[_Fault] = []
        self._rate_limit: tuple[int, float] | None = None
        self._hits: deque[float] = deque()
        self._lock = threading.RLock()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "FakeBinance":
        self._httpd = _HTTPServer((self.host, self._port), _Handler)
        self._httpd.fake = self
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> "FakeBinance":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # ------------------------------------------------------------------ setup
    def add_market(
        self,
        symbol: str,
        base: str,
        quote: str,
        *,
        candles: pd.DataFrame | None = None,
        interval: str = "1m",
        tick_size: str = "0.01",
        step_size: str = "0.00001",
        min_qty: str = "0.00001",
        max_qty: str = "9000.00000000",
        min_price: str = "0.01",
        max_price: str = "1000000.00",
        min_notional: str = "5.00",
        max_notional: str = "9000000.00",
        notional_filter: str = "NOTIONAL",
        status: str = "TRADING",
        base_precision: int = 8,
        quote_precision: int = 8,
        permission_sets: list[list[str]] | None = None,
    ) -> None:
        """Register a spot market.  ``notional_filter`` is "NOTIONAL" (current
        Binance) or "MIN_NOTIONAL" (legacy)."""
        filters: list[dict] = [
            {"filterType": "PRICE_FILTER", "minPrice": min_price, "maxPrice": max_price, "tickSize": tick_size},
            {"filterType": "LOT_SIZE", "minQty": min_qty, "maxQty": max_qty, "stepSize": step_size},
            {"filterType": "ICEBERG_PARTS", "limit": 10},
            {"filterType": "MARKET_LOT_SIZE", "minQty": "0.00000000", "maxQty": "100.00000000", "stepSize": "0.00000000"},
            {"filterType": "TRAILING_DELTA", "minTrailingAboveDelta": 10, "maxTrailingAboveDelta": 2000,
             "minTrailingBelowDelta": 10, "maxTrailingBelowDelta": 2000},
            {"filterType": "PERCENT_PRICE_BY_SIDE", "bidMultiplierUp": "5", "bidMultiplierDown": "0.2",
             "askMultiplierUp": "5", "askMultiplierDown": "0.2", "avgPriceMins": 5},
        ]
        if notional_filter == "NOTIONAL":
            filters.append({"filterType": "NOTIONAL", "minNotional": min_notional, "applyMinToMarket": True,
                            "maxNotional": max_notional, "applyMaxToMarket": False, "avgPriceMins": 5})
        elif notional_filter == "MIN_NOTIONAL":
            filters.append({"filterType": "MIN_NOTIONAL", "minNotional": min_notional, "applyToMarket": True,
                            "avgPriceMins": 5})
        elif notional_filter is not None:
            raise ValueError("notional_filter must be 'NOTIONAL', 'MIN_NOTIONAL' or None")
        filters += [{"filterType": "MAX_NUM_ORDERS", "maxNumOrders": 200},
                    {"filterType": "MAX_NUM_ALGO_ORDERS", "maxNumAlgoOrders": 5}]
        info = {
            "symbol": symbol,
            "status": status,
            "baseAsset": base,
            "baseAssetPrecision": base_precision,
            "quoteAsset": quote,
            "quotePrecision": quote_precision,
            "quoteAssetPrecision": quote_precision,
            "baseCommissionPrecision": base_precision,
            "quoteCommissionPrecision": quote_precision,
            "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS", "STOP_LOSS_LIMIT", "TAKE_PROFIT", "TAKE_PROFIT_LIMIT"],
            "icebergAllowed": True,
            "ocoAllowed": True,
            "otoAllowed": True,
            "quoteOrderQtyMarketAllowed": True,
            "allowTrailingStop": True,
            "cancelReplaceAllowed": True,
            "amendAllowed": True,
            "isSpotTradingAllowed": True,
            "isMarginTradingAllowed": False,
            "filters": filters,
            "permissions": [],
            "permissionSets": permission_sets if permission_sets is not None else [["SPOT"]],
            "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
            "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH", "DECREMENT"],
        }
        with self._lock:
            self.markets[symbol] = info
            for asset in (base, quote):
                self.balances.setdefault(asset, [0.0, 0.0])
            if candles is not None:
                self.series[symbol] = _Series(candles, interval)

    def set_candles(self, symbol: str, candles: pd.DataFrame, interval: str = "1m") -> None:
        with self._lock:
            if symbol not in self.markets:
                raise KeyError(f"add_market({symbol!r}, ...) first")
            self.series[symbol] = _Series(candles, interval)

    def set_balance(self, asset: str, free: float, locked: float = 0.0) -> None:
        with self._lock:
            self.balances[asset] = [float(free), float(locked)]

    def set_now(self, when: pd.Timestamp | str | int | None) -> None:
        """Set the replay clock (Timestamp/str, naive = UTC; int = epoch ms;
        None = wall clock)."""
        if when is None or isinstance(when, (int, np.integer)):
            self.now_ms = None if when is None else int(when)
            return
        ts = pd.Timestamp(when)
        ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
        self.now_ms = int((ts - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(milliseconds=1))

    def clock_ms(self) -> int:
        now = self.now_ms
        return int(time.time() * 1000) if now is None else int(now)

    # ------------------------------------------------------------------ faults & log
    def inject(self, fault: str, count: int = 1, path: str | None = None, **kwargs: Any) -> None:
        """Make the next ``count`` matching requests fail with ``fault``.

        ``path`` restricts the fault to one endpoint (e.g. "/api/v3/klines").
        ``clock_skew`` only hits /api/v3/time (kw ``skew_ms``), and
        ``timestamp_error`` only signed endpoints.  Faults queue in order.
        """
        name = _ALIASES.get(str(fault))
        if name is None:
            raise ValueError(f"unknown fault {fault!r}; known: {', '.join(FAULTS)}")
        with self._lock:
            self._faults.append(_Fault(name, int(count), path, kwargs))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    @property
    def pending_faults(self) -> int:
        with self._lock:
            return sum(f.remaining for f in self._faults)

    def set_rate_limit(self, max_requests: int | None, window_s: float = 1.0) -> None:
        """Answer 429 (-1003) once more than ``max_requests`` arrive within
        ``window_s`` seconds (None disables)."""
        with self._lock:
            self._rate_limit = None if max_requests is None else (int(max_requests), float(window_s))
            self._hits.clear()

    def requests_to(self, path: str, method: str | None = None) -> list[RequestRecord]:
        with self._lock:
            return [r for r in self.requests if r.path == path and (method is None or r.method == method)]

    def clear_requests(self) -> None:
        with self._lock:
            self.requests.clear()

    # ------------------------------------------------------------------ HTTP plumbing
    def _send(self, handler: BaseHTTPRequestHandler, status: int, body: bytes | str | Any,
              content_type: str = "application/json;charset=UTF-8", headers: dict | None = None) -> None:
        if isinstance(body, str):
            data = body.encode()
        elif isinstance(body, bytes):
            data = body
        else:
            data = json.dumps(body, separators=(",", ":")).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            handler.send_header(key, str(value))
        handler.end_headers()
        if data:
            handler.wfile.write(data)
        handler.wfile.flush()

    def _take_fault(self, path: str, signed: bool) -> _Fault | None:
        for fault in self._faults:
            if fault.remaining <= 0:
                continue
            if fault.path is not None and fault.path != path:
                continue
            if fault.name == "clock_skew" and path != "/api/v3/time":
                continue
            if fault.name == "timestamp_error" and not signed:
                continue
            fault.remaining -= 1
            taken = _Fault(fault.name, 1, fault.path, dict(fault.kwargs))
            self._faults = [f for f in self._faults if f.remaining > 0]
            return taken
        return None

    def _rate_limited(self) -> bool:
        if self._rate_limit is None:
            return False
        limit, window = self._rate_limit
        now = time.monotonic()
        while self._hits and now - self._hits[0] > window:
            self._hits.popleft()
        self._hits.append(now)
        return len(self._hits) > limit

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        split = urlsplit(handler.path)
        path = split.path
        method = handler.command
        query_string = split.query
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length).decode() if length else ""
        params = dict(parse_qsl(query_string, keep_blank_values=True))
        params.update(dict(parse_qsl(body, keep_blank_values=True)))
        record = RequestRecord(method, path, params, dict(handler.headers.items()), self.clock_ms())
        with self._lock:
            self.requests.append(record)
            limited = self._rate_limited()
            fault = None if limited else self._take_fault(path, record.signed)
        if limited:
            record.status, record.fault = 429, "rate_limit_counter"
            return self._send(handler, 429, {"code": -1003, "msg": "Too many requests; current request rate limit exceeded. Please use WebSocket Streams for live updates to avoid polling the API."}, headers={"Retry-After": 1})
        skew = 0
        if fault is not None:
            record.fault = fault.name
            if fault.name == "timeout":
                time.sleep(float(fault.kwargs.get("delay_s", self.timeout_delay_s)))
                fault = None  # then answer normally (the client has given up)
            elif fault.name == "clock_skew":
                skew = int(fault.kwargs.get("skew_ms", 5000))
                fault = None
            else:
                status, payload, ctype = self._fault_response(fault)
                record.status = status
                return self._send(handler, status, payload, content_type=ctype)
        try:
            status, payload = self._route(method, path, params, handler, query_string, body, skew)
        except _ApiError as err:
            status, payload = err.status, {"code": err.code, "msg": err.msg}
        record.status = status
        self._send(handler, status, payload)

    @staticmethod
    def _fault_response(fault: _Fault) -> tuple[int, Any, str]:
        js = "application/json;charset=UTF-8"
        if fault.name == "rate_limit":
            return 429, {"code": -1003, "msg": "Too much request weight used; current limit is 6000 request weight per 1 MINUTE. Please use WebSocket Streams for live updates to avoid polling the API."}, js
        if fault.name == "ddos":
            return 418, {"code": -1003, "msg": "Way too much request weight used; IP banned until 1893456000000. Please use WebSocket Streams for live updates to avoid bans."}, js
        if fault.name == "unavailable":
            return 503, "<html><head><title>503 Service Temporarily Unavailable</title></head><body>503 Service Temporarily Unavailable</body></html>", "text/html"
        if fault.name == "server_error":
            return 500, {"code": -1000, "msg": "An unknown error occurred while processing the request."}, js
        if fault.name == "malformed_json":
            return 200, '{"serverTime": 17000, "symbols": [{"sym', js
        if fault.name == "empty_body":
            return 200, b"", js
        if fault.name == "empty_list":
            return 200, [], js
        if fault.name == "timestamp_error":
            return 400, {"code": -1021, "msg": "Timestamp for this request is outside of the recvWindow."}, js
        if fault.name == "not_found":
            return 400, {"code": -2013, "msg": "Order does not exist."}, js
        raise AssertionError(fault.name)  # pragma: no cover

    # ------------------------------------------------------------------ routing
    def _route(self, method, path, params, handler, query_string, body, skew):
        routes = {
            ("GET", "/api/v3/ping"): lambda: {},
            ("GET", "/api/v3/time"): lambda: {"serverTime": self.clock_ms() + skew},
            ("GET", "/api/v3/exchangeInfo"): lambda: self._exchange_info(params),
            ("GET", "/api/v3/klines"): lambda: self._klines(params),
            ("GET", "/api/v3/ticker/24hr"): lambda: self._per_symbol(params, self._ticker_24hr),
            ("GET", "/api/v3/ticker/price"): lambda: self._per_symbol(params, self._ticker_price),
            ("GET", "/api/v3/ticker/bookTicker"): lambda: self._per_symbol(params, self._book_ticker),
            ("GET", "/api/v3/avgPrice"): lambda: self._avg_price(params),
            ("GET", "/api/v3/depth"): lambda: self._depth(self._market(params)),
        }
        if (method, path) in routes:
            with self._lock:
                return 200, routes[(method, path)]()
        if (method, path) in _SIGNED:
            self._authenticate(method, handler, params, query_string, body)
            with self._lock:
                self._match_orders()
                if path == "/api/v3/account":
                    return 200, self._account()
                if path == "/api/v3/order":
                    if method == "POST":
                        return 200, self._new_order(params)
                    if method == "GET":
                        return 200, self._order_view(self._find_order(params, -2013, "Order does not exist."))
                    return 200, self._cancel(params)
                if path == "/api/v3/openOrders":
                    if method == "DELETE":
                        return 200, self._cancel_all(params)
                    return 200, self._open_orders(params)
                if path == "/api/v3/allOrders":
                    return 200, self._all_orders(params)
                if path == "/api/v3/myTrades":
                    return 200, self._my_trades(params)
        raise _ApiError(404, -1000, f"Unknown endpoint {method} {path}")

    # ------------------------------------------------------------------ auth
    def _authenticate(self, method, handler, params, query_string, body):
        key = handler.headers.get("X-MBX-APIKEY")
        if not key:
            raise _ApiError(401, -2014, "API-key format invalid.")
        if self.api_key is not None and key != self.api_key:
            raise _ApiError(401, -2015, "Invalid API-key, IP, or permissions for action.")
        if "timestamp" not in params:
            raise _ApiError(400, -1102, "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed.")
        if "signature" not in params:
            raise _ApiError(400, -1102, "Mandatory parameter 'signature' was not sent, was empty/null, or malformed.")
        if self.api_secret is not None:
            payload = query_string if method in ("GET", "DELETE") else body
            unsigned = payload.rsplit("&signature=", 1)[0]
            expected = hmac.new(self.api_secret.encode(), unsigned.encode(), hashlib.sha256).hexdigest()
            if not hmac.compare_digest(expected, params["signature"]):
                raise _ApiError(400, -1022, "Signature for this request is not valid.")
        if self.check_recv_window:
            ts = int(params["timestamp"])
            recv = int(params.get("recvWindow") or 5000)
            server_now = self.clock_ms()
            if ts > server_now + 1000:
                raise _ApiError(400, -1021, "Timestamp for this request was 1000ms ahead of the server's time.")
            if server_now - ts > recv:
                raise _ApiError(400, -1021, "Timestamp for this request is outside of the recvWindow.")

    # ------------------------------------------------------------------ market data
    def _market(self, params, required=True) -> dict | None:
        symbol = params.get("symbol")
        if symbol is None:
            if required:
                raise _ApiError(400, -1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.")
            return None
        market = self.markets.get(symbol)
        if market is None:
            raise _ApiError(400, -1121, "Invalid symbol.")
        return market

    def _exchange_info(self, params):
        symbols = list(self.markets.values())
        if "symbol" in params:
            symbols = [self._market(params)]
        elif "symbols" in params:
            wanted = json.loads(params["symbols"])
            missing = [s for s in wanted if s not in self.markets]
            if missing:
                raise _ApiError(400, -1121, "Invalid symbol.")
            symbols = [self.markets[s] for s in wanted]
        return {
            "timezone": "UTC",
            "serverTime": self.clock_ms(),
            "rateLimits": [
                {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000},
                {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
                {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 200000},
                {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000},
            ],
            "exchangeFilters": [],
            "symbols": symbols,
        }

    def _bars(self, symbol: str, interval: str):
        series = self.series.get(symbol)
        if series is None:
            empty = np.array([], dtype="int64")
            return (empty,) + (np.array([], dtype="float64"),) * 6
        bars = series.bars(interval, self.clock_ms())
        if bars is None:
            raise _ApiError(400, -1120, "Invalid interval.")
        return bars

    def _klines(self, params):
        market = self._market(params)
        interval = params.get("interval")
        if interval is None:
            raise _ApiError(400, -1102, "Mandatory parameter 'interval' was not sent, was empty/null, or malformed.")
        if interval not in INTERVAL_MS:
            raise _ApiError(400, -1120, "Invalid interval.")
        try:
            limit = int(params.get("limit", 500))
            start = int(params["startTime"]) if "startTime" in params else None
            end = int(params["endTime"]) if "endTime" in params else None
        except ValueError:
            raise _ApiError(400, -1100, "Illegal characters found in a parameter.") from None
        if limit < 1:
            raise _ApiError(400, -1130, "Data sent for parameter 'limit' is not valid.")
        limit = min(limit, 1000)  # Binance caps spot klines at 1000
        open_ms, o, h, l, c, v, a = self._bars(market["symbol"], interval)
        lo = 0 if start is None else int(np.searchsorted(open_ms, start, side="left"))
        hi = len(open_ms) if end is None else int(np.searchsorted(open_ms, end, side="right"))
        if hi <= lo:
            return []
        if start is None:  # only endTime, or neither: the most recent ``limit``
            lo = max(lo, hi - limit)
        else:  # startTime given: the first ``limit`` from startTime
            hi = min(hi, lo + limit)
        step = INTERVAL_MS[interval]
        rows = []
        for i in range(lo, hi):
            vol = v[i]
            rows.append([
                int(open_ms[i]), _fmt(o[i]), _fmt(h[i]), _fmt(l[i]), _fmt(c[i]), _fmt(vol),
                int(open_ms[i]) + step - 1, _fmt(a[i]), 1 if vol > 0 else 0,
                _fmt(vol / 2), _fmt(a[i] / 2), "0",
            ])
        return rows

    def _last_price(self, symbol: str) -> float | None:
        series = self.series.get(symbol)
        if series is None:
            return None
        n = series.revealed(self.clock_ms())
        return float(series.c[n - 1]) if n else None

    def _per_symbol(self, params, fn):
        if "symbol" in params:
            return fn(self._market(params))
        if "symbols" in params:
            return [fn(self._market({"symbol": s})) for s in json.loads(params["symbols"])]
        return [fn(m) for m in self.markets.values()]

    def _ticker_24hr(self, market):
        now = self.clock_ms()
        symbol = market["symbol"]
        series = self.series.get(symbol)
        tick = float(self._filter(market, "PRICE_FILTER")["tickSize"])
        if series is None or series.revealed(now) == 0:
            last = o = h = l = vol = qvol = 0.0
            open_time = now - 86_400_000
        else:
            n = series.revealed(now)
            lo = int(np.searchsorted(series.open_ms[:n], now - 86_400_000, side="left"))
            lo = min(lo, n - 1)
            last, o = float(series.c[n - 1]), float(series.o[lo])
            h, l = float(series.h[lo:n].max()), float(series.l[lo:n].min())
            vol, qvol = float(series.v[lo:n].sum()), float(series.a[lo:n].sum())
            open_time = int(series.open_ms[lo])
        change = last - o
        return {
            "symbol": symbol, "priceChange": _fmt(change),
            "priceChangePercent": _fmt(100 * change / o if o else 0.0, 3),
            "weightedAvgPrice": _fmt(qvol / vol if vol else last), "prevClosePrice": _fmt(o),
            "lastPrice": _fmt(last), "lastQty": _fmt(0.001), "bidPrice": _fmt(max(last - tick, 0)), "bidQty": _fmt(1),
            "askPrice": _fmt(last + tick if last else 0), "askQty": _fmt(1), "openPrice": _fmt(o),
            "highPrice": _fmt(h), "lowPrice": _fmt(l), "volume": _fmt(vol), "quoteVolume": _fmt(qvol),
            "openTime": open_time, "closeTime": now, "firstId": 1, "lastId": 100, "count": 100,
        }

    def _ticker_price(self, market):
        return {"symbol": market["symbol"], "price": _fmt(self._last_price(market["symbol"]) or 0.0)}

    def _book_ticker(self, market):
        last = self._last_price(market["symbol"]) or 0.0
        tick = float(self._filter(market, "PRICE_FILTER")["tickSize"])
        return {"symbol": market["symbol"], "bidPrice": _fmt(max(last - tick, 0)), "bidQty": _fmt(1),
                "askPrice": _fmt(last + tick if last else 0), "askQty": _fmt(1)}

    def _depth(self, market):
        """A one-level order book around the last price (what freqtrade's dry-run fills against)."""
        book = self._book_ticker(market)
        return {"lastUpdateId": self.clock_ms(), "bids": [[book["bidPrice"], _fmt(1000)]],
                "asks": [[book["askPrice"], _fmt(1000)]]}

    def _avg_price(self, params):
        market = self._market(params)
        return {"mins": 5, "price": _fmt(self._last_price(market["symbol"]) or 0.0), "closeTime": self.clock_ms()}

    # ------------------------------------------------------------------ trading
    @staticmethod
    def _filter(market, kind) -> dict:
        for flt in market["filters"]:
            if flt["filterType"] == kind:
                return flt
        return {}

    def _account(self):
        return {
            "makerCommission": 10, "takerCommission": 10, "buyerCommission": 0, "sellerCommission": 0,
            "commissionRates": {"maker": "0.00100000", "taker": "0.00100000", "buyer": "0.00000000", "seller": "0.00000000"},
            "canTrade": True, "canWithdraw": True, "canDeposit": True, "brokered": False,
            "requireSelfTradePrevention": False, "preventSor": False, "updateTime": self.clock_ms(),
            "accountType": "SPOT",
            "balances": [{"asset": asset, "free": _fmt(free), "locked": _fmt(locked)}
                         for asset, (free, locked) in sorted(self.balances.items())],
            "permissions": ["SPOT"], "uid": 354937868,
        }

    def _check_filters(self, market, qty: Decimal, price: Decimal | None, notional_price: Decimal):
        pf, lot = self._filter(market, "PRICE_FILTER"), self._filter(market, "LOT_SIZE")
        if price is not None and pf:
            tick = _dec(pf["tickSize"])
            if price < _dec(pf["minPrice"]) or price > _dec(pf["maxPrice"]) or (tick and price % tick != 0):
                raise _ApiError(400, -1013, "Filter failure: PRICE_FILTER")
        if lot:
            step = _dec(lot["stepSize"])
            if qty < _dec(lot["minQty"]) or qty > _dec(lot["maxQty"]) or (step and qty % step != 0):
                raise _ApiError(400, -1013, "Filter failure: LOT_SIZE")
        for kind in ("NOTIONAL", "MIN_NOTIONAL"):
            flt = self._filter(market, kind)
            if flt and qty * notional_price < _dec(flt["minNotional"]):
                raise _ApiError(400, -1013, f"Filter failure: {kind}")

    def _new_order(self, params):
        market = self._market(params)
        symbol = market["symbol"]
        if market["status"] != "TRADING":
            raise _ApiError(400, -1013, "Market is closed.")
        side = params.get("side")
        otype = params.get("type")
        if side not in ("BUY", "SELL"):
            raise _ApiError(400, -1102, "Mandatory parameter 'side' was not sent, was empty/null, or malformed.")
        if otype not in ("LIMIT", "MARKET", "LIMIT_MAKER"):
            raise _ApiError(400, -1116, "Invalid orderType.")
        client_id = params.get("newClientOrderId") or f"fake-{self._next_order_id}"
        if any(o["clientOrderId"] == client_id and o["status"] in ("NEW", "PARTIALLY_FILLED") for o in self.orders.values()):
            raise _ApiError(400, -2010, "Duplicate order sent.")
        last = self._last_price(symbol)
        if last is None:
            raise _ApiError(400, -1013, "No market data for symbol.")
        last_d = _dec(_fmt(last))
        price = _dec(params["price"]) if params.get("price") else None
        qty = _dec(params["quantity"]) if params.get("quantity") else None
        if otype in ("LIMIT", "LIMIT_MAKER"):
            if price is None or qty is None:
                raise _ApiError(400, -1102, "Mandatory parameter 'price' or 'quantity' was not sent, was empty/null, or malformed.")
            if otype == "LIMIT" and not params.get("timeInForce"):
                raise _ApiError(400, -1102, "Mandatory parameter 'timeInForce' was not sent, was empty/null, or malformed.")
        else:
            if qty is None:
                quote_qty = params.get("quoteOrderQty")
                if not quote_qty:
                    raise _ApiError(400, -1102, "Param 'quantity' or 'quoteOrderQty' must be sent, but both were empty/null!")
                step = _dec(self._filter(market, "LOT_SIZE").get("stepSize", "0.00000001"))
                qty = (_dec(quote_qty) / last_d // step) * step
        self._check_filters(market, qty, price, price if price is not None else last_d)
        base, quote = market["baseAsset"], market["quoteAsset"]
        marketable = otype == "MARKET" or (
            otype == "LIMIT" and ((side == "BUY" and price >= last_d) or (side == "SELL" and price <= last_d)))
        if otype == "LIMIT_MAKER" and ((side == "BUY" and price >= last_d) or (side == "SELL" and price <= last_d)):
            raise _ApiError(400, -2010, "Order would immediately match and take.")
        fill_price = last_d if marketable else price
        cost_asset, cost = (quote, qty * (price if price is not None and not marketable else fill_price)) if side == "BUY" else (base, qty)
        if _dec(_fmt(self.balances.get(cost_asset, [0.0, 0.0])[0])) < cost:
            raise _ApiError(400, -2010, "Account has insufficient balance for requested action.")
        now = self.clock_ms()
        order_id = self._next_order_id
        self._next_order_id += 1
        order = {
            "symbol": symbol, "orderId": order_id, "orderListId": -1, "clientOrderId": client_id,
            "price": _fmt(price if price is not None else 0), "origQty": _fmt(qty), "executedQty": _fmt(0),
            "cummulativeQuoteQty": _fmt(0), "status": "NEW",
            "timeInForce": params.get("timeInForce", "GTC"), "type": otype, "side": side,
            "stopPrice": _fmt(0), "icebergQty": _fmt(0), "time": now, "updateTime": now, "isWorking": True,
            "workingTime": now, "origQuoteOrderQty": _fmt(params.get("quoteOrderQty") or 0),
            "selfTradePreventionMode": "EXPIRE_MAKER", "fills": [],
        }
        self.orders[order_id] = order
        if marketable and (otype == "MARKET" or self.match_limit_orders):
            self._fill(order, fill_price)
        else:
            self._lock_funds(order, +1)
        resp_type = params.get("newOrderRespType", "FULL" if otype == "MARKET" else "ACK")
        ack = {"symbol": symbol, "orderId": order_id, "orderListId": -1, "clientOrderId": client_id, "transactTime": now}
        if resp_type == "ACK":
            return ack
        view = self._order_view(order)
        for key in ("stopPrice", "icebergQty", "time", "updateTime", "isWorking", "origQuoteOrderQty"):
            view.pop(key, None)
        view["transactTime"] = now
        if resp_type == "FULL":
            view["fills"] = list(order["fills"])
        return view

    def _lock_funds(self, order, sign: int):
        market = self.markets[order["symbol"]]
        qty, price = _dec(order["origQty"]), _dec(order["price"])
        asset, amount = (market["quoteAsset"], qty * price) if order["side"] == "BUY" else (market["baseAsset"], qty)
        bal = self.balances.setdefault(asset, [0.0, 0.0])
        bal[0] -= sign * float(amount)
        bal[1] += sign * float(amount)

    def _fill(self, order, price: Decimal, from_locked: bool = False):
        market = self.markets[order["symbol"]]
        base, quote = market["baseAsset"], market["quoteAsset"]
        qty = _dec(order["origQty"])
        quote_amount = qty * price
        if from_locked:
            self._lock_funds(order, -1)
        self.balances.setdefault(base, [0.0, 0.0])
        self.balances.setdefault(quote, [0.0, 0.0])
        rate = _dec(_fmt(self.fee_rate))
        if order["side"] == "BUY":
            fee_asset, fee = base, qty * rate
            self.balances[quote][0] -= float(quote_amount)
            self.balances[base][0] += float(qty - fee)
        else:
            fee_asset, fee = quote, quote_amount * rate
            self.balances[base][0] -= float(qty)
            self.balances[quote][0] += float(quote_amount - fee)
        trade_id = self._next_trade_id
        self._next_trade_id += 1
        now = self.clock_ms()
        order.update(status="FILLED", executedQty=_fmt(qty), cummulativeQuoteQty=_fmt(quote_amount), updateTime=now)
        order["fills"] = [{"price": _fmt(price), "qty": _fmt(qty), "commission": _fmt(fee),
                           "commissionAsset": fee_asset, "tradeId": trade_id}]
        self.trades.append({
            "symbol": order["symbol"], "id": trade_id, "orderId": order["orderId"], "orderListId": -1,
            "price": _fmt(price), "qty": _fmt(qty), "quoteQty": _fmt(quote_amount), "commission": _fmt(fee),
            "commissionAsset": fee_asset, "time": now, "isBuyer": order["side"] == "BUY",
            "isMaker": order["type"] != "MARKET", "isBestMatch": True,
        })

    def _match_orders(self):
        """Fill resting LIMIT orders whose price was touched by a revealed
        candle that opened after the order was placed."""
        if not self.match_limit_orders:
            return
        now = self.clock_ms()
        for order in self.orders.values():
            if order["status"] != "NEW" or order["type"] not in ("LIMIT", "LIMIT_MAKER"):
                continue
            series = self.series.get(order["symbol"])
            if series is None:
                continue
            n = series.revealed(now)
            lo = int(np.searchsorted(series.open_ms[:n], order["time"], side="right"))
            if lo >= n:
                continue
            price = _dec(order["price"])
            if order["side"] == "BUY" and series.l[lo:n].min() <= float(price):
                self._fill(order, price, from_locked=True)
            elif order["side"] == "SELL" and series.h[lo:n].max() >= float(price):
                self._fill(order, price, from_locked=True)

    def _find_order(self, params, code, msg):
        market = self._market(params)
        if "orderId" in params:
            order = self.orders.get(int(params["orderId"]))
        elif "origClientOrderId" in params:
            matches = [o for o in self.orders.values() if o["clientOrderId"] == params["origClientOrderId"]]
            order = matches[-1] if matches else None
        else:
            raise _ApiError(400, -1102, "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!")
        if order is None or order["symbol"] != market["symbol"]:
            raise _ApiError(400, code, msg)
        return order

    @staticmethod
    def _order_view(order):
        return {k: v for k, v in order.items() if k != "fills"}

    def _cancel(self, params):
        order = self._find_order(params, -2011, "Unknown order sent.")
        if order["status"] not in ("NEW", "PARTIALLY_FILLED"):
            raise _ApiError(400, -2011, "Unknown order sent.")
        self._lock_funds(order, -1)
        order.update(status="CANCELED", updateTime=self.clock_ms())
        view = self._order_view(order)
        for key in ("stopPrice", "icebergQty", "time", "updateTime", "isWorking", "workingTime", "origQuoteOrderQty"):
            view.pop(key, None)
        view["origClientOrderId"] = order["clientOrderId"]
        view["transactTime"] = self.clock_ms()
        return view

    def _cancel_all(self, params):
        market = self._market(params)
        out = []
        for order in list(self.orders.values()):
            if order["symbol"] == market["symbol"] and order["status"] in ("NEW", "PARTIALLY_FILLED"):
                out.append(self._cancel({"symbol": market["symbol"], "orderId": order["orderId"]}))
        return out

    def _open_orders(self, params):
        market = self._market(params, required=False)
        return [self._order_view(o) for o in self.orders.values()
                if o["status"] in ("NEW", "PARTIALLY_FILLED") and (market is None or o["symbol"] == market["symbol"])]

    def _all_orders(self, params):
        market = self._market(params)
        orders = [self._order_view(o) for o in self.orders.values() if o["symbol"] == market["symbol"]]
        limit = min(int(params.get("limit", 500)), 1000)
        return orders[-limit:]

    def _my_trades(self, params):
        market = self._market(params)
        trades = [t for t in self.trades if t["symbol"] == market["symbol"]]
        if "orderId" in params:
            trades = [t for t in trades if t["orderId"] == int(params["orderId"])]
        limit = min(int(params.get("limit", 500)), 1000)
        return trades[-limit:]
