"""Where the libraries' own console output goes during a command: a log file in the run directory.

transformers, TRL, datasets and torch each print progress bars, warnings and notices; interleaved, they bury the one
progress line per stage that cowest draws. While `library_output(path)` is active their loggers and Python warnings
write to `path` instead, and their tqdm bars are off; `verbose=True` leaves everything on the console.
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

LIBRARY_LOGGERS = ("transformers", "trl", "peft", "datasets", "accelerate", "huggingface_hub", "torch", "httpx",
                   "urllib3", "filelock", "py.warnings")
QUIET_ENV = {
    "TQDM_DISABLE": "1",  # tqdm >= 4.66 reads its defaults from TQDM_* variables: every bar off
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
}


def _silence_transformers_default_handler() -> None:
    # transformers adds its own stderr handler to its root logger the first time anything logs; when it is already
    # imported, take that handler off now (an import after this point is handled by the env and logger settings).
    import sys

    tlog = sys.modules.get("transformers.utils.logging")
    if tlog is not None:
        tlog.disable_default_handler()


@contextmanager
def library_output(log_file: Path, verbose: bool = False) -> Iterator[Path]:
    """Route the libraries' console output to `log_file` for the duration (unless `verbose`)."""
    if verbose:
        yield log_file
        return
    log_file.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(log_file, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    saved_env = {k: os.environ.get(k) for k in QUIET_ENV}
    os.environ.update(QUIET_ENV)
    saved = {}
    for name in LIBRARY_LOGGERS:
        lg = logging.getLogger(name)
        saved[name] = (lg.handlers[:], lg.propagate)
        lg.handlers, lg.propagate = [handler], False
    logging.captureWarnings(True)
    _silence_transformers_default_handler()
    try:
        yield log_file
    finally:
        logging.captureWarnings(False)
        for name, (handlers, propagate) in saved.items():
            lg = logging.getLogger(name)
            lg.handlers, lg.propagate = handlers, propagate
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        handler.close()
