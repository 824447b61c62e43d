"""/docs: the API reference, rendered here from the app's own OpenAPI document (offline:
no CDN scripts, which this server's content policy and an air-gapped host both refuse)."""
from __future__ import annotations

import json

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

router = APIRouter(include_in_schema=False)


def _schema_text(schema: dict | None, components: dict) -> str:
    """A request/response schema as indented JSON, with the body's $ref resolved one level."""
    if not schema:
        return ""
    ref = schema.get("$ref", "")
    if ref.startswith("#/components/schemas/"):
        schema = components.get(ref.rsplit("/", 1)[1], schema)
    return json.dumps(schema.get("properties", schema), indent=1)


@router.get("/docs", response_class=HTMLResponse)
def docs(request: Request):
    spec = request.app.openapi()
    components = spec.get("components", {}).get("schemas", {})
    endpoints = []
    for path, methods in spec.get("paths", {}).items():
        for method, op in methods.items():
            body = (op.get("requestBody") or {}).get("content", {}).get("application/json", {}).get("schema")
            ok = ((op.get("responses") or {}).get("200") or {}).get("content", {}).get("application/json", {})
            endpoints.append({"method": method.upper(), "path": path, "summary": op.get("summary", ""),
                              "description": op.get("description", ""),
                              "params": [(p["name"], p.get("in"), p.get("required", False))
                                         for p in op.get("parameters", [])],
                              "body": _schema_text(body, components),
                              "response": _schema_text(ok.get("schema"), components)})
    return request.app.state.templates.TemplateResponse(
        request, "docs.html", {"title": "API", "page": "docs", "spec": spec, "endpoints": endpoints})
