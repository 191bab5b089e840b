"""A streaming OpenAI-compatible chat server on 127.0.0.1 (real sockets, stdlib http.server, a thread per request):
the upstream `cowest serve` streams its strong answers from, with faults on request.

`plan:A,B,...` anywhere in the last user message scripts the streamed answers to that message: the 1st request
gets A, the 2nd B, later ones the last step. Steps: ok (`tokens` tokens, `delay_s` apart, then a finish and
[DONE]), slow (200 tokens 0.05 s apart: long enough to drop a client mid-answer), 500 / 429 / 400 (that status
before any event; 429 asks for `Retry-After: 1`), drop (hangs up before any event), torn (a 200 whose stream
ends after its first, empty event: no text, no finish), cut (two tokens, then hangs up without a finish), stall
(headers and nothing more, until the client leaves). Without a plan: ok. A request without `stream` gets one
JSON completion `draft for <message>` (the weak model's call). The server counts hits per plan, and streams that
ended because the client went away (`cancelled`), each with the time it noticed.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class SSEUpstream:
    def __init__(self, tokens: int = 5, delay_s: float = 0.0):
        self.tokens, self.delay_s = tokens, delay_s
        self.hits: dict[str, int] = defaultdict(int)
        self.cancelled: list[float] = []
        self.open_streams = 0
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.httpd.request_queue_size = 512
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> "SSEUpstream":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def _handler(self) -> type:
        up = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _json(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                if status == 429:
                    self.send_header("Retry-After", "1")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                text = [m for m in req["messages"] if m["role"] == "user"][-1]["content"]
                if not req.get("stream"):
                    return self._json(200, {"id": "c", "object": "chat.completion", "created": 0,
                                            "model": req["model"], "usage": {"prompt_tokens": 3,
                                                                             "completion_tokens": 2,
                                                                             "total_tokens": 5},
                                            "choices": [{"index": 0, "finish_reason": "stop", "message": {
                                                "role": "assistant", "content": f"draft for {text[:40]}"}}]})
                m = re.search(r"plan:([\w,]+)", text)
                plan = m.group(1).split(",") if m else ["ok"]
                key = m.group(1) if m else ""
                with up.lock:
                    up.hits[key] += 1
                    step = plan[min(up.hits[key], len(plan)) - 1]
                if step in ("500", "429", "400"):
                    return self._json(int(step), {"error": {"message": f"upstream says {step}"}})
                if step == "drop":
                    self.close_connection = True
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
                with up.lock:
                    up.open_streams += 1
                try:
                    self._stream(step, req["model"], bool((req.get("stream_options") or {}).get("include_usage")))
                except (BrokenPipeError, ConnectionResetError):
                    with up.lock:
                        up.cancelled.append(time.monotonic())
                finally:
                    with up.lock:
                        up.open_streams -= 1

            def _event(self, delta: dict, finish: str | None = None) -> None:
                chunk = {"id": "s", "object": "chat.completion.chunk", "created": 0, "model": "m",
                         "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                self.wfile.flush()

            def _stream(self, step: str, model: str, usage: bool) -> None:
                if step == "stall":
                    while True:  # a comment line now and then: the only way to notice the client has gone
                        time.sleep(0.05)
                        self.wfile.write(b": waiting\n\n")
                        self.wfile.flush()
                n, delay = (200, 0.05) if step == "slow" else (up.tokens, up.delay_s)
                self._event({"role": "assistant", "content": ""})
                if step == "torn":
                    return
                for i in range(2 if step == "cut" else n):
                    if delay:
                        time.sleep(delay)
                    self._event({"content": f"t{i} "})
                if step == "cut":
                    return
                self._event({}, "stop")
                if usage:  # as the OpenAI API: a last chunk with no choices
                    last = {"id": "s", "object": "chat.completion.chunk", "created": 0, "model": "m", "choices": [],
                            "usage": {"prompt_tokens": 11, "completion_tokens": n, "total_tokens": 11 + n}}
                    self.wfile.write(f"data: {json.dumps(last)}\n\n".encode())
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()

        return Handler
