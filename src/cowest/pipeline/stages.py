"""Stage bookkeeping in a run directory: what a stage's outputs depend on, done markers, refusal to mix, one process
at a time.

Each stage directory holds `inputs.json` (its fingerprint: the record of its input bundle, `cowest.pipeline.stage_inputs`,
and the SHA-256 of the upstream files it reads) written when it starts, and
`done.json` (wall time, summary) written when it finishes; both, and the `attempts` counter, are replaced atomically,
and an empty or torn one reads as "not done". A finished stage is skipped; a stage directory whose inputs differ from
the current config is refused, naming the differing keys, unless the stage is forced (a key only one of the two
records holds, written before it became an input or after it stopped being one, is not compared: run directories of
earlier versions stay usable; but a key of `stage_inputs.ADDED_KEYS`, whose default is what earlier versions did,
counts as set to that default in a record that lacks it, so that setting the new option on a finished run redoes
the stage instead of skipping it; nor is a key only the stage's last, cheap step reads, `Stage.derived`, which is
redone instead). Forcing removes only the
stage's own files (its bookkeeping and the output names it declares), never anything else in the folder.

A stage is entered under an exclusive `flock` on `stage.lock` in its folder (`with st.locked(): ...`): a second
process stops at once, naming the holder's pid. The kernel drops the lock when its process ends, `kill -9` included,
so a crash never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from cowest.core.config import ExperimentConfig
from cowest.core.errors import ConfigError, CowestError
from cowest.core.files import naming
from cowest.core.hashing import sha256_file
from cowest.pipeline.stage_inputs import ADDED_KEYS, Inputs, bundle

STAGES = ("sft", "feedback", "align", "eval", "report")
INPUTS_FILE, DONE_FILE, ATTEMPTS_FILE, LOCK_FILE = "inputs.json", "done.json", "attempts", "stage.lock"
BOOKKEEPING = (INPUTS_FILE, DONE_FILE, ATTEMPTS_FILE)
UPSTREAM = "upstream:"
"""The prefix of an upstream file's key in inputs.json."""


def write_atomic(path: Path, text: str) -> None:
    """Write `text` to a temporary file beside `path`, then rename it over `path`: a crash leaves the old file or
    the new one, never an empty or half-written one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with naming(path), open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_bookkeeping(path: Path) -> Any:
    """A bookkeeping file's JSON value; None when it is missing, empty or torn (a crash of an older version)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None


@contextmanager
def exclusive(lock_file: Path, what: str) -> Iterator[None]:
    """Hold an exclusive `flock` on `lock_file` for the block, its first line our pid; if another process holds it,
    raise a one-line error naming that process. The lock goes with the file descriptor: released when the block
    ends, and by the kernel when the process dies."""
    try:
        lock_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise CowestError(f"{what}: cannot open its lock file {lock_file} ({e.strerror})") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = lock_holder(lock_file)
            who = f"process {holder}" if holder is not None else "another process"
            raise CowestError(f"{what} is in use by {who} (lock {lock_file}); wait for it to finish or stop it, "
                              "or use another run_dir / --out") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def lock_holder(lock_file: Path) -> int | None:
    """The pid `exclusive` wrote as the first line of `lock_file`, or None (no file, or not written yet)."""
    try:
        first = lock_file.read_text(encoding="ascii", errors="replace").split("\n", 1)[0].strip()
    except OSError:
        return None
    return int(first) if first.isdigit() else None


def fingerprint(path: Path) -> str:
    """SHA-256 of an upstream output: a file, or an adapter folder's weights file."""
    target = path / "adapter_model.safetensors" if path.is_dir() else path
    return sha256_file(target) if target.exists() else "missing"


