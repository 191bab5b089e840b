"""`engine: vllm`: a local vLLM server (OpenAI-compatible, continuous batching) started for an embedded or HF model.

vLLM's CPU build pins a transformers older than cowest's, so it runs from its own venv (`.venv-vllm`, made by
`bash scripts/setup.sh --vllm`) as a separate process: `python -m vllm.entrypoints.openai.api_server` on 127.0.0.1
at a free port, with `--enable-lora`. Requests go through `cowest.models.openai_backend.OpenAIBackend`.

- Weights: an embedded model (a GGUF) is served from its cached safetensors copy in the dtype that runs
  (`cowest.models.hf_loading.convert_gguf`); an HF folder or hub id as it is.
- Adapters: each is loaded into the running server at runtime (`POST /v1/load_lora_adapter`, which needs
  `VLLM_ALLOW_RUNTIME_LORA_UPDATING=True`), under a name made of its content hash, so a retrained adapter is never
  served stale and a new one (after SFT or DPO) needs no restart. vLLM applies one LoRA on the base; an adapter
  chain (DPO trained on the SFT model with the SFT adapter merged) becomes one LoRA by PEFT's `cat` combination
  (rank r1 + r2, the sum of the chain's weight deltas: exact, since LoRA deltas add).
- Lifetime: servers live in a `ServerPool`. Inside `serving(log_dir)` (every `cowest` command holds one for its
  run directory, `cowest.pipeline.loop.locked_run`) a server outlives the backends that use it, so the stages of a run
  share one server and later adapters are loaded into it; it stops when the scope ends. Outside such a scope the
  backend that started the server stops it on `close`. Logs: `<run dir>/vllm/<model>-<port>.log`.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from cowest.core.config import ModelConfig
from cowest.core.errors import ConfigError, CowestError, require
from cowest.core.layout import ADAPTER_CONFIG
from cowest.core.records import Generation, Message, SamplingParams

VENV = ".venv-vllm"
SETUP = "bash scripts/setup.sh --vllm"
VENV_ENV = "COWEST_VLLM_VENV"
"""Environment variable naming another vLLM venv folder."""
HEALTH_TIMEOUT_S = 300.0
"""Start-up limit: imports, weight loading and warm-up take 40-60 s for a 135M model on 2 CPU cores."""
MAX_LORA_RANK = 64
"""vLLM sizes its LoRA buffers for this rank at start; an SFT (r 16) + DPO (r 16) chain combines into r 32."""
MAX_LORAS = 4
"""Adapters applied within one batch (more are loaded and swapped in as requests need them)."""
SERVED_BASE = "base"
"""The name the base model is served under (adapters are served under their own names)."""
SERVER_ENV_DEFAULTS = {"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_NUM_OF_RESERVED_CPU": "0"}
"""Unless the environment sets them: a 1 GiB KV cache (~46k tokens of a 135M model); no core kept back from the
worker (vLLM keeps one for its API server by default, which on 2 cores halves the compute: the 1.5B's stage-shaped
generation ran at 14.0 tok/s so, 25.9 tok/s with both cores)."""


def vllm_python() -> Path:
    """The vLLM venv's python: $COWEST_VLLM_VENV, else `.venv-vllm` in this checkout or in the working directory."""
    named = os.environ.get(VENV_ENV)
    roots = [Path(named)] if named else [Path(__file__).resolve().parents[3] / VENV, Path.cwd() / VENV]
    for root in roots:
        python = root / "bin" / "python"
        if python.is_file():
            return python
    raise ConfigError(f"engine vllm: no vLLM venv at {roots[0]}; run: {SETUP}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _last_line(path: Path) -> str:
    try:
        lines = [x for x in path.read_text(errors="replace").splitlines() if x.strip()]
    except OSError:
        return ""
    errors = [x for x in lines if "Error" in x or "error" in x]
    return (errors or lines or [""])[-1].strip()[:300]


class VLLMServer:
    """One `vllm` OpenAI-compatible server process for one base model, started and health-checked on creation."""

    def __init__(self, model: str, dtype: str, log_path: Path, *, max_model_len: int,
                 timeout_s: float = HEALTH_TIMEOUT_S):
        self.model = model
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.api_key = secrets.token_hex(24)
        """The server's key (in memory and its environment only): other local users cannot load adapters into it
        or use it."""
        self.adapters: dict[str, str] = {}
        """Served adapter name -> the folder loaded under it."""
        cmd = [str(vllm_python()), "-m", "vllm.entrypoints.openai.api_server", "--model", model,
               "--served-model-name", SERVED_BASE, "--host", "127.0.0.1", "--port", str(self.port),
               "--dtype", dtype, "--max-model-len", str(max_model_len),
               # requests say their own sampling; the model's generation_config must not add to them
               "--generation-config", "vllm",
               "--enable-lora", "--max-lora-rank", str(MAX_LORA_RANK), "--max-loras", str(MAX_LORAS)]
        env = {**SERVER_ENV_DEFAULTS, **os.environ, "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True",
               "VLLM_API_KEY": self.api_key}
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            # its own session: stopping the group stops vLLM's engine-core and worker processes too
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env=env, start_new_session=True)
        try:
            self._wait_healthy(timeout_s)
        except BaseException:
            self.stop()
            raise

    def _wait_healthy(self, timeout_s: float) -> None:
        httpx = require("httpx", "openai")
        from cowest.core.progress import log

        t0 = time.monotonic()
        while True:
            code = self.proc.poll()
            if code is not None:
                raise CowestError(f"vLLM server for {self.model} exited with code {code} while starting: "
                                  f"{_last_line(self.log_path)} (log: {self.log_path})")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() - t0 > timeout_s:
                raise CowestError(f"vLLM server for {self.model} not healthy after {timeout_s:g} s "
                                  f"(log: {self.log_path})")
            time.sleep(0.5)
        log(f"vLLM server {self.url} ({Path(self.model).name}) ready in {time.monotonic() - t0:.0f} s; "
            f"log: {self.log_path}")

    def load_adapter(self, name: str, path: Path) -> None:
        """Serve the LoRA in `path` under `name`, into the running server (a name already loaded is kept)."""
        if name in self.adapters:
            return
        httpx = require("httpx", "openai")
        r = httpx.post(f"{self.url}/v1/load_lora_adapter", json={"lora_name": name, "lora_path": str(path)},
                       headers=self.auth(), timeout=300)
        if r.status_code != 200:
            raise CowestError(f"vLLM server {self.url}: loading adapter {path} failed (HTTP {r.status_code}): "
                              f"{r.text[:300]} (log: {self.log_path})")
        self.adapters[name] = str(path)

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, grace_s: float = 30.0) -> None:
        """SIGTERM to the server's process group, SIGKILL after `grace_s`."""
        if self.proc.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 10.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue
        # the group's other processes (engine core, worker) after the leader exited
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)


