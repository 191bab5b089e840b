"""Keeping secrets out of what is written: URLs without credentials, query strings or key-like path segments.

Some gateways put the API key in the URL path (`https://gw.example/v1/sk-abc.../openai`). A path segment that looks
like a key (a long token mixing letters and digits, or one with a well-known key prefix) becomes `***` in
config.yaml, inputs.json, the response cache's identity and error messages. The real URL stays in memory only.
"""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit, urlunsplit

REDACTED = "***"
_KEY_PREFIX = re.compile(r"^(sk|pk|rk|key|api[-_]?key|token|bearer|secret|ghp|gho|xox[abp]|hf)[-_]", re.I)
_TOKEN = re.compile(r"^[A-Za-z0-9_\-.~+=]{20,}$")


def looks_like_key(segment: str) -> bool:
    """A path segment a key may be: a known key prefix with 8+ characters after it, or a 20+ character token with
    both letters and digits (version segments such as `v1` or model names such as `gpt-4o` stay)."""
    if _KEY_PREFIX.match(segment) and len(segment) >= 12:
        return True
    return bool(_TOKEN.match(segment)) and any(c.isdigit() for c in segment) and any(c.isalpha() for c in segment)


def secret_segment(segment: str) -> bool:
    """The path segment holds a key: as a whole, or, decoded (`Bearer%20sk-...`), any of its words, path
    parameters (`v1;key=sk-...`) or values."""
    text = unquote(segment)
    return looks_like_key(text) or any(looks_like_key(w) for w in re.split(r"[\s;,=:&]+", text) if w)


def redact_url(url: str) -> str:
    """The URL without user:password@, query string or fragment, and with key-like path segments as `***`."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:  # not a URL at all: show nothing of it
        return REDACTED
    if port:
        host += f":{port}"
    path = "/".join(REDACTED if secret_segment(seg) else seg for seg in parts.path.split("/"))
    return urlunsplit((parts.scheme, host, path, "", ""))
