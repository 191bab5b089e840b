"""Load test of `cowest serve` on loopback: throughput and p50/p95 latency at 1, 4 and 16 concurrent clients.

Backends: MOCK (weak `mock/answer`, strong `mock/echo`; no model time), so the table measures the server itself
(auth, validation, limits, thread pool, JSON, HTTP) rather than a model. A model's generation time adds to each
request on top; with local models the per-backend lock serialises requests, with an OpenAI-compatible strong
endpoint they overlap up to `serve.max_concurrent`.

    python benchmarks/serve.py [--requests 300] [--write BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import io
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
from datetime import date
from pathlib import Path

import httpx
import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from cowest.core.config import ExperimentConfig  # noqa: E402
from cowest.models.mock import MockBackend  # noqa: E402
from cowest.serve import Collaboration  # noqa: E402
from cowest.serve_app import build_app  # noqa: E402

TOKEN = "bench-token"
START, END = "<!-- serve.py:start -->", "<!-- serve.py:end -->"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def level(url: str, clients: int, total: int) -> dict:
    """`clients` threads, each with its own keep-alive connection, sending `total` requests between them."""
    lat: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    body = {"model": "cowest", "messages": [{"role": "user", "content": "What is six times seven?"}]}

    def worker(n: int) -> None:
        with httpx.Client(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60) as c:
            for _ in range(n):
                t0 = time.perf_counter()
                r = c.post(url + "/v1/chat/completions", json=body)
                dt = time.perf_counter() - t0
                with lock:
                    lat.append(dt)
                    statuses[r.status_code] = statuses.get(r.status_code, 0) + 1

    per = total // clients
    threads = [threading.Thread(target=worker, args=(per,)) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    lat.sort()
    return {"clients": clients, "requests": len(lat), "ok": statuses.get(200, 0), "rps": len(lat) / wall,
            "p50_ms": 1000 * statistics.median(lat), "p95_ms": 1000 * lat[int(0.95 * (len(lat) - 1))]}


def machine() -> str:
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = re.search(r"Model name:\s*(.+)", out)
    cpus = re.search(r"^CPU\(s\):\s*(\d+)", out, re.M)
    return f"{model.group(1).strip() if model else 'unknown CPU'}, {cpus.group(1) if cpus else '?'} CPUs"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=320)
    ap.add_argument("--write", type=Path, default=None, help="replace the serve.py section of this markdown file")
    args = ap.parse_args()
    cfg = ExperimentConfig()
    cfg.serve.max_concurrent = 16  # every level fits: no 429s, the table is latency under load
    collab = Collaboration(cfg, MockBackend("answer:Six times seven is 42."), MockBackend("echo"))
    app = build_app(collab, token=TOKEN, log=io.StringIO())
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    th = threading.Thread(target=server.run, daemon=True)
    th.start()
    while not server.started:
        time.sleep(0.01)
    url = f"http://127.0.0.1:{port}"
    level(url, 1, 20)  # warm-up
    rows = [level(url, c, args.requests) for c in (1, 4, 16)]
    server.should_exit = True
    th.join(10)
    lines = [f"Measured {date.today()} on {machine()} (shared with other work), uvicorn + FastAPI in one process, "
             f"mock backends (no model time), {args.requests} requests per level, keep-alive httpx clients.", "",
             "| clients | requests | 200 OK | req/s | p50 ms | p95 ms |", "| --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {r['clients']} | {r['requests']} | {r['ok']} | {r['rps']:.0f} | {r['p50_ms']:.1f} | "
              f"{r['p95_ms']:.1f} |" for r in rows]
    table = "\n".join(lines)
    print(table)
    if args.write:
        text = args.write.read_text() if args.write.exists() else ""
        block = f"{START}\n## Serving (benchmarks/serve.py)\n\n{table}\n{END}"
        if START in text:
            text = re.sub(re.escape(START) + ".*?" + re.escape(END), lambda m: block, text, flags=re.S)
        else:
            text = text.rstrip() + "\n\n" + block + "\n"
        args.write.write_text(text)


if __name__ == "__main__":
    main()
