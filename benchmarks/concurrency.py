"""Throughput of `collaborate` over HTTP: does the OpenAI backend keep `concurrency` requests in flight?

A local threaded OpenAI-compatible server on 127.0.0.1 answers every chat completion after a fixed delay (200 ms
by default). Both roles go through the `openai` provider at concurrency C. Ideal throughput is C / delay requests
per second; the goal is achieved / ideal >= 0.9. Prints a table; `--record` appends it to BENCHMARKS.md.

    python benchmarks/concurrency.py [--samples 64] [--delay 0.2] [--concurrency 4 8 16] [--record]
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cowest.core.config import ModelConfig
from cowest.models.base import load_backend
from cowest.core.records import Sample, SamplingParams
from cowest.strategies import STRATEGIES, StrategyContext

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_io import machine, record  # noqa: E402


def make_handler(delay: float) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as a real server would
        # Headers and body go out as two writes; with Nagle on, the client's delayed ACK adds ~40 ms to each
        # response. Real servers (uvicorn, vLLM) set TCP_NODELAY too.
        disable_nagle_algorithm = True

        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            time.sleep(delay)
            n = body.get("n", 1)
            reply = {"id": "x", "object": "chat.completion", "created": int(time.time()), "model": body["model"],
                     "choices": [{"index": i, "message": {"role": "assistant", "content": "Because.\nAnswer: A"},
                                  "finish_reason": "stop", "logprobs": None} for i in range(n)],
                     "usage": {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13}}
            data = json.dumps(reply).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    return Handler


def run(samples: int, delay: float, concurrency: int, base_url: str) -> dict:
    data = [Sample(id=f"s{i}", task="bench", family="mc", question=f"Question {i}?", answers=["A"],
                   options={"A": "yes", "B": "no"}) for i in range(samples)]
    mcfg = ModelConfig(spec="openai/bench-model", base_url=base_url, concurrency=concurrency, max_retries=0)
    weak, strong = load_backend(mcfg), load_backend(mcfg)
    ctx = StrategyContext(weak_params=SamplingParams(max_tokens=8), strong_params=SamplingParams(max_tokens=8))
    try:
        t0 = time.perf_counter()
        traces = STRATEGIES.get("collaborate")(data, weak=weak, strong=strong, ctx=ctx)
        wall = time.perf_counter() - t0
    finally:
        weak.close()
        strong.close()
    requests = sum(len(t.steps) for t in traces)
    assert all(t.prediction == "A" for t in traces)
    achieved = requests / wall
    ideal = concurrency / delay
    return {"concurrency": concurrency, "requests": requests, "wall_s": wall, "achieved": achieved, "ideal": ideal,
            "ratio": achieved / ideal}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--delay", type=float, default=0.2)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[4, 8, 16])
    ap.add_argument("--record", action="store_true", help="append the table to BENCHMARKS.md")
    args = ap.parse_args()
    ThreadingHTTPServer.request_queue_size = 128  # the default listen backlog (5) drops bursts of connects
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(args.delay))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base_url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    try:
        rows = [run(args.samples, args.delay, c, base_url) for c in args.concurrency]
    finally:
        server.shutdown()
    lines = [f"### collaborate over HTTP: concurrency ({datetime.date.today()}, {machine()})", "",
             f"`python benchmarks/concurrency.py` — {args.samples} samples x 2 steps, local threaded server on "
             f"127.0.0.1 answering after {args.delay * 1000:.0f} ms, `openai` provider for both roles. "
             "Goal: achieved / ideal >= 0.9.", "",
             "| concurrency | requests | wall s | achieved req/s | ideal req/s | achieved / ideal |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['concurrency']} | {r['requests']} | {r['wall_s']:.2f} | {r['achieved']:.1f} | {r['ideal']:.1f} | "
              f"{r['ratio']:.2f} |" for r in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.record:
        record("concurrency.py", text)


if __name__ == "__main__":
    main()
