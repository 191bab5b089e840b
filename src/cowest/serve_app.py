"""The HTTP side of `cowest serve`: a FastAPI app with `/v1/chat/completions`, `/v1/models` and `/health`.

Limits, each answered the way OpenAI-compatible clients expect (an `{"error": {...}}` body):
401 without the right bearer token, 413 over `serve.max_request_bytes`, 415 for a body that is not JSON, 400 for
malformed JSON or a body that is not a chat request (`cowest.serve_request`), 400 `context_length_exceeded` over
`serve.max_prompt_chars`, 429 + Retry-After when `serve.max_concurrent` requests are in flight, 502 when the
model call fails, 504 past `serve.timeout_s`.

A request holds one concurrency slot from admission until its work ends. A client that goes away gives its slot
back at once: while the weak model drafts, the strong call is skipped (the slot returns when the draft's thread
ends: a blocking call cannot be interrupted); while an answer streams, the upstream stream is closed.

Streaming (`stream: true`) sends `chat.completion.chunk` SSE events then `data: [DONE]`. The answer is streamed token
by token when the strong model is an OpenAI-compatible endpoint; the response starts only once its first text has
arrived (failures before it are retried, and when retries run out the client gets a plain 502); a failure after
it ends the stream with an `{"error": ...}` event, which the openai SDK raises as `APIError`, and no `[DONE]`.
A local strong model (llama.cpp, transformers) does not stream, so its whole answer goes out as one chunk.

Every request logs one JSON line on stderr (id, path, status, latency, tokens, the route its question took and the
count of each route so far); no token, and no user text unless `serve.log_prompts`. With `route.serve` a router
decides per question whether the strong model is called at all (`cowest.routing.serve_route`); every answer names
its route in the `X-Cowest-Route` header and in `system_fingerprint` (`cowest-weak`, `cowest-collaborate`,
`cowest-strong`). Nothing a client receives names an upstream URL, a model path or an adapter folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any, AsyncGenerator, AsyncIterator

from pydantic import ValidationError

from cowest.core.errors import require
from cowest.core.records import SamplingParams

require("fastapi", "serve")
from fastapi import Request  # noqa: E402 - at module level: FastAPI resolves the handlers' string annotations here
from fastapi.responses import JSONResponse, StreamingResponse  # noqa: E402

from cowest.serve import Collaboration, Delta, UpstreamError  # noqa: E402
from cowest.serve_request import ChatRequest, Refusal, parse_chat, read_body  # noqa: E402


class ClientGone(Exception):
    """The client closed its connection before its answer was ready."""


class Slot:
    """One of the `serve.max_concurrent` places; released once, whichever path gets there first. `passed` once a
    running model call or a stream has taken it over (and releases it when it ends)."""

    def __init__(self, server: "Server"):
        self._server, self._held = server, True
        self.passed = False

    def release(self, *_: Any) -> None:
        with self._server.lock:
            if self._held:
                self._held = False
                self._server.in_flight -= 1

    def release_when_done(self, fut: asyncio.Future) -> None:
        """Release once `fut` (a model call in a worker thread) ends, reading its outcome so none goes unseen."""
        def done(f: asyncio.Future) -> None:
            if not f.cancelled():
                f.exception()
            self.release()
        fut.add_done_callback(done)
        self.passed = True


class Server:
    """Per-app state (no globals): the collaboration, its worker threads and the in-flight count."""

    def __init__(self, collab: Collaboration, token: str | None, log: Any = None):
        self.collab, self.token, self.s = collab, token, collab.cfg.serve
        self.pool = ThreadPoolExecutor(max_workers=self.s.max_concurrent, thread_name_prefix="cowest-serve")
        self.in_flight = 0
        self.routes: dict[str, int] = {}
        self.lock = threading.Lock()
        self.log_stream = log or sys.stderr

    def authorized(self, header: str | None) -> bool:
        if self.token is None:
            return True
        scheme, _, given = (header or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), self.token.encode())

    def count_route(self, route: str) -> dict[str, int]:
        """Count a question's route; the counts so far (logged with each request)."""
        with self.lock:
            self.routes[route] = self.routes.get(route, 0) + 1
            return dict(self.routes)

    def log(self, row: dict[str, Any]) -> None:
        self.log_stream.write(json.dumps(row) + "\n")
        self.log_stream.flush()

    def acquire(self) -> Slot:
        with self.lock:
            if self.in_flight >= self.s.max_concurrent:
                raise Refusal(429, f"{self.s.max_concurrent} requests in flight; retry shortly", "too_many_requests",
                              kind="rate_limit_error", headers={"Retry-After": "1"})
            self.in_flight += 1
        return Slot(self)


