"""Stable identities of weights: the SHA-256 of a file or folder, remembered so big files are hashed once.

A backend's `identity` goes into every cache key, so two different weights (or the same base with another adapter)
never share cached responses. Hashes are remembered in `<models cache>/hashes/`, keyed by absolute path, size and
mtime: a file that changes is hashed again.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from cowest.core.hashing import sha256_file
from cowest.models.embedded import cache_root


def _stamp_path(path: Path) -> Path:
    key = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:32]
    return cache_root() / "hashes" / f"{key}.txt"


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file, remembered next to the models cache until its size or mtime changes."""
    path = Path(path)
    st = path.stat()
    stamp = _stamp_path(path)
    sig = f"{st.st_size} {st.st_mtime_ns}"
    try:
        saved_sig, _, digest = stamp.read_text().strip().rpartition(" ")
        if saved_sig == sig and len(digest) == 64:
            return digest
    except OSError:
        pass
    digest = sha256_file(path)
    try:
        stamp.parent.mkdir(parents=True, exist_ok=True)
        tmp = stamp.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(f"{sig} {digest}\n")
        os.replace(tmp, stamp)  # atomic: concurrent processes never read half a stamp
    except OSError:
        pass  # a read-only cache only costs re-hashing
    return digest


def weights_id(source: str | Path | None) -> str | None:
    """`sha256:<hex>` of a file; of a folder, a hash over its files' names and hashes; else the string itself
    (a hub id, which names fixed weights well enough offline)."""
    if source is None:
        return None
    p = Path(source)
    if p.is_file():
        return "sha256:" + file_sha256(p)
    if p.is_dir():
        h = hashlib.sha256()
        for f in sorted(x for x in p.rglob("*") if x.is_file()):
            h.update(f"{f.relative_to(p).as_posix()}\0{file_sha256(f)}\n".encode())
        return "sha256:" + h.hexdigest()
    return str(source)
