"""What `cowest serve` accepts: the chat request, read under its size limit and validated, or a `Refusal`.

Every malformed request is a 4xx with an OpenAI-style error body, never a 500: the body is read chunk by chunk
and refused (413) as soon as it passes `serve.max_request_bytes`, Content-Length or not; it is parsed by pydantic's
JSON parser, which refuses bytes that are not UTF-8 and nesting past its recursion limit as malformed JSON; a
content part's `text` must be a string; `max_tokens`, `temperature` and `top_p` must lie in the ranges OpenAI
documents.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class Refusal(Exception):
    """A request the server answers with an error status; `body` is the OpenAI error object."""

    def __init__(self, status: int, message: str, code: str, kind: str = "invalid_request_error",
                 param: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.headers = status, headers
        self.body = {"error": {"message": message, "type": kind, "code": code, "param": param}}


class ContentPart(BaseModel):
    """One part of a message's content list; only text parts reach the models."""

    model_config = ConfigDict(extra="allow")
    type: str = "text"
    text: str | None = None

    @model_validator(mode="after")
    def _text_part_has_text(self) -> "ContentPart":
        if self.type == "text" and self.text is None:
            raise ValueError("a text part needs a string 'text'")
        return self


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[ContentPart] | None = None

    @property
    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(p.text or "" for p in self.content if p.type == "text")
        return self.content or ""


class CowestOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    return_draft: bool = False
    """Add the weak draft to the response (`cowest` field)."""


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool | None = Field(None, strict=True)
    """A last chunk (no choices) with the strong answer's token usage, before `[DONE]`, as the OpenAI API sends."""


class ChatRequest(BaseModel):
    """The fields of an OpenAI chat completion request that the collaboration uses, typed strictly (`"yes"` is not a
    bool, `true` not a number); the parameters of features serve does not implement (several choices, log
    probabilities, tools) are refused with a 400 saying so, rather than ignored; other fields are accepted and
    ignored."""

    model_config = ConfigDict(extra="allow")
    model: str
    messages: list[ChatMessage]
    max_tokens: int | None = Field(None, ge=1, strict=True)
    max_completion_tokens: int | None = Field(None, ge=1, strict=True)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    stream: bool = Field(False, strict=True)
    n: int | None = Field(None, ge=1, strict=True)
    logprobs: bool | None = Field(None, strict=True)
    top_logprobs: int | None = Field(None, ge=0, strict=True)
    tools: list[Any] | None = None
    tool_choice: Any = None
    stream_options: StreamOptions | None = None
    cowest: CowestOptions | None = None

    def refuse_unsupported(self) -> None:
        """A 400 naming the first parameter asking for what serve does not do."""
        asks = [("n", self.n not in (None, 1), "it returns one choice (n = 1)"),
                ("logprobs", bool(self.logprobs) or self.top_logprobs is not None, "it returns no log probabilities"),
                ("tools", bool(self.tools) or self.tool_choice not in (None, "none", "auto"), "it calls no tools")]
        for param, asked, why in asks:
            if asked:
                raise Refusal(400, f"'{param}': not supported by cowest serve ({why})", "unsupported_parameter",
                              param=param)

    @property
    def question(self) -> str:
        """The last user message's text (the collaboration answers it)."""
        users = [m for m in self.messages if m.role == "user"]
        text = users[-1].text if users else ""
        if not text.strip():
            raise Refusal(400, "messages: need a user message with text (the question)", "no_question",
                          param="messages")
        return text

    @property
    def include_usage(self) -> bool:
        return self.stream and self.stream_options is not None and bool(self.stream_options.include_usage)

    @property
    def prompt_chars(self) -> int:
        return sum(len(m.text) for m in self.messages)

    @property
    def want_draft(self) -> bool:
        return self.cowest is not None and self.cowest.return_draft


def too_large(limit: int) -> Refusal:
    return Refusal(413, f"request body over {limit} bytes", "request_too_large")


async def read_body(request: Any, limit: int) -> bytes:
    """The body, read chunk by chunk and refused as soon as it passes `limit` bytes (a chunked upload has no
    Content-Length to check first)."""
    size = request.headers.get("content-length")
    if size is not None and size.isdigit() and int(size) > limit:
        raise too_large(limit)
    kind = request.headers.get("content-type")
    if kind is not None and kind.split(";")[0].strip().lower() != "application/json":
        raise Refusal(415, f"Content-Type must be application/json, not '{kind[:60]}'", "unsupported_media_type")
    from starlette.requests import ClientDisconnect

    chunks, total = [], 0
    try:
        async for chunk in request.stream():
            total += len(chunk)
            if total > limit:
                raise too_large(limit)
            chunks.append(chunk)
    except ClientDisconnect:
        raise Refusal(499, "client closed the request", "client_closed") from None
    return b"".join(chunks)


def parse_chat(body: bytes) -> ChatRequest:
    """The request, or a 400 naming the first problem (malformed JSON, or the field and what is wrong with it)."""
    try:
        req = ChatRequest.model_validate_json(body)
    except ValidationError as e:
        errors = e.errors(include_url=False, include_input=False)
        if errors[0]["type"] == "json_invalid":
            raise Refusal(400, f"malformed JSON: {errors[0]['msg'].removeprefix('Invalid JSON: ')}",
                          "invalid_json") from None
        first = max(errors, key=lambda x: len(x["loc"]))  # the deepest: a union's other branches say less
        where = ".".join(str(x) for x in first["loc"] if not _union_tag(x)) or "body"
        raise Refusal(400, f"'{where}': {first['msg']}", "invalid_request", param=where) from None
    req.refuse_unsupported()
    return req


def _union_tag(part: Any) -> bool:
    """pydantic names the branch of a union in an error's location (`str`, `list[ContentPart]`): not a field."""
    return isinstance(part, str) and (part == "str" or "[" in part)