class AccessLog:
    """ASGI middleware: one JSON log line per request, and a JSON 500 (never a traceback) for a bug.

    Plain ASGI rather than `@app.middleware("http")`, which would relay streamed bodies through its own task and
    hide the client's disconnect from the stream."""

    def __init__(self, app: Any, server: Server):
        self.app, self.server = app, server

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        info: dict[str, Any] = {}
        state = scope.setdefault("state", {})
        state["rid"], state["info"] = f"chatcmpl-{uuid.uuid4().hex[:24]}", info
        status = {"code": 500, "started": False}

        async def send_seen(message: dict) -> None:
            if message["type"] == "http.response.start":
                status.update(code=message["status"], started=True)
            await send(message)

        try:
            await self.app(scope, receive, send_seen)
        except Exception as e:  # noqa: BLE001 - a bug or a vanished client: logged in one line, the client gets JSON
            info["error"] = type(e).__name__
            if not status["started"]:
                status["code"] = 500
                body = json.dumps({"error": {"message": "internal error", "type": "server_error",
                                             "code": "internal_error", "param": None}}).encode()
                with contextlib.suppress(Exception):
                    await send({"type": "http.response.start", "status": 500,
                                "headers": [(b"content-type", b"application/json")]})
                    await send({"type": "http.response.body", "body": body})
        finally:
            self.server.log({"ts": round(time.time(), 3), "id": state["rid"], "method": scope["method"],
                             "path": scope["path"], "status": status["code"],
                             "latency_ms": round(1000 * (time.perf_counter() - t0), 1), **info})


