"""/login: with an API key configured (`web.api_key_env`) the web pages ask for it once and
keep a cookie derived from it (HttpOnly, SameSite=Strict); programs send the key itself."""
from __future__ import annotations

import hmac
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from ..security import SESSION_COOKIE, session_token

router = APIRouter(include_in_schema=False)


def _form(request: Request, error: str | None = None, status: int = 200) -> HTMLResponse:
    return request.app.state.templates.TemplateResponse(
        request, "login.html", {"title": "Log in", "page": "login", "error": error}, status_code=status)


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request):
    if request.app.state.api_key is None:
        return RedirectResponse("/", status_code=303)
    return _form(request)


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request):
    key = request.app.state.api_key
    if key is None:
        return RedirectResponse("/", status_code=303)
    given = (parse_qs((await request.body())[:4096].decode(errors="replace")).get("key") or [""])[0]
    if not hmac.compare_digest(given.encode(), key.encode()):
        return _form(request, "wrong key", 401)
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(SESSION_COOKIE, session_token(key), httponly=True, samesite="strict",
                        secure=request.url.scheme == "https")
    return response
