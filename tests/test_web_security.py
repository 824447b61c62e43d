"""Web hardening reported in issue 21/24: cross-site state changes, server paths in model
labels, forecast jobs and datasets dropped from the bounded in-memory caches (410 with a
reason, and a user's own upload kept while their page is open)."""
from __future__ import annotations

import pytest
from test_web_support import assert_one_line_error, candles, client, one_torch_thread, tiny_pair

from kronos_trader.web.errors import WebError
from kronos_trader.web.services.datasets import DatasetRegistry
from kronos_trader.web.services.jobs import JobManager


@pytest.fixture(scope="module")
def c():
    with one_torch_thread():
        yield client()


@pytest.mark.parametrize("headers", [{"Origin": "http://evil.example"}, {"Origin": "null"},
                                     {"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"},
                                     {"Origin": "http://127.0.0.1:9999"}])
def test_cross_site_post_is_refused(c, headers):
    """Reported: a page on any site could make the visitor's browser POST /api/datasets/sample
    (a "simple" request: no body, no custom header, so no CORS preflight)."""
    r = c.post("/api/datasets/sample", headers=headers)
    assert_one_line_error(r, 403, "cross-site")
    r = c.post("/api/forecasts", json={"dataset_id": "ab", "model": "x"}, headers=headers)
    assert r.status_code == 403


def test_same_origin_and_non_browser_posts_pass(c):
    base = str(c.base_url).rstrip("/")
    for headers in ({}, {"Origin": base, "Sec-Fetch-Site": "same-origin"}, {"Sec-Fetch-Site": "none"}):
        assert c.post("/api/datasets/sample", headers=headers).status_code == 200, headers
    assert c.get("/api/models", headers={"Origin": "http://evil.example"}).status_code == 200  # reads stay


def test_model_labels_show_no_server_paths(c):
    """Reported: allow-listed model directories were labelled with their absolute path."""
    r = c.get("/api/models")
    text = r.text
    assert str(tiny_pair()) not in text and str(tiny_pair().parent) not in text
    local = [m for m in r.json()["models"] if m["kind"] == "local"]
    assert local and all(m["label"] == f"{tiny_pair().name} (local)" for m in local)


def test_dropped_job_is_410_with_the_reason():
    """Reported: forecast jobs beyond the last 32 answered 404, as if they never existed."""
    jobs = JobManager(keep=2)
    try:
        first = jobs.submit("one", lambda report: {"x": 1})
        jobs.submit("two", lambda report: {"x": 2})
        jobs.submit("three", lambda report: {"x": 3})
        with pytest.raises(WebError) as info:
            jobs.get(first.id)
        assert info.value.status == 410 and "last 2" in info.value.message
        with pytest.raises(WebError) as info:
            jobs.get("0" * 32)
        assert info.value.status == 404
    finally:
        jobs.shutdown()


def test_evicted_dataset_is_410_and_an_open_pages_upload_is_kept():
    """Reported: the 16-slot dataset cache dropped other users' uploads (404)."""
    registry = DatasetRegistry(capacity=2)
    mine = registry.add("mine.csv", "upload", candles(50), ["timestamp"])
    registry.keep(mine.id)  # my page is open: its heartbeat
    others = [registry.add(f"other{i}.csv", "upload", candles(50), ["timestamp"]) for i in range(3)]
    assert registry.get(mine.id) is mine
    with pytest.raises(WebError) as info:
        registry.get(others[0].id)
    assert info.value.status == 410 and "2 datasets" in info.value.message
    with pytest.raises(WebError) as info:
        registry.get("f" * 32)
    assert info.value.status == 404


def test_full_of_open_pages_refuses_a_new_upload_with_503():
    registry = DatasetRegistry(capacity=1)
    registry.keep(registry.add("a.csv", "upload", candles(50), ["timestamp"]).id)
    with pytest.raises(WebError) as info:
        registry.add("b.csv", "upload", candles(50), ["timestamp"])
    assert info.value.status == 503


def test_keepalive_route(c):
    dataset = c.post("/api/datasets/sample").json()
    r = c.post(f"/api/datasets/{dataset['id']}/keepalive")
    assert r.status_code == 200 and r.json()["id"] == dataset["id"]
    assert c.post("/api/datasets/" + "e" * 32 + "/keepalive").status_code == 404
    assert c.post(f"/api/datasets/{dataset['id']}/keepalive", headers={"Origin": "http://evil.example"}
                  ).status_code == 403


def test_the_page_sends_keepalives(c):
    assert "keepalive" in c.get("/static/workbench.js").text