async def _disconnected(receive: Any) -> None:
    """Returns when the client has gone (the body is already read: the next ASGI message is the disconnect)."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def _until(request: Request, work: asyncio.Future, timeout: float) -> Any:
    """`work`'s result, or ClientGone when the client leaves first, or TimeoutError after `timeout` s."""
    gone = asyncio.ensure_future(_disconnected(request.receive))
    try:
        done, _ = await asyncio.wait({work, gone}, timeout=max(timeout, 0.0), return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
    if work in done:
        return work.result()
    raise ClientGone() if gone in done else TimeoutError()


def build_app(collab: Collaboration, *, token: str | None, log: Any = None) -> Any:
    """The FastAPI app serving `collab`; `token=None` serves without auth (the CLI allows that on loopback only)."""
    import fastapi

    srv = Server(collab, token, log)

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        yield
        await collab.aclose()
        srv.pool.shutdown(wait=False, cancel_futures=True)

    app = fastapi.FastAPI(title="cowest", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.server = srv  # the handlers below find their Server here
    app.add_middleware(AccessLog, server=srv)
    app.add_api_route("/health", health, methods=["GET"])
    app.add_api_route("/v1/models", models, methods=["GET"])
    app.add_api_route("/v1/chat/completions", chat, methods=["POST"])
    return app


def _server(request: Request) -> Server:
    srv: Server = request.app.state.server
    return srv


async def health(request: Request) -> dict:
    """Liveness for anyone; the load figures only with the token."""
    srv = _server(request)
    if srv.token is None or not srv.authorized(request.headers.get("authorization")):
        return {"status": "ok"}
    return {"status": "ok", "model": srv.s.model_name, "in_flight": srv.in_flight,
            "max_concurrent": srv.s.max_concurrent, "routes": dict(srv.routes)}


async def models(request: Request) -> Any:
    srv = _server(request)
    if not srv.authorized(request.headers.get("authorization")):
        return _unauthorized()
    return {"object": "list", "data": [{"id": srv.s.model_name, "object": "model", "created": 0,
                                        "owned_by": "cowest"}]}


async def chat(request: Request) -> Any:
    srv = _server(request)
    if not srv.authorized(request.headers.get("authorization")):
        return _unauthorized()
    try:
        req = parse_chat(await read_body(request, srv.s.max_request_bytes))
        question = _admissible_question(srv, req)
        params = _strong_params(srv, req)
        slot = srv.acquire()
    except Refusal as r:
        request.state.info["refused"] = r.body["error"]["code"]
        return JSONResponse(r.body, status_code=r.status, headers=r.headers)
    try:  # from here on the slot returns on every path, unless a model call or the stream has taken it over
        return await _answer(srv, request, req, question, params, slot)
    finally:
        if not slot.passed:
            slot.release()


def _admissible_question(srv: Server, req: ChatRequest) -> str:
    """The request's question; Refusal for another model's name, a request with no question or one too long."""
    if req.model != srv.s.model_name:
        raise Refusal(404, f"model '{req.model[:100]}' does not exist; this server serves "
                           f"'{srv.s.model_name}'", "model_not_found", param="model")
    question = req.question
    if req.prompt_chars > srv.s.max_prompt_chars:
        raise Refusal(400, f"prompt of {req.prompt_chars} characters is over the limit of "
                           f"{srv.s.max_prompt_chars}", "context_length_exceeded", param="messages")
    return question


def _strong_params(srv: Server, req: ChatRequest) -> SamplingParams:
    """The strong model's settings with the client's values; Refusal (400, naming the field) for a value in
    OpenAI's range that the strong model's settings refuse (top_p 0)."""
    try:
        return srv.collab.strong_params(req.max_completion_tokens or req.max_tokens, req.temperature, req.top_p)
    except ValidationError as e:
        err = e.errors(include_url=False, include_input=False)[0]
        field = ".".join(str(x) for x in err["loc"])
        raise Refusal(400, f"'{field}': {err['msg']}", "invalid_request", param=field) from None


async def _answer(srv: Server, request: Request, req: ChatRequest, question: str, params: SamplingParams,
                  slot: Slot) -> Any:
    """Draft, then answer (streamed or whole), holding `slot` (the caller releases it unless a model call that
    is still running or the stream has taken it over)."""
    turn = _Turn(srv, request, req, question, params, slot)
    try:
        draft, choice = await turn.draft()
        streams = req.stream and srv.collab.streams and choice.route != "weak"
        answer = None if streams else await turn.whole_answer(draft, choice)
    except (ClientGone, TimeoutError) as e:
        turn.release_when_work_ends()
        return _gone_or_timeout(e, turn.info, srv.s.timeout_s)
    except Exception as e:  # noqa: BLE001 - a backend failure is the server's error, not the client's
        return _upstream_failed(e, turn.info)
    extra = _route_fields(choice, srv.collab, draft if req.want_draft else None)
    if answer is None:
        return await turn.stream(draft, choice, extra)
    return turn.respond(answer, choice, extra)


class _Turn:
    """One admitted chat request on its way to an answer: its model calls run in the server's worker threads, each
    awaited until the client leaves or `serve.timeout_s` runs out."""

    def __init__(self, srv: Server, request: Request, req: ChatRequest, question: str, params: SamplingParams,
                 slot: Slot):
        self.srv, self.request, self.req, self.params, self.slot = srv, request, req, params, slot
        self.collab, self.info, self.rid = srv.collab, request.state.info, request.state.rid
        self.deadline = time.monotonic() + srv.s.timeout_s
        self.info["stream"] = req.stream
        if srv.s.log_prompts:
            self.info["question"] = question
        self.sample = self.collab.sample(question, self.rid)
        self.work: asyncio.Future[Any] | None = None

    async def _in_worker(self, fn: Any, *args: Any) -> Any:
        self.work = asyncio.get_running_loop().run_in_executor(self.srv.pool, fn, *args)
        return await _until(self.request, self.work, self.deadline - time.monotonic())

    def release_when_work_ends(self) -> None:
        """The client left or time ran out while a model call runs: a blocking call cannot be interrupted, so the
        slot returns when its thread ends."""
        assert self.work is not None
        self.slot.release_when_done(self.work)

    async def draft(self) -> tuple[Any, Any]:
        """The weak model's draft and the router's choice of route."""
        draft, choice = await self._in_worker(self.collab.draft_and_route, self.sample)
        self.info["draft_tokens"] = draft.completion_tokens
        self.info.update(route=choice.route, routes=self.srv.count_route(choice.route))
        return draft, choice

    async def whole_answer(self, draft: Any, choice: Any) -> Any:
        if choice.route == "weak":  # the router kept the weak model's answer: no strong call
            return choice.weak_answer or draft
        return await self._in_worker(self.collab.answer, self.sample, draft.text, self.params, choice.route)

    async def stream(self, draft: Any, choice: Any, extra: dict[str, Any]) -> Any:
        """The strong model's answer streamed; the slot passes to the stream once it has started."""
        response = await _start_stream(self.srv, self.request, self.req,
                                       self.collab.answer_messages(self.sample, draft.text, choice.route),
                                       self.params, extra, self.slot, self.deadline)
        self.slot.passed = isinstance(response, StreamingResponse)
        if self.slot.passed:
            response.headers[ROUTE_HEADER] = choice.route
        return response

    def respond(self, answer: Any, choice: Any, extra: dict[str, Any]) -> Any:
        """A whole answer: a chat.completion, or (asked to stream from a model that does not) one SSE chunk."""
        self.info.update(prompt_tokens=answer.prompt_tokens, completion_tokens=answer.completion_tokens)
        headers = {ROUTE_HEADER: choice.route}
        model = self.srv.s.model_name
        if self.req.stream:
            usage = {"prompt_tokens": answer.prompt_tokens, "completion_tokens": answer.completion_tokens}
            return StreamingResponse(_sse(self.rid, model, _one(answer.text, answer.finish_reason, usage), extra,
                                          self.req.include_usage), media_type="text/event-stream", headers=headers)
        return JSONResponse({
            "id": self.rid, "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer.text},
                         "finish_reason": _finish(answer.finish_reason), "logprobs": None}],
            "usage": {"prompt_tokens": answer.prompt_tokens, "completion_tokens": answer.completion_tokens,
                      "total_tokens": answer.prompt_tokens + answer.completion_tokens},
            **extra}, headers=headers)


