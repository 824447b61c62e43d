"""`kronos-trader mcp` driven by the official SDK's own client: over stdio (the server a
subprocess, as an agent runs it) and over streamable HTTP on 127.0.0.1; every tool, the
resources, and bad input as a one-line tool error."""
from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from test_web_support import backtest_run_id, candles, paper_run_id, settings

pytest.importorskip("mcp")
from mcp import ClientSession, StdioServerParameters  # noqa: E402
from mcp.client.stdio import stdio_client  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _config(tmp_path) -> Path:
    path = tmp_path / "mcp.yaml"
    path.write_text(yaml.safe_dump(settings().model_dump(mode="json")))
    return path


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
            "OMP_NUM_THREADS": "1"}


def window(n: int = 100) -> dict:
    frame = candles(n)
    return {"timestamps": [t.isoformat() for t in frame.index],
            **{col: frame[col].round(6).tolist() for col in ("open", "high", "low", "close", "volume")}}


def _doc(result) -> dict:
    assert not result.isError, result.content
    return json.loads(result.content[0].text)


def _error(result) -> str:
    assert result.isError, result.content
    text = result.content[0].text
    assert "\n" not in text and "Traceback" not in text, text
    return text


async def _stdio_session(tmp_path) -> None:
    run, paper = backtest_run_id(), paper_run_id()
    params = StdioServerParameters(command=sys.executable, args=["-m", "kronos_trader.cli", "mcp", "-c",
                                                                 str(_config(tmp_path))],
                                   env=_env(), cwd=str(tmp_path))
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        tools = {t.name: t for t in (await session.list_tools()).tools}
        assert set(tools) == {"forecast", "backtest", "skill", "paper_status"}
        assert all(t.annotations and t.annotations.readOnlyHint for t in tools.values())

        doc = _doc(await session.call_tool("forecast", {"candles": window(), "seed": 3}))
        assert len(doc["stamps"]) == 8 and len(doc["p_up"]) == 8 and "0.95" in doc["quantiles"]
        stored = _doc(await session.call_tool("forecast", {"symbol": "BTC/USDT", "timeframe": "1h",
                                                           "skill_windows": 3}))
        assert stored["symbol"] == "BTC/USDT" and stored["skill"]["windows"] == 3

        bt = _doc(await session.call_tool("backtest", {"bars": 40}))
        assert bt["bars"] == 40 and "total_return" in bt["metrics"]["strategy"] and bt["verdict"]
        sk = _doc(await session.call_tool("skill", {"run_id": run}))
        assert sk["run_id"] == run and sk["verdict"]
        st = _doc(await session.call_tool("paper_status", {"run_id": paper}))
        assert st["run"]["id"] == paper and st["pairs"][0]["symbol"] == "ETH/USDT"

        resources = {str(r.uri) for r in (await session.list_resources()).resources}
        assert resources == {"kronos://reports/backtest/latest", "kronos://reports/paper/latest"}
        latest = await session.read_resource("kronos://reports/backtest/latest")
        assert "run_id" in json.loads(latest.contents[0].text)

        short = window(30)
        assert "fewer than the lookback" in _error(await session.call_tool("forecast", {"candles": short}))
        nan = window()
        nan["close"][40] = None
        assert "missing value" in _error(await session.call_tool("forecast", {"candles": nan}))
        assert "unknown model" in _error(await session.call_tool("forecast", {"candles": window(),
                                                                             "model": "kronos-huge"}))
        assert "no run" in _error(await session.call_tool("skill", {"run_id": "nope"}))
        assert "bars must be" in _error(await session.call_tool("backtest", {"bars": 0}))
        no_ts = {k: v for k, v in window().items() if k != "timestamps"}
        assert "timestamps" in _error(await session.call_tool("forecast", {"candles": no_ts}))


def test_stdio_with_the_sdk_client(tmp_path):
    asyncio.run(asyncio.wait_for(_stdio_session(tmp_path), 240))


def test_streamable_http_on_loopback(tmp_path):
    from mcp.client.streamable_http import streamable_http_client

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "kronos_trader.cli", "mcp", "-c", str(_config(tmp_path)),
                             "--transport", "http", "--port", str(port)], env=_env(), cwd=str(tmp_path),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    async def session() -> None:
        async with streamable_http_client(f"http://127.0.0.1:{port}/mcp") as (read, write, _), \
                ClientSession(read, write) as s:
            await s.initialize()
            assert {t.name for t in (await s.list_tools()).tools} >= {"forecast", "paper_status"}
            doc = _doc(await s.call_tool("forecast", {"candles": window()}))
            assert len(doc["stamps"]) == 8

    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert proc.poll() is None, proc.stderr.read().decode()
            time.sleep(0.2)
        asyncio.run(asyncio.wait_for(session(), 120))
    finally:
        proc.terminate()
        proc.wait(10)


def test_bad_transport_is_one_line(tmp_path):
    out = subprocess.run([sys.executable, "-m", "kronos_trader.cli", "mcp", "--transport", "ws"], env=_env(),
                         cwd=str(tmp_path), capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and out.stderr.strip().startswith("error: --transport must be stdio or http")
