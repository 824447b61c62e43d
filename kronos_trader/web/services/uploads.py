"""Receive an uploaded candle file: stream it into a private temp dir under a size limit.

The user's filename only picks the reader (by suffix) and labels messages; the bytes are
written as `upload<suffix>` inside a fresh `mkdtemp` directory that is removed afterwards,
so nothing is ever written outside the temp dir whatever the name says.
"""
from __future__ import annotations

import re
import shutil
import tempfile
from contextlib import asynccontextmanager
from pathlib import Path, PurePath
from typing import AsyncIterator

from fastapi import Request

from kronos_trader.data.fileio import SUFFIXES

from ..errors import WebError

UPLOAD_SUFFIXES = {s: fmt for s, fmt in SUFFIXES.items()}


def display_name(raw: str | None) -> str:
    """A safe label for messages: the base name, printable characters, at most 80 long."""
    name = PurePath((raw or "").replace("\\", "/")).name
    name = re.sub(r"[^\w.\- ()\[\]+@]", "_", name).strip() or "upload"
    return name[-80:]


def upload_suffix(name: str) -> str:
    suffix = PurePath(name).suffix.lower()
    if suffix not in UPLOAD_SUFFIXES:
        allowed = ", ".join(sorted(UPLOAD_SUFFIXES))
        raise WebError(415, f"{name}: unsupported file type '{suffix or '(none)'}'; upload one of {allowed}")
    return suffix


@asynccontextmanager
async def received_file(request: Request, name: str, limit_bytes: int) -> AsyncIterator[Path]:
    """Yield the path of the request body saved to a temp file; 413 past `limit_bytes`."""
    suffix = upload_suffix(name)
    limit_text = f"{limit_bytes / 1_000_000:g} MB"
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit_bytes:
        raise WebError(413, f"{name}: file is larger than the {limit_text} upload limit")
    directory = Path(tempfile.mkdtemp(prefix="kronos-web-"))
    try:
        path = directory / f"upload{suffix}"
        size = 0
        with path.open("wb") as handle:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit_bytes:
                    raise WebError(413, f"{name}: file is larger than the {limit_text} upload limit")
                handle.write(chunk)
        if size == 0:
            raise WebError(422, f"{name}: file is empty")
        yield path
    finally:
        shutil.rmtree(directory, ignore_errors=True)