async def _start_stream(srv: Server, request: Request, req: ChatRequest, messages: list, params: Any, extra: dict,
                        slot: Slot, deadline: float) -> Any:
    """Open the upstream stream and wait for its first text: only then does the response start, so a failure up
    to there (retried by `stream_answer`) is a plain error status rather than a stream that looks successful."""
    deltas = srv.collab.stream_answer(messages, params, usage=req.include_usage)
    first = asyncio.ensure_future(_next(deltas))
    info = request.state.info
    try:
        head = await _until(request, first, deadline - time.monotonic())
    except (ClientGone, TimeoutError) as e:
        await _cancel(first, deltas)
        return _gone_or_timeout(e, info, srv.s.timeout_s)
    except Exception as e:  # noqa: BLE001 - retries ran out (or a client error upstream)
        return _upstream_failed(e, info)
    stream = _Stream(request, deltas, slot, deadline, info)
    body = _sse(request.state.rid, srv.s.model_name, stream.deltas(head), extra, req.include_usage)
    return StreamingResponse(body, media_type="text/event-stream")


class _Stream:
    """A streamed answer holding a slot. A watcher on the client's connection releases the slot and closes the
    upstream stream the moment the client leaves, whether or not the server is iterating the body just then."""

    def __init__(self, request: Request, deltas: AsyncGenerator[Delta, None], slot: Slot, deadline: float,
                 info: dict):
        self.upstream, self.slot, self.deadline, self.info = deltas, slot, deadline, info
        self.pending: asyncio.Future | None = None
        self.closed = False
        self.tasks: set[asyncio.Future] = set()  # referenced: the loop keeps only weak references to tasks
        self.watcher = asyncio.ensure_future(_disconnected(request.receive))
        self.watcher.add_done_callback(self._client_gone)

    def _client_gone(self, watcher: asyncio.Future) -> None:
        if not watcher.cancelled():
            self.info["disconnected"] = True
        self.close()

    def close(self) -> None:
        """Release the slot and stop the upstream stream (cancelling a pending read closes it), once."""
        if self.closed:
            return
        self.closed = True
        self.slot.release()
        self.watcher.cancel()
        if self.pending is not None and not self.pending.done():
            self.pending.cancel()
        else:
            self.tasks.add(asyncio.ensure_future(self.upstream.aclose()))

    async def deltas(self, head: Delta | None) -> AsyncIterator[Delta]:
        """The answer's deltas; ClientGone when the client left, UpstreamError past the deadline or on a failure."""
        try:
            if head is not None:
                yield head
            while not self.closed:
                self.pending = asyncio.ensure_future(_next(self.upstream))
                done, _ = await asyncio.wait({self.pending}, timeout=max(0.0, self.deadline - time.monotonic()))
                if self.pending.cancelled() or self.closed:
                    raise ClientGone()
                if not done:
                    raise UpstreamError("no complete answer within serve.timeout_s")
                d = self.pending.result()
                if d is None:
                    return
                yield d
            raise ClientGone()
        finally:
            self.close()


