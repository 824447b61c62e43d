"""One live paper-trading cycle for many pairs: time from candle close to last order persisted.

Runs the real runner (ccxt.binance client with ccxt's own rate limiter, SQLite store,
ForecastService) against the local FakeBinance server (with a request-rate limit) and a
random-weight model with the Kronos-mini architecture (256 context, 24 steps, 8 paths by
default). Candle history is already stored (a running bot's steady state), so the cycle
fetches each pair's newly closed candle, forecasts all pairs in one batch, decides and
persists the orders.

    python benchmarks/bench_live_cycle.py                 # 100 pairs, Kronos-mini config
    python benchmarks/bench_live_cycle.py --pairs 5 --context 64 --horizon 4 --samples 2   # quick check
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import pandas as pd  # noqa: E402


def save_mini(directory: Path, max_context: int) -> Path:
    """Random weights with the Kronos-mini architecture and its 2k tokenizer."""
    import torch

    from kronos import MODEL_CONFIGS, TOKENIZER_CONFIGS, Kronos, KronosTokenizer

    torch.manual_seed(0)
    KronosTokenizer(**TOKENIZER_CONFIGS["Kronos-Tokenizer-2k"]).save_pretrained(directory / "tokenizer")
    Kronos(**MODEL_CONFIGS["Kronos-mini"]).save_pretrained(directory / "model")
    (directory / "kronos.json").write_text(json.dumps({"max_context": max_context}))
    return directory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=100)
    parser.add_argument("--context", type=int, default=256, help="forecast.lookback")
    parser.add_argument("--horizon", type=int, default=24)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--batch", type=int, default=64, help="forecast.batch_windows")
    parser.add_argument("--model", default=None, help="model name/directory (default: random Kronos-mini)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--delay", type=float, default=5.0, help="paper.delay_seconds (added to the latency)")
    parser.add_argument("--rate-limit-ms", type=float, default=None,
                        help="ccxt per-request spacing (default: ccxt's binance value, 50 ms)")
    parser.add_argument("--server-limit", type=int, default=50, help="server: max requests per second (429 beyond)")
    args = parser.parse_args()

    from fake_exchange import FakeBinance, make_candles
    from kronos_trader.config import parse_settings
    from kronos_trader.exchange import make_client
    from kronos_trader.forecasting.models import load_model
    from kronos_trader.forecasting.service import ForecastService
    from kronos_trader.live import LiveRunner
    from kronos_trader.store import open_store

    tmp = Path(tempfile.mkdtemp(prefix="bench_live_"))
    model_name = args.model or str(save_mini(tmp / "kronos-mini-random", max(512, args.context + args.horizon)))
    bars = args.context + 3  # the last one is forming (as on a real exchange: it confirms the one before)
    server = FakeBinance()
    frames = {}
    for i in range(args.pairs):
        market = f"C{i:03d}USDT"
        frames[market] = make_candles("2024-06-01", bars, "1min", seed=i, price=10.0 + i)
        server.add_market(market, f"C{i:03d}", "USDT", candles=frames[market], interval="1m", tick_size="0.0001",
                          step_size="0.01", min_qty="0.01", min_notional="5.00")
    close = frames["C000USDT"].index[-2] + pd.Timedelta(minutes=1)  # the last closed candle closes here
    server.set_now(close + pd.Timedelta(seconds=args.delay))        # ...and the cycle runs delay s later
    server.set_rate_limit(args.server_limit, 1.0)
    server.start()
    try:
        settings = parse_settings({
            "model": {"name": model_name, "device": args.device},
            "forecast": {"lookback": args.context, "horizon": args.horizon, "sample_count": args.samples,
                         "batch_windows": args.batch},
            "strategy": {"params": {"signal": "return", "long_threshold": 0.0, "short_threshold": 0.0,
                                    "allow_short": True,  # every pair trades
                                    "sizing": {"kind": "fixed", "fraction": 0.9 / args.pairs}}},
            "database": {"url": f"sqlite:///{tmp / 'bench.db'}"},
            "paper": {"api_url": server.url, "quote_balance": 100_000.0, "delay_seconds": args.delay,
                      "pairs": [{"symbol": f"C{i:03d}/USDT", "timeframe": "1m"} for i in range(args.pairs)]},
        })
        store = open_store(settings.database.url)
        for market, frame in frames.items():  # history already stored (steady state)
            store.upsert_candles("binance", f"{market[:-4]}/USDT", "1m", frame.iloc[:-2])
        t = time.perf_counter()
        model = load_model(model_name, args.device)
        load_s = time.perf_counter() - t
        client = make_client("binance", api_url=server.url, rate_limit_ms=args.rate_limit_ms)
        # each pair's target (0.9 / pairs) must exceed rebalance's min_change, or nothing trades
        runner = LiveRunner(settings, store=store, client=client, min_change=min(0.02, 0.45 / args.pairs),
                            service=ForecastService.from_settings(settings, store, False, model))
        t = time.perf_counter()
        runner.start()
        start_s = time.perf_counter() - t
        server.clear_requests()
        t_cycle = time.time()
        (report,) = runner.run_cycle()
        cycle_s = time.time() - t_cycle
    finally:
        server.stop()
    clock_s = report.started - t_cycle
    to_last = (report.last_order_persisted or time.time()) - t_cycle
    limited = sum(1 for r in server.requests if r.status == 429)
    print(f"pairs {args.pairs}, Kronos-mini architecture (random weights) on {model.predictor.device}, "
          f"context {args.context}, {args.horizon} steps, {args.samples} paths, batch {args.batch}")
    print(f"model load {load_s:.2f}s, runner start (markets, run) {start_s:.2f}s  [not in the cycle]")
    print(f"requests in the cycle: {len(server.requests)} ({limited} answered 429); ccxt rateLimit "
          f"{client.rateLimit} ms")
    print(f"cycle parts: clock {clock_s:.3f}s | candles (fetch + store) {report.timings['candles']:.3f}s | "
          f"forecast {report.timings['forecast']:.3f}s | settle {report.timings['settle']:.3f}s | "
          f"decide + persist {report.timings['decide']:.3f}s | send {report.timings['send']:.3f}s")
    print(f"{report.decisions} decisions, {len(report.orders)} orders, {len(report.rejected)} rejected, "
          f"skipped: {len(report.skipped)}")
    print(f"candle close -> last order persisted: {args.delay + to_last:.2f}s "
          f"(delay {args.delay:g}s + cycle {to_last:.2f}s; whole cycle {cycle_s:.2f}s)")


if __name__ == "__main__":
    main()
