"""The FastAPI application factory."""
from __future__ import annotations

import logging
import os
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.middleware.trustedhost import TrustedHostMiddleware

from kronos_trader import __version__
from kronos_trader.config import Settings

from .context import WebContext
from .errors import error_response, install_error_handlers
from .routes import api_v1, backtests, docs, login, pages, paper, sweeps, workbench
from .security import OPEN_PATHS, authorized, cross_site_reason
from .services.models import Loader, default_loader

HERE = Path(__file__).parent
LOOPBACK_HOSTS = ["127.0.0.1", "localhost", "::1", "[::1]"]


def _hosts(bind: str) -> list[str]:
    """Host headers to accept: loopback names when bound to loopback (a guard against DNS
    rebinding), anything when bound to all interfaces."""
    if bind in ("0.0.0.0", "::", ""):
        return ["*"]
    return sorted({bind, *LOOPBACK_HOSTS})


def create_app(settings: Settings | None = None, store=None, loader: Loader | None = None,
               trusted_hosts: list[str] | None = None) -> FastAPI:
    """Build the web app. `store` defaults to opening `settings.database.url` on first use;
    `loader(name, device)` loads models (tests inject a fake)."""
    settings = settings or Settings()
    precision = settings.model.precision  # the same model (and model id) as the CLI's
    context = WebContext(settings, store, loader or (lambda name, device: default_loader(name, device, precision)))

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        context.jobs.shutdown()

    app = FastAPI(title="kronos-trader API", version=__version__, docs_url=None, redoc_url=None,
                  openapi_url="/openapi.json", lifespan=lifespan,
                  description="Kronos forecasts, backtests, paper runs and sweeps. Errors are "
                              '{"error": "<one line>"}. With web.api_key_env set, send '
                              "`Authorization: Bearer <key>` (the web pages ask for it once, at /login).")
    app.state.ctx = context
    app.state.templates = Jinja2Templates(directory=str(HERE / "templates"))
    install_error_handlers(app)

    @app.middleware("http")
    async def _headers(request, call_next):
        response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; script-src 'self' 'unsafe-eval'; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data: blob:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'")
        return response

    api_key = settings.web.api_key_env and os.environ.get(settings.web.api_key_env)
    app.state.api_key = api_key or None

    @app.middleware("http")
    async def _guards(request, call_next):
        reason = cross_site_reason(request)
        if reason:
            return error_response(request, 403, reason)
        path = request.url.path
        if api_key and not path.startswith(OPEN_PATHS) and not authorized(request, api_key):
            if path.startswith(("/api/", "/openapi.json")):
                return error_response(request, 401, f"missing or wrong API key: send Authorization: Bearer <key> "
                                                    f"(the server reads it from ${settings.web.api_key_env})")
            return RedirectResponse("/login", status_code=303)
        return await call_next(request)

    app.add_middleware(TrustedHostMiddleware, allowed_hosts=trusted_hosts or _hosts(settings.web.host))
    app.include_router(api_v1.router)
    app.include_router(docs.router)
    app.include_router(login.router)
    for ui in (pages, workbench, backtests, paper, sweeps):  # the pages' own JSON: not the documented API
        app.include_router(ui.router, include_in_schema=False)
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    logging.getLogger("kronos_trader.web").setLevel(logging.INFO)
    return app