async def _next(deltas: AsyncIterator[Delta]) -> Delta | None:
    return await anext(deltas, None)


async def _cancel(task: asyncio.Future, deltas: Any) -> None:
    task.cancel()
    with contextlib.suppress(BaseException):
        await task
    with contextlib.suppress(Exception):
        await deltas.aclose()


async def _one(text: str, finish: str, usage: dict[str, int]) -> AsyncIterator[Delta]:
    yield Delta(text, finish)
    yield Delta("", usage=usage)


def _gone_or_timeout(e: Exception, info: dict, timeout_s: float) -> Any:
    if isinstance(e, ClientGone):
        info["disconnected"] = True
        return JSONResponse({"error": {"message": "client closed the request", "type": "invalid_request_error",
                                       "code": "client_closed", "param": None}}, status_code=499)
    return JSONResponse({"error": {"message": f"no answer within {timeout_s:g} s", "type": "timeout_error",
                                   "code": "timeout", "param": None}}, status_code=504)


def _upstream_failed(e: Exception, info: dict) -> Any:
    info["error"] = type(e).__name__
    return JSONResponse({"error": {"message": f"model call failed: {type(e).__name__}", "type": "api_error",
                                   "code": "upstream_error", "param": None}}, status_code=502)


def _unauthorized() -> Any:
    return JSONResponse({"error": {"message": "missing or wrong bearer token (Authorization: Bearer <token>)",
                                   "type": "authentication_error", "code": "invalid_api_key", "param": None}},
                        status_code=401, headers={"WWW-Authenticate": "Bearer"})


def _finish(reason: str | None) -> str:
    return reason if reason in ("stop", "length", "content_filter", "tool_calls") else "stop"


def _draft_field(gen: Any, collab: Collaboration) -> dict[str, Any]:
    return {"cowest": {"draft": gen.text, "draft_format": collab.draft_format, "draft_tokens": gen.completion_tokens}}


ROUTE_HEADER = "X-Cowest-Route"
"""The response header naming the route a question took: weak, collaborate or strong."""


def _route_fields(choice: Any, collab: Collaboration, draft: Any | None) -> dict[str, Any]:
    """`system_fingerprint` names the route; with a router, the `cowest` field says which and its score; with
    return_draft, the draft."""
    extra: dict[str, Any] = _draft_field(draft, collab) if draft is not None else {}
    if collab.router is not None:
        extra.setdefault("cowest", {}).update(choice.metadata())
    return {"system_fingerprint": f"cowest-{choice.route}", **extra}


async def _sse(rid: str, model: str, deltas: AsyncIterator[Delta], extra: dict[str, Any],
               include_usage: bool = False) -> AsyncIterator[str]:
    """chat.completion.chunk events: the role first (with the draft when asked), the text, the finish, [DONE];
    or, when the strong model fails mid-answer, an `{"error": ...}` event in place of the finish and [DONE]. With
    `include_usage`, as the OpenAI API does: every chunk carries `"usage": null` and one more chunk, with no
    choices, carries the strong answer's usage before [DONE] (null where its endpoint sent none)."""
    created = int(time.time())
    more_of_each: dict[str, Any] = {"usage": None} if include_usage else {}

    def chunk(delta: dict[str, Any], reason: str | None = None, **more: Any) -> str:
        c = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model,
             "choices": [{"index": 0, "delta": delta, "finish_reason": reason, "logprobs": None}], **more_of_each,
             **more}
        return f"data: {json.dumps(c)}\n\n"

    yield chunk({"role": "assistant", "content": ""}, **extra)
    finish, usage = None, None
    try:
        async for d in deltas:
            if d.text:
                yield chunk({"content": d.text})
            finish, usage = d.finish or finish, d.usage or usage
    except UpstreamError as e:
        err = {"message": str(e), "type": "api_error", "code": "upstream_error", "param": None}
        yield f"data: {json.dumps({'error': err})}\n\n"
        return
    except ClientGone:
        return
    yield chunk({}, _finish(finish))
    if include_usage:
        total = {"total_tokens": usage["prompt_tokens"] + usage["completion_tokens"]} if usage else {}
        last = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model, "choices": [],
                "usage": {**usage, **total} if usage else None}
        yield f"data: {json.dumps(last)}\n\n"
    yield "data: [DONE]\n\n"
