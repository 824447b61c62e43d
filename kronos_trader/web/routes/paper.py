"""Paper-trading monitor API."""
from __future__ import annotations

from fastapi import APIRouter, Request

from ..context import ctx
from ..services import paper

router = APIRouter(prefix="/api/paper")


@router.get("")
def list_paper_runs(request: Request):
    return {"runs": paper.list_runs(ctx(request).store())}


@router.get("/{run_id}")
def paper_run(request: Request, run_id: str):
    return paper.paper_detail(ctx(request).store(), run_id)
