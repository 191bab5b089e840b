"""Reading a file a user named, bounded: a regular file (symlinks followed) no larger than a limit, or one line
saying why not. `cowest eval /dev/zero` grew to 21 GB before the kernel killed it; a FIFO blocked for ever; a
device or `/proc` file read as a traceback. And writing one so that a refusal names it (`naming`)."""

from __future__ import annotations

import os
import stat
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from cowest.core.errors import ConfigError, CowestError

MiB = 1 << 20
CONFIG_LIMIT = 4 * MiB
"""A config (and a mock model's rules): kilobytes in practice."""
DATA_LIMIT = 2048 * MiB
"""A dataset file, or a file a stage wrote and reads back (traces, feedback records): the largest real split
here is a few MiB."""


@contextmanager
def naming(path: str | Path) -> Iterator[None]:
    """An OSError inside carries `path`: a full disk found when a file is flushed or closed raises one without a
    file name, and the CLI's one line should say which file (found on a real 4 MB tmpfs)."""
    try:
        yield
    except OSError as e:
        if e.filename is not None:
            raise
        raise OSError(e.errno, e.strerror or str(e), str(path)) from None


def size_text(n: int) -> str:
    return f"{n // MiB} MiB" if n >= MiB else f"{n} bytes"


def read_bounded(path: str | Path, limit: int, what: str,
                 error: Callable[[str], CowestError] = ConfigError) -> bytes:
    """The bytes of `path`, a regular file of at most `limit` bytes; anything else raises `error` with one line
    naming the path, what it was meant to be (`what`) and the limit."""
    regular_file(path, what, error)
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)  # a file that grows while it is read is still cut at the limit
    except OSError as e:
        raise error(f"{path}: cannot read the {what} ({e.strerror or e})") from None
    if len(data) > limit:
        raise error(f"{path}: the {what} is larger than {size_text(limit)}; is it the right file?")
    return data


def regular_file(path: str | Path, what: str, error: Callable[[str], CowestError] = ConfigError) -> None:
    """Refuse a path that is missing, a folder, a device, a FIFO or a socket, in one line."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise error(f"{path}: file not found (the {what})") from None
    except OSError as e:  # a symlink loop, a name too long, no permission on a folder above
        raise error(f"{path}: cannot open the {what} ({e.strerror or e})") from None
    if stat.S_ISDIR(mode):
        raise error(f"{path}: is a folder, not the {what}")
    if not stat.S_ISREG(mode):
        raise error(f"{path}: not a regular file (a device, FIFO or socket); the {what} must be a file")
