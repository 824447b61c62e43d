"""Forecast workbench API: datasets (upload, sample, database), models, forecast jobs,
results and downloads."""
from __future__ import annotations

import json

import pandas as pd
from fastapi import APIRouter, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from ..context import ctx
from ..errors import WebError
from ..schemas import ForecastRequest, StoredDatasetRequest
from ..services import datasets as ds
from ..services.forecasting import check_window, result_csv, run_forecast
from ..services.models import device_choices, find_choice, load_error_message, model_choices
from ..services.serialize import floats, stamps
from ..services.uploads import display_name, received_file

router = APIRouter(prefix="/api")
MAX_CANDLES = 5000


def _choices(request: Request):
    c = ctx(request)
    return model_choices(list(c.settings.web.model_dirs), c.settings.model.name)


@router.get("/models")
def models(request: Request):
    settings = ctx(request).settings
    return {"models": [m.public() for m in _choices(request)], "devices": device_choices(),
            "defaults": {"device": settings.model.device, "lookback": settings.forecast.lookback,
                         "horizon": settings.forecast.horizon, "calendar": settings.data.calendar,
                         "temperature": settings.forecast.temperature, "top_p": settings.forecast.top_p,
                         "top_k": settings.forecast.top_k, "sample_count": settings.forecast.sample_count,
                         "seed": settings.forecast.seed},
            "max_upload_mb": settings.web.max_upload_mb}


@router.post("/datasets/upload")
async def upload(request: Request, x_filename: str | None = Header(None)):
    """The request body is the file itself; the `X-Filename` header names it (the custom
    header also means a cross-site page cannot post here without a CORS preflight)."""
    if not x_filename:
        raise WebError(400, "missing X-Filename header: send the file as the request body and its name in it")
    name = display_name(x_filename)
    if request.headers.get("content-type", "").startswith("multipart/"):
        raise WebError(415, f"{name}: send the file itself as the request body, not a multipart form "
                            f"(e.g. curl --data-binary @{name} -H 'X-Filename: {name}')")
    c = ctx(request)
    async with received_file(request, name, c.upload_limit) as path:
        candles, columns, notes = await run_in_threadpool(ds.parse_file, path, name)
    return c.datasets.add(name, "upload", candles, columns, notes).info()


@router.post("/datasets/sample")
def sample(request: Request):
    return ctx(request).datasets.sample().info()


@router.get("/datasets/stored")
def stored(request: Request):
    return {"series": ds.stored_series(ctx(request).store())}


@router.post("/datasets/stored")
def load_stored(request: Request, body: StoredDatasetRequest):
    c = ctx(request)
    candles = ds.load_stored(c.store(), body.source, body.symbol, body.timeframe)
    name = f"{body.symbol} {body.timeframe} ({body.source}, database)"
    return c.datasets.add(name, "database", candles, ["timestamp", *candles.columns]).info()


@router.get("/datasets/{dataset_id}")
def dataset_info(request: Request, dataset_id: str):
    return ctx(request).datasets.get(dataset_id).info()


@router.post("/datasets/{dataset_id}/keepalive")
def dataset_keepalive(request: Request, dataset_id: str):
    """The page showing this dataset is still open: keep it (sent every 30 s)."""
    dataset = ctx(request).datasets.keep(dataset_id)
    return {"id": dataset.id, "held_seconds": ctx(request).datasets.lease}


@router.get("/datasets/{dataset_id}/candles")
def dataset_candles(request: Request, dataset_id: str, start: int = Query(0, ge=0),
                    count: int = Query(500, ge=1, le=MAX_CANDLES)):
    candles = ctx(request).datasets.get(dataset_id).candles
    if start >= len(candles):
        raise WebError(422, f"start {start} is past the last bar ({len(candles) - 1})")
    part = candles.iloc[start:start + count]
    return {"start": start, "timestamps": stamps(part.index),
            **{col: floats(part[col], 8) for col in ("open", "high", "low", "close", "volume")}}


@router.get("/datasets/{dataset_id}/locate")
def dataset_locate(request: Request, dataset_id: str, time: str = Query(..., max_length=40)):
    """Index of the first bar at or after `time` (for the window-start date picker)."""
    candles = ctx(request).datasets.get(dataset_id).candles
    try:
        t = pd.Timestamp(time)
    except (ValueError, TypeError):
        raise WebError(422, f"'{time}' is not a date/time") from None
    if t.tzinfo is not None:
        t = t.tz_convert("UTC").tz_localize(None)
    return {"index": int(min(candles.index.searchsorted(t), len(candles) - 1))}


@router.post("/forecasts", status_code=202)
def submit_forecast(request: Request, body: ForecastRequest):
    c = ctx(request)
    body = body.model_copy(update={"lookback": body.lookback or c.settings.forecast.lookback,
                                   "horizon": body.horizon or c.settings.forecast.horizon})
    dataset = c.datasets.get(body.dataset_id)
    choice = find_choice(_choices(request), body.model)
    if body.device not in device_choices():
        raise WebError(422, f"device '{body.device}' is not available here; choose one of "
                            f"{', '.join(device_choices())}")
    window = check_window(dataset, body, choice.max_context)
    loader = c.loader

    def work(report):
        report("downloading model from the Hugging Face hub" if choice.kind == "hub" else "loading model", 0.0)
        try:
            model = loader(choice.load_name, body.device)
        except Exception as exc:  # any loader failure is shown as one clear line
            raise WebError(422, load_error_message(choice, exc)) from None
        device = str(getattr(model.predictor, "device", body.device))
        return run_forecast(dataset, body, model, window, device, report, choice.short_name, c.settings)

    job = c.jobs.submit(f"{choice.id} on {dataset.name}", work)
    return job.public()


@router.get("/jobs/{job_id}")
def job_status(request: Request, job_id: str):
    return ctx(request).jobs.get(job_id).public()


def _result(request: Request, job_id: str) -> dict:
    job = ctx(request).jobs.get(job_id)
    if job.status == "failed":
        raise WebError(409, f"the forecast failed: {job.error}")
    if job.result is None:
        raise WebError(409, f"the forecast is still {job.status}; poll /api/jobs/{job_id} until it is done")
    return job.result


@router.get("/jobs/{job_id}/result")
def job_result(request: Request, job_id: str):
    return _result(request, job_id)


def _filename(result: dict, ext: str) -> str:
    meta = result["meta"]
    base = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in meta["dataset"].split(" (")[0])[:40]
    stamp = meta["window_end_time"].replace(" ", "T").replace(":", "")
    return f"forecast-{base}-{stamp}.{ext}"


@router.get("/jobs/{job_id}/result.json")
def job_result_json(request: Request, job_id: str):
    result = _result(request, job_id)
    return Response(json.dumps(result, indent=1), media_type="application/json",
                    headers={"Content-Disposition": f'attachment; filename="{_filename(result, "json")}"'})


@router.get("/jobs/{job_id}/result.csv")
def job_result_csv(request: Request, job_id: str):
    result = _result(request, job_id)
    return Response(result_csv(result), media_type="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{_filename(result, "csv")}"'})

