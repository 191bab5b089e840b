"""`cowest models`: the embedded models (role, files, size, installed / verified) and which backends can run.

Listing never hashes; `--verify` does (through `gguf_path`, which assembles multi-part models on first use).
A missing model prints the exact pip command that installs it.
"""

from __future__ import annotations

import importlib.util

from cowest.core.errors import CowestError
from cowest.core.hashing import sha256_file
from cowest.models.embedded import EMBEDDED, EmbeddedModel, cache_root, gguf_path, status

BACKEND_MODULES = {"llamacpp": ("llama_cpp", "llamacpp"), "hf": ("torch", "train"), "openai": ("openai", "openai")}
"""provider -> (module it needs, the extra that installs it)."""


def human_size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def describe_files(m: EmbeddedModel) -> str:
    if len(m.parts) == 1:
        return f"{m.filename} in {m.pip[0]}"
    first, last = m.pip[0].split("==")[0], m.pip[-1]
    return f"{m.filename} = {len(m.parts)} parts of {first} .. {last}"


def model_state(alias: str, verify: bool) -> tuple[str, str | None]:
    """(state, detail): missing (detail = pip command), installed, verified, or BAD (detail = the error)."""
    st = status(alias)
    if not st["installed"]:
        return "missing", st["install"]
    if verify:
        try:
            path = gguf_path(alias)  # assembles on first use; trusts a stamp of size + mtime ...
            digest = sha256_file(path)  # ... so hash the file again: --verify must catch later corruption
        except CowestError as e:
            return "BAD", str(e)
        if digest != EMBEDDED[alias].sha256:
            return "BAD", f"SHA-256 mismatch for {path}; reinstall with: {st['install']} --force-reinstall"
        return "verified", None
    return ("verified" if st["verified"] else "installed"), None


def backends_line() -> str:
    parts = []
    for provider, (module, extra) in BACKEND_MODULES.items():
        ok = importlib.util.find_spec(module) is not None
        parts.append(f"{provider} ({'ready' if ok else f'missing: pip install -e .[{extra}]'})")
    return "backends: " + ", ".join(parts)


def model_rows(verify: bool = False) -> list[dict]:
    """One dict per embedded model: spec, role, size, state, files, detail (pip command or error)."""
    rows = []
    for alias, m in EMBEDDED.items():
        state, detail = model_state(alias, verify)
        rows.append({"spec": f"embedded/{alias}", "role": m.role, "size": human_size(m.size), "state": state,
                     "files": describe_files(m), "detail": detail, "alias": alias})
    return rows


def format_table(rows: list[dict], verify: bool) -> str:
    cols = ("spec", "role", "size", "state")
    table = [dict(zip(cols, cols), files="files")] + rows
    widths = {c: max(len(r[c]) for r in table) for c in cols}
    lines = ["  ".join(r[c].ljust(widths[c]) for c in cols) + "  " + r["files"] for r in table]
    out = [f"Embedded models (assembled and verified under {cache_root()}):", *lines]
    notes = [f"  {r['alias']}: {r['detail']}" for r in rows if r["detail"]]
    if notes:
        out += ["", "To install or repair:", *notes]
    if any(r["state"] == "installed" for r in rows):
        out += ["", "'installed' = not hashed yet; `cowest models --verify` checks every SHA-256."]
    out += ["", backends_line()]
    return "\n".join(out)


def models_table(verify: bool = False) -> str:
    """The table `cowest models` prints; with `verify`, every installed model is SHA-256-checked first."""
    return format_table(model_rows(verify), verify)