def differing_keys(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The config keys both records hold with different values, a key of ADDED_KEYS only `new` holds set away from
    what earlier versions did (see the module's note on keys only one of them holds), and the upstream files either
    one names that the other does not or with another hash."""
    upstream = {k for k in set(old) | set(new) if k.startswith(UPSTREAM)}
    before = {**ADDED_KEYS, **old}
    return sorted(k for k in set(new) | upstream if (k in before and k in new and before[k] != new[k]) or (
        k in upstream and (k in old) != (k in new)))


def refusal(path: Path, name: str, differing: list[str]) -> ConfigError:
    kind = next(k for k in STAGES if name.startswith(k))  # what --force takes: `align`, not `align1-dpo`
    return ConfigError(f"{path} holds outputs of a different config (differing keys: {', '.join(differing)}); "
                       f"refusing to mix them. Use another run_dir, or redo the stage with --force {kind}")


@dataclass
class Stage:
    """One stage directory. Use: `with st.locked(): if not st.begin(force): return` ... work ... `st.finish(summary)`.

    `outputs` are the names (files or folders) the stage writes into its directory: `--force` removes those and the
    bookkeeping files, and leaves anything else there alone."""

    name: str
    path: Path
    inputs: dict[str, Any]
    outputs: tuple[str, ...] = ()
    owned: dict[str, str] = field(default_factory=dict)
    """Output folders the stage shares with whatever else a user keeps there (eval's `traces/`), each with the glob
    of the names the stage writes into it: `--force` removes only those, and the folder once it is empty."""
    derived: tuple[str, ...] = ()
    """Config keys that only the stage's last, cheap step reads (feedback: how pairs are selected from the scored
    drafts). A change in them alone is never refused: an unfinished stage goes on, and a finished one is not run
    again but leaves the changed keys in `rederive` for its caller to redo that step and `amend` the record."""
    rederive: tuple[str, ...] = field(default=(), init=False)

    @property
    def done(self) -> bool:
        return isinstance(read_bookkeeping(self.path / DONE_FILE), dict)

    def locked(self) -> AbstractContextManager[None]:
        return exclusive(self.path / LOCK_FILE, f"stage {self.name} ({self.path})")

    def recorded_inputs(self) -> dict[str, Any] | None:
        """The inputs a previous attempt recorded; None when there is none (or its file is empty or torn)."""
        old = read_bookkeeping(self.path / INPUTS_FILE)
        return old if isinstance(old, dict) else None

    def check_config(self) -> None:
        """Refuse now if the stage holds outputs of other config keys (the fingerprints of upstream outputs are
        compared when it begins: a stage redone before it may still change them)."""
        old = self.recorded_inputs()
        if old is not None:
            differing = [k for k in differing_keys(old, self.inputs)
                         if not k.startswith(UPSTREAM) and k not in self.derived]
            if differing:
                raise refusal(self.path, self.name, differing)

    def clear(self) -> None:
        """Remove what this stage wrote (its bookkeeping, leftover temporary files of it, and its declared outputs),
        nothing else; a folder that holds no stage's bookkeeping is left as it is."""
        if not (self.path / INPUTS_FILE).exists():
            return
        leftovers = [p.name for name in BOOKKEEPING for p in self.path.glob(f".{name}.*.tmp")]
        # done.json first and inputs.json last: a crash half way leaves a stage that is not done and clears again.
        for name in (DONE_FILE, *self.outputs, *leftovers, ATTEMPTS_FILE, INPUTS_FILE):
            target = self.path / name
            if name in self.owned and target.is_dir() and not target.is_symlink():
                for p in target.glob(self.owned[name]):
                    p.unlink()
                if not any(target.iterdir()):
                    target.rmdir()
            elif target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()

    def begin(self, force: bool = False) -> bool:
        """True when the stage must run; False when its outputs exist for the same inputs."""
        if force:
            self.clear()
        old = self.recorded_inputs()
        if old is not None:
            differing = differing_keys(old, self.inputs)
            if set(differing) - set(self.derived):
                raise refusal(self.path, self.name, [k for k in differing if k not in self.derived])
            if self.done:
                self.rederive = tuple(differing)
                return False
        self.path.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path / INPUTS_FILE, json.dumps(self.inputs, indent=1, sort_keys=True))
        # Count the attempts: after a crash, done.json's wall time covers only the last one, and says so.
        previous = read_bookkeeping(self.path / ATTEMPTS_FILE)
        self._attempt = (previous if isinstance(previous, int) and previous > 0 else 0) + 1
        write_atomic(self.path / ATTEMPTS_FILE, str(self._attempt))
        self._t0 = time.time()
        return True

    def finish(self, summary: dict[str, Any] | None = None) -> None:
        wall = time.time() - getattr(self, "_t0", time.time())
        body = {"stage": self.name, "wall_s": round(wall, 2), "attempts": getattr(self, "_attempt", 1),
                "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
        write_atomic(self.path / DONE_FILE, json.dumps({**body, **(summary or {})}, indent=2))

    def amend(self, summary: dict[str, Any]) -> None:
        """Record the current inputs for a finished stage whose `rederive` step was redone, and merge that step's
        `summary` into done.json (its wall time stays the generating run's). inputs.json last: a crash before it
        leaves the old record's keys differing, so the step is redone."""
        done = self.summary()
        write_atomic(self.path / DONE_FILE, json.dumps({**done, **summary, "rederived": list(self.rederive)}, indent=2))
        write_atomic(self.path / INPUTS_FILE, json.dumps(self.inputs, indent=1, sort_keys=True))

    def summary(self) -> dict[str, Any]:
        done = read_bookkeeping(self.path / DONE_FILE)
        return done if isinstance(done, dict) else {}


def stage(cfg: ExperimentConfig, name: str, path: Path, *, inputs: Inputs | None = None,
          upstream: list[Path] | None = None, outputs: tuple[str, ...] = (), derived: tuple[str, ...] = (),
          owned: dict[str, str] | None = None) -> Stage:
    """A stage whose inputs are its bundle (default: that of the stage kind its name starts with, a feedback stage's
    round read off its name, `feedback2`) plus the fingerprints of the upstream outputs it reads, so a retrained
    adapter or new pairs file is never mixed with outputs made from the old one. `outputs`: the names the stage
    writes into `path` (what `--force` removes); `derived`: see `Stage.derived`."""
    kind = next(k for k in STAGES if name.startswith(k))
    if inputs is None and kind != "report":
        rnd = int(name[len("feedback"):] or 1) if kind == "feedback" else 1
        inputs = bundle(cfg, kind, rnd)  # type: ignore[arg-type]
    record = inputs.record() if inputs is not None else {}
    for p in upstream or []:
        record[f"{UPSTREAM}{p.relative_to(cfg.run_dir) if p.is_relative_to(cfg.run_dir) else p}"] = fingerprint(p)
    return Stage(name=name, path=path, inputs=record, outputs=outputs, derived=derived, owned=owned or {})
