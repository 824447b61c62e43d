"""Latency of one forecast served to a program, against the same forecast in process.

Per model, with the model warm (one untimed call first) and the same window and seed each
time: (1) in process, `ForecastService.forecast_latest`; (2) through the versioned API,
`POST /api/v1/forecast` to a uvicorn server on 127.0.0.1 with httpx (the candles posted as
JSON); (3) through the MCP server (`kronos-trader mcp`, a subprocess over stdio) with the
official SDK's client calling the `forecast` tool. Prints the median of `--repeats` calls
and each path's ratio to the in-process time, and checks the three give the same numbers.

    python benchmarks/bench_serving.py --models kronos-nano --repeats 3      # quick: ~1 min here
    python benchmarks/bench_serving.py                                       # + Kronos-small config: ~2 min
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the servers have it (kronos_trader sets it): fair on a busy machine

from common import build_pair, header  # noqa: E402


def model_dir(name: str, folder: Path) -> str:
    """The bundled model by name; a hub name as random weights with its official configs."""
    from kronos.hub import BUNDLED_DIR

    if (BUNDLED_DIR / name).is_dir():
        return name
    tokenizer, model, context = build_pair(name)
    tokenizer.save_pretrained(folder / name / "tokenizer")
    model.save_pretrained(folder / name / "model")
    (folder / name / "kronos.json").write_text(json.dumps({"max_context": context}))
    return str(folder / name)


def timed(call, repeats: int) -> tuple[float, object]:
    out = call()  # warm
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = call()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def serve_api(settings) -> tuple[object, int]:
    import uvicorn

    from kronos_trader.web import create_app

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return server, port


async def mcp_times(config: Path, body: dict, repeats: int, threads: int) -> tuple[float, dict]:
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": str(threads)}
    params = StdioServerParameters(command=sys.executable, args=["-m", "kronos_trader.cli", "mcp", "-c", str(config)],
                                   env=env, cwd=str(config.parent))
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        times, doc = [], None
        for i in range(repeats + 1):
            start = time.perf_counter()
            result = await session.call_tool("forecast", body)
            if i:
                times.append(time.perf_counter() - start)
            if result.isError:
                raise RuntimeError(result.content[0].text)
            doc = json.loads(result.content[0].text)
        return statistics.median(times), doc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="kronos-nano,kronos-small")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--lookback", type=int, default=256)
    parser.add_argument("--horizon", type=int, default=24)
    parser.add_argument("--paths", type=int, default=8)
    args = parser.parse_args()

    import httpx
    import numpy as np
    import torch
    import yaml

    from kronos_trader.config import parse_settings
    from kronos_trader.data import SAMPLE_DATA_PATH, load_candles
    from kronos_trader.forecasting.models import load_model
    from kronos_trader.forecasting.service import ForecastService

    print(header())
    candles = load_candles(SAMPLE_DATA_PATH).iloc[-(args.lookback + 50):]
    body = {"candles": {"timestamps": [t.isoformat() for t in candles.index],
                        **{c: candles[c].tolist() for c in ("open", "high", "low", "close", "volume", "amount")}},
            "symbol": "BTC/USDT"}
    threads = torch.get_num_threads()
    print(f"one forecast: {args.lookback} bars in, {args.horizon} steps, {args.paths} paths; median of "
          f"{args.repeats} warm calls; {threads} torch threads\n")
    print(f"{'model':<14}{'in process':>12}{'API (HTTP)':>20}{'MCP (stdio)':>20}")
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        folder = Path(tmp)
        for name in args.models.split(","):
            raw = {"model": {"name": model_dir(name, folder), "device": "cpu"},
                   "forecast": {"lookback": args.lookback, "horizon": args.horizon, "sample_count": args.paths},
                   "database": {"url": f"sqlite:///{folder / 'bench.db'}"}}
            settings = parse_settings(raw)
            config = folder / f"{name}.yaml"
            config.write_text(yaml.safe_dump(raw))
            model = load_model(settings.model.name, "cpu")

            def in_process():  # a fresh service per call, as a request gets (a service memoizes its windows)
                return ForecastService.from_settings(settings, None, False, model).forecast_latest(
                    candles, "BTC/USDT", "1h")

            local, direct = timed(in_process, args.repeats)
            server, port = serve_api(settings)
            try:
                with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600) as http:
                    api, doc = timed(lambda: http.post("/api/v1/forecast", json=body).raise_for_status().json(),
                                     args.repeats)
            finally:
                server.should_exit = True
            mcp, mdoc = asyncio.run(mcp_times(config, body, args.repeats, threads))
            for label, d in (("API", doc), ("MCP", mdoc)):
                if not np.allclose(d["mean"]["close"], direct.mean[:, 3], rtol=1e-5):
                    raise SystemExit(f"{name}: the {label} forecast differs from the in-process one")
            print(f"{name:<14}{local * 1e3:>10.0f}ms{api * 1e3:>10.0f}ms ({api / local:4.2f}x)"
                  f"{mcp * 1e3:>10.0f}ms ({mcp / local:4.2f}x)")
    print("\n" + header())


if __name__ == "__main__":
    main()
