"""A fault-injecting OpenAI-compatible chat server on 127.0.0.1 (real sockets, stdlib http.server, one thread).

The last user message names a plan (anywhere in it): "plan:429,500,ok;rest" answers its 1st request with 429, the 2nd with 500,
the 3rd and later with a completion. Faults: 429 (Retry-After: 1), 429soon (Retry-After: soon), 429date
(Retry-After as an HTTP date), 500, 502, 503, 400, badjson (200 with a torn JSON body), html (200, text/html),
plain (200, text/plain with a JSON body that is not a completion), stall (waits past the client's timeout, then
hangs up), trickle (200 and a completion one byte every `trickle_s`), drop (closes the socket without a word),
empty (200, `choices: []`), nullchoice (`choices: [null]`), content5 (`content: 5`), finish5
(`finish_reason: 5`), short (a body cut at half its Content-Length), surrogate (a completion whose text ends in a
lone surrogate, `\ud800` in the JSON: valid JSON, not storable as UTF-8), slow (0.3 s, then a completion), one (a completion with one choice whatever `n` asks).
A prompt with no plan ("rand" or any text) is answered by `random_faults`: with probability `fault_rate` a fault
drawn from `FAULT_KINDS` (seeded, so a soak run is reproducible), else a completion; `injected` counts them.
The server counts every hit and every completion it delivered, per prompt.
"""

from __future__ import annotations

import email.utils
import json
import random
import threading
import time
from collections import Counter, defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FAULT_KINDS = ("429", "429soon", "429date", "500", "502", "503", "badjson", "html", "plain", "stall", "trickle",
               "drop", "empty", "nullchoice", "content5", "finish5", "short", "surrogate")


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        # A client killed mid-request (the soak's kill -9) resets its connection: expected, not worth a traceback.
        import sys

        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class FaultServer:
    def __init__(self, stall_s: float = 2.0, trickle_s: float = 0.5, fault_rate: float = 0.0, seed: int = 0,
                 faults: tuple[str, ...] = FAULT_KINDS, port: int = 0):
        self.stall_s = stall_s
        self.trickle_s = trickle_s
        self.fault_rate = fault_rate
        self.fault_kinds = faults
        self.rng = random.Random(seed)
        self.injected: Counter[str] = Counter()
        self.hits: dict[str, int] = defaultdict(int)
        self.hit_times: dict[str, list[float]] = defaultdict(list)
        self.delivered: dict[str, int] = defaultdict(int)
        self.auth_headers: list[str] = []
        self.bodies: list[dict] = []
        self.inflight = 0
        self.max_inflight = 0
        self.lock = threading.Lock()
        self.httpd = _QuietServer(("127.0.0.1", port), self._handler())
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> "FaultServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def _handler(self):
        srv = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output clean
                pass

            def _send(self, status: int, body: bytes, ctype: str = "application/json", headers=None):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                prompt = [m for m in req["messages"] if m["role"] == "user"][-1]["content"]
                at = prompt.find("plan:")  # a plan anywhere in the prompt (e.g. inside a task's question)
                planned = at >= 0
                plan = prompt[at:].split(";")[0].removeprefix("plan:").split(",")
                with srv.lock:
                    srv.hits[prompt] += 1
                    srv.hit_times[prompt].append(time.monotonic())
                    srv.auth_headers.append(self.headers.get("Authorization", ""))
                    srv.bodies.append(req)
                    if planned:
                        step = plan[min(srv.hits[prompt], len(plan)) - 1]
                    elif srv.rng.random() < srv.fault_rate:
                        step = srv.rng.choice(srv.fault_kinds)
                        srv.injected[step] += 1
                    else:
                        step = "ok"
                    srv.inflight += 1
                    srv.max_inflight = max(srv.max_inflight, srv.inflight)
                try:
                    self._act(step, prompt, req)
                finally:
                    with srv.lock:
                        srv.inflight -= 1

            def _act(self, step: str, prompt: str, req: dict) -> None:
                if step.startswith("429"):
                    after = {"429": "1", "429soon": "soon",
                             "429date": email.utils.formatdate(time.time() + 1, usegmt=True)}[step]
                    return self._send(429, b'{"error": {"message": "slow down"}}', headers={"Retry-After": after})
                if step in ("500", "502", "503", "400"):
                    return self._send(int(step), b'{"error": {"message": "boom"}}')
                if step == "badjson":
                    return self._send(200, b'{"id": "x", "choices": [{"index": 0, "mess')
                if step == "html":
                    return self._send(200, b"<html>gateway</html>", ctype="text/html")
                if step == "plain":
                    return self._send(200, b'{"status": "ok"}', ctype="text/plain")
                if step in ("empty", "nullchoice"):
                    body = {"id": "x", "object": "chat.completion", "created": 0, "model": req["model"],
                            "choices": [] if step == "empty" else [None]}
                    return self._send(200, json.dumps(body).encode())
                if step == "stall":
                    time.sleep(srv.stall_s)
                    self.close_connection = True
                    return
                if step == "drop":
                    self.close_connection = True
                    return
                if step == "slow":
                    time.sleep(0.3)
                n = 1 if step == "one" else req.get("n", 1)
                seed = req.get("seed")
                choices = []
                for i in range(n):
                    text = f"echo:{prompt}|seed={seed}|i={i}" + ("\ud800" if step == "surrogate" else "")
                    c = {"index": i, "message": {"role": "assistant", "content": 5 if step == "content5" else text},
                         "finish_reason": 5 if step == "finish5" else "stop"}
                    if req.get("logprobs"):
                        c["logprobs"] = {"content": [{"token": "e", "logprob": -0.5, "bytes": None,
                                                      "top_logprobs": []}] * 3}
                    choices.append(c)
                body = {"id": "cmpl-1", "object": "chat.completion", "created": 0, "model": req["model"],
                        "choices": choices,
                        "usage": {"prompt_tokens": 7, "completion_tokens": 3 * n, "total_tokens": 7 + 3 * n}}
                data = json.dumps(body).encode()
                if step == "trickle":
                    return self._trickle(data)
                if step == "short":
                    return self._short(data)
                if step not in ("content5", "finish5", "surrogate"):
                    with srv.lock:
                        srv.delivered[prompt] += 1
                self._send(200, data)

            def _short(self, body: bytes) -> None:
                """A Content-Length past the body, and the connection closed after half of it."""
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.close_connection = True

            def _trickle(self, body: bytes) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    for i in range(len(body)):
                        self.wfile.write(body[i:i + 1])
                        self.wfile.flush()
                        time.sleep(srv.trickle_s)
                except OSError:  # the client gave up: what it should do
                    pass
                self.close_connection = True

        return Handler