@dataclass
class ServerPool:
    """Servers by (model, dtype, context length), each with its users. `kept`: servers outlive their users until
    `stop_all` (the scope of `serving`); otherwise the last user's release stops its server."""

    log_dir: Path
    kept: bool = False
    servers: dict[tuple[str, str, int], VLLMServer] = field(default_factory=dict)
    users: dict[tuple[str, str, int], int] = field(default_factory=dict)

    def acquire(self, model: str, dtype: str, max_model_len: int) -> VLLMServer:
        key = (model, dtype, max_model_len)
        server = self.servers.get(key)
        if server is None or not server.alive():
            name = f"{Path(model).name[:24]}-{dtype}"
            server = VLLMServer(model, dtype, self.log_dir / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.log",
                                max_model_len=max_model_len)
            self.servers[key] = server
        self.users[key] = self.users.get(key, 0) + 1
        return server

    def release(self, server: VLLMServer) -> None:
        key = next((k for k, s in self.servers.items() if s is server), None)
        if key is None:
            return
        self.users[key] -= 1
        if self.users[key] <= 0 and not self.kept:
            self.servers.pop(key).stop()
            del self.users[key]

    def stop_all(self) -> None:
        for server in self.servers.values():
            server.stop()
        self.servers.clear()
        self.users.clear()


_POOL: contextvars.ContextVar[ServerPool | None] = contextvars.ContextVar("cowest_vllm_pool", default=None)
"""The pool of the enclosing `serving` scope (None: each backend owns its server)."""


@contextlib.contextmanager
def serving(log_dir: Path) -> Iterator[ServerPool]:
    """Keep the vLLM servers started inside the block running until it ends (logs in `log_dir`); nested scopes
    share the outer one."""
    outer = _POOL.get()
    if outer is not None:
        yield outer
        return
    pool = ServerPool(Path(log_dir), kept=True)
    token = _POOL.set(pool)
    try:
        yield pool
    finally:
        _POOL.reset(token)
        pool.stop_all()


def _default_log_dir() -> Path:
    from cowest.models.embedded import cache_root

    return cache_root() / "vllm-logs"


# --- adapters ----------------------------------------------------------------------------------------------------

def adapter_name(chain: list[Path]) -> str:
    """The served name of an adapter chain: a hash of its contents (a retrained adapter gets a new name)."""
    from cowest.models.identity import weights_id

    ids = "\n".join(str(weights_id(a)) for a in chain)
    return "lora-" + hashlib.sha256(ids.encode()).hexdigest()[:16]


