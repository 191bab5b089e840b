"""The HTTP side of `cowest serve`: a FastAPI app with `/v1/chat/completions`, `/v1/models` and `/health`.

Limits, each answered the way OpenAI-compatible clients expect (an `{"error": {...}}` body):
401 without the right bearer token, 413 over `serve.max_request_bytes`, 400 for malformed JSON,
422 for a body that is not a chat request, 400 `context_length_exceeded` over `serve.max_prompt_chars`,
429 + Retry-After when `serve.max_concurrent` requests are in flight, 504 past `serve.timeout_s`.

Streaming (`stream: true`) sends `chat.completion.chunk` SSE events then `data: [DONE]`. The answer is streamed token
by token when the strong model is an OpenAI-compatible endpoint; a local strong model (llama.cpp, transformers)
does not stream, so its whole answer goes out as one chunk.

Every request logs one JSON line on stderr (id, path, status, latency, tokens); no token, and no user text unless
`serve.log_prompts`.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterator, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from cowest.errors import require

require("fastapi", "serve")
from fastapi import Request  # noqa: E402 - at module level: FastAPI resolves the handlers' string annotations here
from cowest.serve import Collaboration, Reply


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[dict[str, Any]] | None = None


class ChatRequest(BaseModel):
    """The fields of an OpenAI chat completion request that the collaboration uses; others are accepted, ignored."""

    model_config = ConfigDict(extra="allow")
    model: str
    messages: list[ChatMessage]
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    temperature: float | None = None
    stream: bool = False
    cowest: dict[str, Any] | None = None
    """`{"return_draft": true}` adds the weak draft to the response (`cowest` field)."""


def _text(content: Any) -> str:
    if isinstance(content, list):  # content parts: keep the text ones
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content or ""


def error(status: int, message: str, kind: str, code: str | None = None, headers: dict | None = None) -> Any:
    from fastapi.responses import JSONResponse

    return JSONResponse({"error": {"message": message, "type": kind, "code": code, "param": None}},
                        status_code=status, headers=headers)


class Server:
    """Per-app state (no globals): the collaboration, its worker threads and the in-flight count."""

    def __init__(self, collab: Collaboration, token: str | None, log: Any = None):
        self.collab, self.token, self.s = collab, token, collab.cfg.serve
        self.pool = ThreadPoolExecutor(max_workers=self.s.max_concurrent, thread_name_prefix="cowest-serve")
        self.in_flight = 0
        self._lock = threading.Lock()  # streams release their slot from a worker thread
        self.log_stream = log or sys.stderr

    def authorized(self, header: str | None) -> bool:
        if self.token is None:
            return True
        scheme, _, given = (header or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), self.token.encode())

    def log(self, row: dict[str, Any]) -> None:
        self.log_stream.write(json.dumps(row) + "\n")
        self.log_stream.flush()

    def try_acquire(self) -> bool:
        with self._lock:
            if self.in_flight >= self.s.max_concurrent:
                return False
            self.in_flight += 1
            return True

    def release(self, *_: Any) -> None:
        with self._lock:
            self.in_flight -= 1


def build_app(collab: Collaboration, *, token: str | None, log: Any = None) -> Any:
    """The FastAPI app serving `collab`; `token=None` serves without auth (the CLI allows that on loopback only)."""
    import fastapi
    from fastapi.responses import StreamingResponse

    srv = Server(collab, token, log)
    app = fastapi.FastAPI(title="cowest", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.server = srv

    @app.middleware("http")
    async def access_log(request: Request, call_next: Any) -> Any:
        t0 = time.perf_counter()
        request.state.rid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        request.state.info = {}
        response = await call_next(request)
        srv.log({"ts": round(time.time(), 3), "id": request.state.rid, "method": request.method,
                 "path": request.url.path, "status": response.status_code,
                 "latency_ms": round(1000 * (time.perf_counter() - t0), 1), **request.state.info})
        return response

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "model": srv.s.model_name, "in_flight": srv.in_flight,
                "max_concurrent": srv.s.max_concurrent}

    @app.get("/v1/models")
    async def models(request: Request) -> Any:
        if not srv.authorized(request.headers.get("authorization")):
            return _unauthorized()
        return {"object": "list", "data": [{"id": srv.s.model_name, "object": "model", "created": 0,
                                            "owned_by": "cowest", "weak": collab.weak.identity,
                                            "strong": collab.strong.identity, "adapter": collab.adapter}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        if not srv.authorized(request.headers.get("authorization")):
            return _unauthorized()
        size = request.headers.get("content-length")
        if size is not None and size.isdigit() and int(size) > srv.s.max_request_bytes:
            return error(413, f"request body over {srv.s.max_request_bytes} bytes", "invalid_request_error",
                         "request_too_large")
        body = await request.body()
        if len(body) > srv.s.max_request_bytes:
            return error(413, f"request body over {srv.s.max_request_bytes} bytes", "invalid_request_error",
                         "request_too_large")
        try:
            req = ChatRequest.model_validate(json.loads(body))
        except json.JSONDecodeError as e:
            return error(400, f"malformed JSON: {e.msg} at position {e.pos}", "invalid_request_error", "invalid_json")
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(x) for x in first["loc"])
            return error(422, f"'{where}': {first['msg']}", "invalid_request_error", "invalid_request")
        if req.model != srv.s.model_name:
            return error(404, f"model '{req.model}' does not exist; this server serves '{srv.s.model_name}'",
                         "invalid_request_error", "model_not_found")
        users = [m for m in req.messages if m.role == "user"]
        if not users or not _text(users[-1].content).strip():
            return error(400, "messages: need a user message with text (the question)", "invalid_request_error",
                         "no_question")
        question = _text(users[-1].content)
        prompt_chars = sum(len(_text(m.content)) for m in req.messages)
        if prompt_chars > srv.s.max_prompt_chars:
            return error(400, f"prompt of {prompt_chars} characters is over the limit of {srv.s.max_prompt_chars}",
                         "invalid_request_error", "context_length_exceeded")
        if not srv.try_acquire():  # released when the worker thread finishes, even after a 504
            return error(429, f"{srv.s.max_concurrent} requests in flight; retry shortly", "rate_limit_error",
                         "too_many_requests", headers={"Retry-After": "1"})
        rid = request.state.rid
        info = request.state.info
        info["stream"] = req.stream
        if srv.s.log_prompts:
            info["question"] = question
        params = collab.strong_params(req.max_completion_tokens or req.max_tokens, req.temperature)
        want_draft = bool((req.cowest or {}).get("return_draft"))
        loop = asyncio.get_running_loop()
        if req.stream and collab.streams:
            fut = loop.run_in_executor(srv.pool, collab.draft, collab.sample(question, rid))
        else:
            fut = loop.run_in_executor(srv.pool, collab.reply, question, rid, params)
        try:
            result = await asyncio.wait_for(asyncio.shield(fut), srv.s.timeout_s)
        except asyncio.TimeoutError:
            fut.add_done_callback(srv.release)
            return error(504, f"no answer within {srv.s.timeout_s:g} s", "timeout_error", "timeout")
        except Exception as e:  # noqa: BLE001 - a backend failure is the server's error, not the client's
            srv.release()
            info["error"] = type(e).__name__
            return error(502, f"model call failed: {type(e).__name__}", "api_error", "upstream_error")
        extra = {}
        if req.stream and collab.streams:
            draft = result
            extra = _draft_field(draft.text, collab, draft) if want_draft else {}
            info["draft_tokens"] = draft.completion_tokens
            msgs = collab.answer_messages(collab.sample(question, rid), draft.text)
            gen = _sse(rid, srv.s.model_name, collab.stream_answer(msgs, params), extra, srv)
            return StreamingResponse(gen, media_type="text/event-stream")
        srv.release()
        reply: Reply = result
        info.update(prompt_tokens=reply.answer.prompt_tokens, completion_tokens=reply.answer.completion_tokens,
                    draft_tokens=reply.draft.completion_tokens)
        if want_draft:
            extra = _draft_field(reply.draft.text, collab, reply.draft)
        if req.stream:  # a local strong model: the whole answer as one chunk
            return StreamingResponse(_sse(rid, srv.s.model_name, iter([reply.answer.text]), extra, None,
                                          reply.answer.finish_reason),
                                     media_type="text/event-stream")
        return {"id": rid, "object": "chat.completion", "created": int(time.time()), "model": srv.s.model_name,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": reply.answer.text},
                             "finish_reason": _finish(reply.answer.finish_reason), "logprobs": None}],
                "usage": {"prompt_tokens": reply.answer.prompt_tokens,
                          "completion_tokens": reply.answer.completion_tokens,
                          "total_tokens": reply.answer.prompt_tokens + reply.answer.completion_tokens},
                **extra}

    return app


def _unauthorized() -> Any:
    return error(401, "missing or wrong bearer token (Authorization: Bearer <token>)", "authentication_error",
                 "invalid_api_key", headers={"WWW-Authenticate": "Bearer"})


def _finish(reason: str) -> str:
    return reason if reason in ("stop", "length", "content_filter", "tool_calls") else "stop"


def _draft_field(text: str, collab: Collaboration, gen: Any) -> dict[str, Any]:
    return {"cowest": {"draft": text, "draft_format": collab.draft_format, "draft_tokens": gen.completion_tokens,
                       "weak": collab.weak.identity, "adapter": collab.adapter}}


def _sse(rid: str, model: str, deltas: Iterator[str], extra: dict[str, Any], srv: Server | None,
         finish: str = "stop") -> Iterator[str]:
    """chat.completion.chunk events: the role first (with the draft when asked), the text, the finish, [DONE].

    A sync generator: Starlette iterates it in a worker thread, so a streaming upstream never blocks the loop.
    `srv` set: this stream holds a concurrency slot, released when it ends.
    """
    created = int(time.time())

    def chunk(delta: dict[str, Any], reason: str | None = None, **more: Any) -> str:
        c = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model,
             "choices": [{"index": 0, "delta": delta, "finish_reason": reason, "logprobs": None}], **more}
        return f"data: {json.dumps(c)}\n\n"

    try:
        yield chunk({"role": "assistant", "content": ""}, **extra)
        for text in deltas:
            yield chunk({"content": text})
        yield chunk({}, _finish(finish))
        yield "data: [DONE]\n\n"
    finally:
        if srv is not None:
            srv.release()
