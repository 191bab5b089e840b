"""Soak of `cowest serve` (issue 13, the serve load section): 200 clients at once, 20% of them drop mid-request.

A real `python -m cowest.cli serve` subprocess on 127.0.0.1 whose weak and strong models are both `openai/`
endpoints on a local fake OpenAI-compatible server (tests/sse_upstream.py: drafts at once, answers streamed as
`--tokens` tokens `--token-delay` s apart), so the figures measure the server (admission, slots, threads,
streaming, disconnects), not a model. All clients start together; each sends one request: every 5th drops
(alternately while its request is drafting, before a byte of the answer, and mid-stream after two events), the
others read their whole answer (half streamed, half not). Beside them, `--trickle` more connections send a
request's headers one byte every 0.2 s (a slow-loris client), which `serve.receive_timeout_s` (`--receive-timeout`)
must cut. Then:

- no slot leaked: the server's in-flight count (`/health` with the token) is back to 0 within 1 s of the last
  request's end, and the upstream has no stream left open;
- every kept client got 200 with a complete answer (`[DONE]`, or the full JSON body);
- every trickling connection was closed by the server within the receive timeout plus 1.5 s;
- p50 / p95 latency of the kept clients (request sent to last byte).

    python benchmarks/soak_serve.py [--clients 200] [--drop 0.2] [--trickle 40] [--record]

Exit status 1 when a goal is missed. `--record` writes the table into BENCHMARKS.md (block `soak_serve`).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_io import machine, record  # noqa: E402
from sse_upstream import SSEUpstream  # noqa: E402

TOKEN = "soak-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(upstream: str, tmp: Path, max_concurrent: int, receive_timeout_s: float) -> tuple[subprocess.Popen, str]:
    cfg = tmp / "soak.yaml"
    cfg.write_text(f"run_dir: {tmp / 'run'}\nmodels:\n"
                   f"  weak: {{spec: openai/weak, base_url: '{upstream}'}}\n"
                   f"  strong: {{spec: openai/strong, base_url: '{upstream}'}}\n"
                   f"serve: {{max_concurrent: {max_concurrent}, timeout_s: 60, "
                   f"receive_timeout_s: {receive_timeout_s}}}\n")
    port = free_port()
    env = {**os.environ, "COWEST_SERVE_TOKEN": TOKEN, "PYTHONPATH": str(ROOT / "src")}
    log = open(tmp / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "cowest.cli", "serve", str(cfg), "--port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {(tmp / 'server.log').read_text()[-2000:]}")
        try:
            if httpx.get(url + "/health").status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.1)
    raise SystemExit("server did not start within 60 s")


def in_flight(url: str) -> int:
    return httpx.get(url + "/health", headers=AUTH).json()["in_flight"]


def payload(i: int, stream: bool) -> dict:
    return {"model": "cowest", "messages": [{"role": "user", "content": f"question {i}"}], "stream": stream}


def drop_early(url: str, i: int) -> None:
    """Send a streaming request over a raw socket and hang up before any byte of the answer."""
    host, port = url.removeprefix("http://").split(":")
    data = json.dumps(payload(i, True)).encode()
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     + f"Authorization: Bearer {TOKEN}\r\nContent-Length: {len(data)}\r\n\r\n".encode() + data)
        time.sleep(0.005)


def drop_mid_stream(c: httpx.Client, url: str, i: int) -> None:
    with c.stream("POST", url + "/v1/chat/completions", json=payload(i, True)) as r:
        events = 0
        for line in r.iter_lines():
            events += line.startswith("data: ")
            if events == 2:
                return


def complete(c: httpx.Client, url: str, i: int, stream: bool) -> tuple[int, bool]:
    """(status, whether the answer arrived whole)."""
    if not stream:
        r = c.post(url + "/v1/chat/completions", json=payload(i, False))
        return r.status_code, r.status_code == 200 and bool(r.json()["choices"][0]["message"]["content"])
    with c.stream("POST", url + "/v1/chat/completions", json=payload(i, True)) as r:
        lines = [x for x in r.iter_lines() if x.startswith("data: ")]
        return r.status_code, bool(lines) and lines[-1] == "data: [DONE]"


def trickle(url: str, barrier: threading.Barrier, cut_after: list[float], lock: threading.Lock) -> None:
    """Headers one byte every 0.2 s until the server hangs up; the seconds it took go to `cut_after` (inf: never
    within 60 s)."""
    host, port = url.removeprefix("http://").split(":")
    head = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {TOKEN}\r\nContent-Length: 100\r\n\r\n".encode())
    barrier.wait()
    t0, took = time.monotonic(), float("inf")
    with socket.create_connection((host, int(port)), timeout=60) as sock:
        for i in range(300):
            try:
                sock.sendall(head[i % len(head):i % len(head) + 1])
                sock.settimeout(0.2)
                if sock.recv(1) == b"":
                    took = time.monotonic() - t0
                    break
            except TimeoutError:
                continue  # nothing from the server yet: the next byte
            except OSError:  # reset or broken pipe: the server closed it
                took = time.monotonic() - t0
                break
    with lock:
        cut_after.append(took)


def soak(url: str, clients: int, drop: float, trickling: int = 0) -> dict:
    every = max(1, round(1 / drop)) if drop > 0 else clients + 1
    barrier = threading.Barrier(clients + trickling)
    lat: list[float] = []
    outcomes: dict[str, int] = {}
    lock = threading.Lock()
    ends: list[float] = []

    def run(i: int) -> None:
        c = httpx.Client(headers=AUTH, timeout=60)  # made before the start: its setup is not the server's time
        barrier.wait()
        t0 = time.perf_counter()
        try:
            if i % every == 0 and (i // every) % 2:
                drop_early(url, i)
                kind = "dropped"
            elif i % every == 0:
                drop_mid_stream(c, url, i)
                kind = "dropped"
            else:
                status, whole = complete(c, url, i, stream=i % 2 == 1)
                kind = f"{status}{'' if whole else ' incomplete'}"
                if status == 200 and whole:
                    with lock:
                        lat.append(time.perf_counter() - t0)
        except httpx.HTTPError as e:
            kind = type(e).__name__
        finally:
            c.close()
        with lock:
            outcomes[kind] = outcomes.get(kind, 0) + 1
            ends.append(time.monotonic())

    cut_after: list[float] = []
    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    threads += [threading.Thread(target=trickle, args=(url, barrier, cut_after, lock)) for _ in range(trickling)]
    t_start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t_start
    last = max(ends)
    while in_flight(url) != 0 and time.monotonic() - last < 10:
        time.sleep(0.01)
    zero_after = time.monotonic() - last
    lat.sort()
    return {"clients": clients, "dropped": outcomes.get("dropped", 0), "kept": clients - outcomes.get("dropped", 0),
            "ok": outcomes.get("200", 0), "outcomes": outcomes, "wall_s": wall,
            "in_flight_zero_after_s": max(0.0, zero_after), "in_flight_now": in_flight(url),
            "trickling": trickling, "trickle_cut_max_s": max(cut_after, default=0.0),
            "trickle_cut_median_s": statistics.median(cut_after) if cut_after else 0.0,
            "p50_ms": 1000 * statistics.median(lat) if lat else float("nan"),
            "p95_ms": 1000 * lat[int(0.95 * (len(lat) - 1))] if lat else float("nan")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--drop", type=float, default=0.2, help="share of clients that drop mid-request")
    ap.add_argument("--tokens", type=int, default=20, help="tokens per streamed answer")
    ap.add_argument("--token-delay", type=float, default=0.01, help="seconds between upstream tokens")
    ap.add_argument("--trickle", type=int, default=40, help="connections that trickle their headers (slow loris)")
    ap.add_argument("--receive-timeout", type=float, default=3.0, help="serve.receive_timeout_s")
    ap.add_argument("--record", action="store_true", help="write the result into BENCHMARKS.md")
    args = ap.parse_args()
    load_before = os.getloadavg()[0]
    with SSEUpstream(tokens=args.tokens, delay_s=args.token_delay) as up, \
            tempfile.TemporaryDirectory() as tmp:
        proc, url = start_server(up.base_url, Path(tmp), max_concurrent=max(256, args.clients),
                                 receive_timeout_s=args.receive_timeout)
        try:
            r = soak(url, args.clients, args.drop, args.trickle)
            time.sleep(0.5)
            r["upstream_open"], r["upstream_cancelled"] = up.open_streams, len(up.cancelled)
        finally:
            proc.terminate()
            proc.wait(30)
            server_log = (Path(tmp) / "server.log").read_text()
    r["tracebacks"] = server_log.count("Traceback")
    r["status_500"] = sum(1 for x in server_log.splitlines() if x.startswith("{") and json.loads(x)["status"] >= 500)
    goals = {"no slot leaked (in-flight 0 within 1 s)": r["in_flight_zero_after_s"] <= 1.0 and r["in_flight_now"] == 0,
             "no upstream stream left open": r["upstream_open"] == 0,
             "every kept client answered whole": r["ok"] == r["kept"],
             "every trickling connection cut within the receive timeout + 1.5 s":
                 r["trickle_cut_max_s"] <= args.receive_timeout + 1.5,
             "no 5xx, no traceback": r["tracebacks"] == 0 and r["status_500"] == 0}
    print(json.dumps(r, indent=1))
    for goal, met in goals.items():
        print(f"{'met ' if met else 'MISSED'}  {goal}")
    if args.record:
        record("soak_serve", table(r, goals, args, load_before))
    return 0 if all(goals.values()) else 1


def table(r: dict, goals: dict, args: argparse.Namespace, load_before: float) -> str:
    return "\n".join([
        f"## Serve soak: {args.clients} clients at once, {args.drop:.0%} drop mid-request, {args.trickle} trickle "
        "their headers (`benchmarks/soak_serve.py`)",
        "",
        f"Machine: {machine()}; 1-min load average at the start {load_before:.2f} (it includes the minute before; "
        "during the run nothing else held the CPU lock). A real `cowest serve` subprocess, weak and strong both `openai/` endpoints on a local "
        f"fake server (drafts at once, answers of {args.tokens} tokens {args.token_delay:g} s apart), "
        f"`serve.max_concurrent` {max(256, args.clients)}; the clients are threads of one Python process, all started "
        "together, one request each; half the kept ones stream, half do not; the dropped ones hang up alternately "
        "before any byte of the answer and after two streamed events. Beside them, "
        f"{args.trickle} connections send a request's headers one byte every 0.2 s, against `serve.receive_timeout_s` "
        f"{args.receive_timeout:g}. Clients, fake upstream and server share the "
        "same cores, so the latencies are those of a saturated 2-core machine, not of the server alone.",
        "",
        "| clients | dropped | kept, answered whole | p50 ms | p95 ms | wall s | in-flight 0 after last request | "
        "upstream streams left open | upstream streams closed on drop | trickling cut after, s (median / max) | "
        "5xx / tracebacks |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        f"| {r['clients']} | {r['dropped']} | {r['ok']} / {r['kept']} | {r['p50_ms']:.0f} | {r['p95_ms']:.0f} | "
        f"{r['wall_s']:.1f} | {r['in_flight_zero_after_s']:.2f} s | {r['upstream_open']} | {r['upstream_cancelled']} | "
        f"{r['trickle_cut_median_s']:.2f} / {r['trickle_cut_max_s']:.2f} | {r['status_500']} / {r['tracebacks']} |",
        "",
        "Goals: " + "; ".join(f"{g}: {'met' if m else 'MISSED'}" for g, m in goals.items()) + ".",
    ])


if __name__ == "__main__":
    sys.exit(main())
