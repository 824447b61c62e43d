"""Request guards: no cross-site state changes, and the optional API key (a header for
programs; for the web pages a login that sets a cookie derived from the key).

A browser attaches `Origin` (and `Sec-Fetch-Site`) to every POST; a page on another site
could otherwise make a visitor's browser post to this server ("simple" requests need no
CORS preflight). Clients without either header (curl, scripts, the MCP server) are not
browsers and pass; the API key, when configured, is what guards them.
"""
from __future__ import annotations

import hashlib
import hmac
from urllib.parse import urlsplit

from fastapi import Request

SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
SESSION_COOKIE = "kronos_session"
OPEN_PATHS = ("/login", "/healthz", "/static/", "/vendor/")  # served without the key


def cross_site_reason(request: Request) -> str | None:
    """Why a state-changing request comes from another site, or None when it does not."""
    if request.method in SAFE_METHODS:
        return None
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return f"cross-site request refused (Sec-Fetch-Site: {site})"
    origin = request.headers.get("origin")
    if origin is None:
        return None
    if origin == "null" or urlsplit(origin).netloc.lower() != request.headers.get("host", "").lower():
        return f"cross-site request refused (Origin {origin} is not this server)"
    return None


def api_key_ok(request: Request, key: str) -> bool:
    """`Authorization: Bearer <key>` or `X-API-Key: <key>`, compared in constant time."""
    given = request.headers.get("x-api-key")
    auth = request.headers.get("authorization", "")
    if given is None and auth.lower().startswith("bearer "):
        given = auth[7:].strip()
    return given is not None and hmac.compare_digest(given.encode(), key.encode())


def session_token(key: str) -> str:
    """What the login cookie holds: derived from the key, so the key itself is never stored in a browser."""
    return hmac.new(key.encode(), b"kronos-trader web session", hashlib.sha256).hexdigest()


def authorized(request: Request, key: str) -> bool:
    """The key in a header, or the login cookie."""
    if api_key_ok(request, key):
        return True
    cookie = request.cookies.get(SESSION_COOKIE)
    return cookie is not None and hmac.compare_digest(cookie.encode(), session_token(key).encode())
