"""HTML pages (thin shells; their data comes from the JSON API) and the vendored Plotly."""
from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse

from ..context import ctx
from ..errors import WebError
from ..services.backtests import get_backtest

router = APIRouter()


def _page(request: Request, name: str, title: str, **extra) -> HTMLResponse:
    context = {"title": title, "page": name.removesuffix(".html"),
               "max_upload_mb": ctx(request).settings.web.max_upload_mb, **extra}
    return request.app.state.templates.TemplateResponse(request, name, context)


@router.get("/", response_class=HTMLResponse)
def workbench_page(request: Request):
    return _page(request, "workbench.html", "Forecast workbench")


@router.get("/backtests", response_class=HTMLResponse)
def backtests_page(request: Request):
    return _page(request, "backtests.html", "Backtests")


@router.get("/backtests/{run_id}", response_class=HTMLResponse)
def backtest_page(request: Request, run_id: str):
    run = get_backtest(ctx(request).store(), run_id)
    return _page(request, "backtest.html", f"Backtest {run.name}", run_id=run.id)


@router.get("/paper", response_class=HTMLResponse)
def paper_page(request: Request):
    return _page(request, "paper.html", "Paper trading")


@router.get("/healthz")
def health():
    return {"status": "ok"}


def plotly_js_path() -> Path:
    import plotly

    path = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    if not path.is_file():
        raise WebError(500, "plotly.min.js is missing from the installed plotly package")
    return path


@router.get("/vendor/plotly.min.js")
def plotly_js():
    return FileResponse(plotly_js_path(), media_type="text/javascript",
                        headers={"Cache-Control": "public, max-age=86400"})
