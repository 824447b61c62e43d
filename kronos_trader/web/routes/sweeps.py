"""Sweep pages and their JSON API."""
from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from ..context import ctx
from ..services import sweeps
from .pages import _page

router = APIRouter()


def _url(request: Request) -> str:
    ctx(request).store()  # opens (and migrates) the database first
    return ctx(request).settings.database.url


@router.get("/sweeps", response_class=HTMLResponse)
def sweeps_page(request: Request):
    return _page(request, "sweeps.html", "Sweeps")


@router.get("/sweeps/{name}", response_class=HTMLResponse)
def sweep_page(request: Request, name: str):
    sweeps.sweep_detail(_url(request), name)  # 404 for an unknown sweep
    return _page(request, "sweep.html", f"Sweep {name}", sweep_name=name)


@router.get("/api/sweeps")
def list_sweeps(request: Request):
    return {"sweeps": sweeps.list_sweeps(_url(request))}


@router.get("/api/sweeps/{name}")
def sweep(request: Request, name: str):
    return sweeps.sweep_detail(_url(request), name)