def single_lora(chain: list[Path], base: str, name: str) -> Path:
    """One LoRA folder vLLM can apply on `base`: the adapter itself, or a chain concatenated by PEFT (`cat`: rank
    r1 + r2 + ..., the delta of each adapter kept exactly) into `<models cache>/vllm-lora/<name>`."""
    if len(chain) == 1:
        return chain[0]
    from cowest.models.embedded import cache_root

    target = cache_root() / "vllm-lora" / name
    if (target / ADAPTER_CONFIG).exists():
        return target
    transformers = require("transformers", "train")
    peft = require("peft", "train")
    torch = require("torch", "train")
    model = transformers.AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    names = [f"a{i}" for i in range(len(chain))]
    model = peft.PeftModel.from_pretrained(model, str(chain[0]), adapter_name=names[0])
    for n, a in zip(names[1:], chain[1:]):
        model.load_adapter(str(a), adapter_name=n)
    model.add_weighted_adapter(names, [1.0] * len(names), "chain", combination_type="cat")
    tmp = target.with_name(f"{name}.{os.getpid()}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp), selected_adapters=["chain"])
    saved = tmp / "chain"  # PEFT saves an adapter that is not "default" into a subfolder named after it
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(saved, target)
    except OSError:  # another process combined it first
        pass
    shutil.rmtree(tmp, ignore_errors=True)
    return target


def _lora_rank(path: Path) -> int:
    cfg = json.loads((path / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    return max([int(cfg.get("r", 0)), *[int(v) for v in (cfg.get("rank_pattern") or {}).values()]])


# --- the backend ---------------------------------------------------------------------------------------------------

def served_weights(cfg: ModelConfig) -> tuple[str, str, str]:
    """(what vLLM loads, the weights' source for the identity, dtype) for an embedded or hf spec."""
    from cowest.models.hf_loading import convert_gguf, resolve_source

    source = resolve_source(cfg.spec)
    dtype = cfg.dtype
    if dtype == "auto":
        from cowest.models.calibrate import cpu_identity, native_bf16

        dtype = "bfloat16" if native_bf16(cpu_identity()) else "float32"
    model = str(convert_gguf(source, dtype)) if source.endswith(".gguf") else source
    return model, source, dtype


class VLLMBackend:
    """An embedded or HF model (with its adapter) on a local vLLM server, through the OpenAI-compatible backend."""

    has_chat_template = True  # the server applies the model's template

    def __init__(self, cfg: ModelConfig):
        from cowest.models.hf_loading import adapter_chain
        from cowest.models.identity import weights_id
        from cowest.models.openai_backend import OpenAIBackend

        provider = cfg.spec.partition("/")[0]
        if provider not in ("embedded", "hf"):
            raise ConfigError(f"models: engine vllm serves embedded/<alias> or hf/<folder or hub id>, not "
                              f"'{cfg.spec}' (an openai/ spec is a server already)")
        vllm_python()  # a missing venv fails here, before any conversion
        model, source, dtype = served_weights(cfg)
        self.pool = _POOL.get() or ServerPool(_default_log_dir())
        self.server = self.pool.acquire(model, dtype, cfg.n_ctx)
        try:
            served = SERVED_BASE
            adapters = ""
            if cfg.adapter:
                chain = adapter_chain(cfg.adapter)
                served = adapter_name(chain)
                lora = single_lora(chain, model, served)
                if _lora_rank(lora) > MAX_LORA_RANK:
                    raise CowestError(f"{cfg.adapter}: LoRA rank {_lora_rank(lora)} (the chain's ranks added) is "
                                      f"above the vLLM server's --max-lora-rank {MAX_LORA_RANK}")
                self.server.load_adapter(served, lora)
                adapters = "".join(f"+adapter@{weights_id(a)}" for a in chain)
            api_cfg = cfg.model_copy(update={"spec": f"openai/{served}", "base_url": f"{self.server.url}/v1",
                                             "concurrency": max(cfg.concurrency, cfg.batch_size), "adapter": None})
            self.api = OpenAIBackend(served, api_cfg, api_key=self.server.api_key)
        except BaseException:
            self.pool.release(self.server)
            raise
        self.served = served
        self.tally = self.api.tally
        name = Path(source).name if Path(source).exists() else source
        self.identity = f"vllm/{name}@{weights_id(source)}{adapters}+{dtype}"
        self.engine_choice: dict[str, Any] = {"engine": "vllm", "dtype": dtype, "reason": "named in the config",
                                              "server": self.server.url, "log": str(self.server.log_path)}

    @property
    def requests_sent(self) -> int:
        return self.api.requests_sent

    def generate(self, prompts: list[list[Message]], params: SamplingParams) -> list[list[Generation]]:
        return self.api.generate(prompts, params)

    def close(self) -> None:
        if self.api is None:
            return
        self.api.close()
        self.api = None  # type: ignore[assignment]
        self.pool.release(self.server)
