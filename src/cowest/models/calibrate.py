"""`engine: auto` and `dtype: auto` by measurement: a few timed decode steps per engine on this machine, cached.

Which local engine is fastest depends on the CPU, not on the model alone: on a CPU with native bf16 matmuls (AMX,
AVX512_BF16) transformers in bfloat16 at batch 16-64 is 1.5-4x faster than llama.cpp decoding one prompt at a time;
on an AVX2-only CPU llama.cpp wins at every batch size (BENCHMARKS.md, /work/shared/notes/cpu-models.md). So the
choice is measured, once per model and CPU:

- llama.cpp: decode steps of one sequence on the GGUF (its rate at any batch size: it runs prompts one by one);
- transformers: decode steps at batch 1 and at the stage's batch size, for each candidate dtype, on a model built
  from the checkpoint's config with constant weights (speed does not depend on the values, so no conversion of
  the weights is needed to decide, and a model that ends up in llama.cpp is never converted).

Results are cached in `<models cache>/hf/<sha256 of the GGUF>.calibration.json` (beside the converted weights),
one entry per CPU identity (model name, the flags that matter, the cores this process may use). A file measured on
another CPU is not used: the message says so and this machine is measured. bfloat16 on a CPU without native bf16
is allowed when a config names it (it runs, emulated, usually slower than float32: a warning says so) but `auto`
never picks it there.

vLLM (`engine: vllm`, a local server in its own venv) is not a candidate of `auto`: on the one stage shape measured
(BENCHMARKS.md, "Generation": 200 strong solo prompts, batch 32) it ran 267 s against 276 s for transformers with
continuous batching, a tie that its server start-up (~100 s on 2 cores) turns into a loss for one stage, and
measuring it would mean starting that server. A config names it where it pays: long runs, many clients, GPUs.

A calibration measured while other CPU-heavy work shared the machine is wrong and stays cached: delete the
`.calibration.json` file named in the run's log to measure again (run alone, as for any benchmark).
"""

from __future__ import annotations

import datetime
import hashlib
import importlib.util
import json
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from cowest.core.errors import ConfigError, CowestError
from cowest.core.progress import log

CPU_FLAGS = ("amx_bf16", "amx_tile", "avx512_bf16", "avx512f", "avx2")
"""The /proc/cpuinfo flags that change which engine and dtype are fastest; part of the CPU identity."""
NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")
ENGINE_EXTRAS = {"llamacpp": ("llama_cpp", "llamacpp"), "hf": ("transformers", "train")}
SCHEMA = 1
DECODE_STEPS = 4
"""Timed decode steps per measurement (after one untimed warm-up step); the median step time is used."""


# --- the machine ---------------------------------------------------------------------------------------------

def cpu_identity(cpuinfo: str | None = None, threads: int | None = None) -> dict[str, Any]:
    """What the calibration is keyed by: the CPU's model name, the flags in CPU_FLAGS it has, and the core count."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:  # not Linux: no flags known, so no native bf16 is assumed
            cpuinfo = f"model name : {platform.processor() or platform.machine()}\n"
    info: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in info:
            info[key.strip()] = value.strip()
    flags = set(info.get("flags", "").split())
    if threads is None:
        from cowest.models.llamacpp import default_threads

        threads = default_threads()
    return {"cpu": info.get("model name", "unknown"), "flags": [f for f in CPU_FLAGS if f in flags],
            "threads": threads}


def cpu_key(ident: dict[str, Any]) -> str:
    return f"{ident['cpu']} [{' '.join(ident['flags'])}] x{ident['threads']}"


def native_bf16(ident: dict[str, Any]) -> bool:
    return any(f in ident["flags"] for f in NATIVE_BF16_FLAGS)


def engine_installed(engine: str) -> bool:
    """Whether the engine can run here. llama_cpp is imported (it is light): an installed package whose native
    library does not load counts as absent, so `auto` falls back instead of failing at load time."""
    module, _ = ENGINE_EXTRAS[engine]
    if engine == "llamacpp":
        try:
            importlib.import_module(module)
        except (ImportError, OSError, RuntimeError):
            return False
        return True
    return importlib.util.find_spec(module) is not None and importlib.util.find_spec("torch") is not None


LLAMACPP_ABSENT = ("llama.cpp is not installed (llama_cpp does not import), the faster engine for single requests "
                   "and on CPUs without native bf16; add it with: pip install -e '.[llamacpp]'")


# --- the choice (pure logic) ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Measurement:
    engine: str
    dtype: str
    """float32 / bfloat16 for hf; gguf for llama.cpp (the file's own quantisation)."""
    batch: int
    tok_s: float


@dataclass
class Choice:
    engine: str
    dtype: str
    reason: str
    single: str | None = None
    """The engine and dtype that would serve single requests (batch 1), for the record."""
    measurements: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _label(m: Measurement) -> str:
    if m.engine == "llamacpp":
        return f"llamacpp {m.tok_s:.1f} tok/s (one prompt at a time)"
    return f"hf {m.dtype} {m.tok_s:.1f} tok/s at batch {m.batch}"


def best(measurements: list[Measurement], batch: int) -> Measurement | None:
    """The fastest candidate for work in batches of `batch`: llama.cpp runs prompts one at a time, so its batch-1
    rate is its rate at any batch size; transformers counts only at that batch size."""
    fits = [m for m in measurements if m.batch == (1 if m.engine == "llamacpp" else batch)]
    return max(fits, key=lambda m: m.tok_s, default=None)


def choose(measurements: list[Measurement], batch: int, where: str) -> Choice:
    """Engine and dtype for batches of `batch` from the measured rates, with the reason in words."""
    top = best(measurements, batch)
    if top is None:
        raise CowestError(f"calibration has no measurement for batch {batch}")
    rivals = [m for m in measurements if m is not top and m.batch == (1 if m.engine == "llamacpp" else batch)]
    why = f"measured on {where}: {_label(top)}" + ("".join(f"; {_label(m)}" for m in rivals))
    single = best(measurements, 1)
    return Choice(engine=top.engine, dtype=top.dtype, reason=why,
                  single=f"{single.engine} {single.dtype}" if single else None,
                  measurements=[asdict(m) for m in measurements])


# --- the cache file --------------------------------------------------------------------------------------------

def calibration_path(source: str | Path) -> Path:
    """Beside the converted weights for a GGUF (keyed by its SHA-256); for a folder or hub id, by its name."""
    from cowest.models.embedded import cache_root

    if str(source).endswith(".gguf"):
        from cowest.models.hf_loading import gguf_cache_dir

        d = gguf_cache_dir(source)
        return d.with_name(d.name + ".calibration.json")
    p = Path(source)
    name = str(p.resolve()) if p.exists() else str(source)
    return cache_root() / "calibration" / (hashlib.sha256(name.encode()).hexdigest()[:32] + ".json")


def read_cached(path: Path, ident: dict[str, Any]) -> list[Measurement]:
    """This CPU's measurements in the file; [] (with a message when the file holds only other CPUs') otherwise."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, json.JSONDecodeError) as e:
        log(f"calibration {path} is unreadable ({e}); measuring again")
        return []
    machines = data.get("machines", {}) if data.get("schema_version") == SCHEMA else {}
    entry = machines.get(cpu_key(ident))
    if entry is None:
        if machines:
            log(f"calibration {path} was measured on another CPU ({'; '.join(machines)}), not on this one "
                f"({cpu_key(ident)}): measuring this machine")
        return []
    return [Measurement(**m) for m in entry["measurements"]]


def write_cached(path: Path, ident: dict[str, Any], measurements: list[Measurement], model: str) -> None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("schema_version") != SCHEMA:
            data = {}
    except (OSError, json.JSONDecodeError):
        data = {}
    data.update(schema_version=SCHEMA, model=model)
    data.setdefault("machines", {})[cpu_key(ident)] = {
        "identity": ident, "measured": datetime.datetime.now().isoformat(timespec="seconds"),
        "measurements": [asdict(m) for m in measurements]}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)  # atomic: a concurrent reader never sees half a file


# --- what to measure, and measuring it -------------------------------------------------------------------------

def candidates(engine: str, dtype: str, ident: dict[str, Any], is_gguf: bool) -> tuple[list[str], list[str]]:
    """The engines and hf dtypes the choice is among, after checking the ones a config names explicitly."""
    if engine == "auto":
        engines = [e for e in ("llamacpp", "hf") if engine_installed(e) and (e == "hf" or is_gguf)]
        if not engines:
            raise CowestError("engine auto: neither llama.cpp nor transformers is installed; "
                              "run: pip install -e '.[llamacpp]' (or '.[train]')")
    else:
        if not engine_installed(engine):
            module, extra = ENGINE_EXTRAS[engine]
            raise ConfigError(f"engine '{engine}' is not installed ('{module}' is missing); run: "
                              f"pip install -e '.[{extra}]', or set engine: auto to use what is installed")
        engines = [engine]
    if dtype == "auto":
        dtypes = ["bfloat16", "float32"] if native_bf16(ident) else ["float32"]
    else:
        if dtype == "bfloat16" and not native_bf16(ident) and "hf" in engines:
            log(f"dtype bfloat16 on a CPU without native bf16 ({ident['cpu']}, no amx_bf16/avx512_bf16): it runs, "
                "emulated, and is usually slower than float32; set dtype: auto to let cowest choose")
        dtypes = [dtype]
    return engines, dtypes


def missing(have: list[Measurement], engines: list[str], dtypes: list[str], batch: int) -> list[tuple[str, str, int]]:
    need = [("llamacpp", "gguf", 1)] if "llamacpp" in engines else []
    if "hf" in engines:
        need += [("hf", d, b) for d in dtypes for b in sorted({1, batch})]
    got = {(m.engine, m.dtype, m.batch) for m in have}
    return [n for n in need if n not in got]


Measurer = Callable[[str, list[tuple[str, str, int]], int], list[Measurement]]


def measure(source: str, todo: list[tuple[str, str, int]], threads: int) -> list[Measurement]:
    """Time decode steps for each (engine, dtype, batch) in `todo`."""
    out = []
    if any(e == "llamacpp" for e, _, _ in todo):
        out.append(Measurement("llamacpp", "gguf", 1, llamacpp_decode_rate(source, threads)))
    for dtype in dict.fromkeys(d for e, d, _ in todo if e == "hf"):
        batches = [b for e, d, b in todo if e == "hf" and d == dtype]
        out += [Measurement("hf", dtype, b, r) for b, r in hf_decode_rates(source, dtype, batches, threads).items()]
    return out


def _median_step(step: Callable[[], None], steps: int = DECODE_STEPS) -> float:
    step()  # warm-up: first-call allocations
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def llamacpp_decode_rate(gguf: str, threads: int) -> float:
    """Tokens/s of llama.cpp decoding one sequence (one token per `eval`) after a short prompt."""
    from cowest.models.llamacpp import safe_model_params

    import llama_cpp

    with safe_model_params(llama_cpp):
        llm = llama_cpp.Llama(model_path=str(gguf), n_ctx=256, n_threads=threads, n_threads_batch=threads,
                              verbose=False)
    try:
        tokens = llm.tokenize(b"The quick brown fox jumps over the lazy dog.", add_bos=True)
        llm.eval(tokens)
        return 1.0 / _median_step(lambda: llm.eval([tokens[-1]]))
    finally:
        llm.close()


def checkpoint_config(source: str) -> Any:
    """The model config, without loading weights: from the converted folder when there is one, else the GGUF's
    metadata, else the folder or hub id."""
    transformers = __import__("transformers")
    if str(source).endswith(".gguf"):
        from cowest.models.hf_loading import gguf_cache_dir

        folder = gguf_cache_dir(source)
        if (folder / "config.json").exists():
            return transformers.AutoConfig.from_pretrained(str(folder))
        p = Path(source)
        cfg = transformers.AutoConfig.from_pretrained(str(p.parent), gguf_file=p.name)
        if hasattr(cfg, "quantization_config"):  # the weights will be plain tensors, not GGUF blocks
            del cfg.quantization_config
        return cfg
    try:
        return transformers.AutoConfig.from_pretrained(str(source))
    except OSError as e:  # not a model folder, not a hub id (`hf//dev/null`), or offline with nothing cached
        from cowest.models.hf_loading import cannot_load

        raise cannot_load(source, e) from None


def hf_decode_rates(source: str, dtype: str, batches: list[int], threads: int) -> dict[int, float]:
    """Tokens/s of transformers decode steps at each batch size, on a model of the checkpoint's shape in `dtype`
    with constant weights (built on the meta device, then filled: no weights are read or converted). Checked on the
    1.5B in bf16 at batch 16: 34.5 tok/s here, 32.5 with the real weights, 32.7 for `generate` (32 new tokens)."""
    import torch
    import transformers

    config = checkpoint_config(source)
    torch_dtype = getattr(torch, dtype)
    prev_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.device("meta"):
            model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch_dtype)
        model.to_empty(device="cpu")
        with torch.no_grad():
            for t in list(model.parameters()) + list(model.buffers()):
                t.fill_(0.01)  # any normal value times the same; uninitialised memory may hold denormals or NaN
        model.eval()
        rates = {}
        with torch.inference_mode():
            for b in batches:
                ids = torch.full((b, 8), 1, dtype=torch.long)
                state = {"cache": model(input_ids=ids, use_cache=True).cache}
                nxt = torch.full((b, 1), 1, dtype=torch.long)

                def step() -> None:
                    state["cache"] = model(input_ids=nxt, cache=state["cache"], use_cache=True).cache  # noqa: F821 - runs before the del below

                rates[b] = b / _median_step(step)
        del model
        return rates
    finally:
        torch.set_num_threads(prev_threads)


# --- the entry point -------------------------------------------------------------------------------------------

def pick(source: str, engine: str, dtype: str, batch: int, *, threads: int | None = None,
         measurer: Measurer = measure, ident: dict[str, Any] | None = None) -> Choice:
    """The engine and dtype to run `source` (a GGUF, folder or hub id) with, for batches of `batch`.

    Explicit engine and dtype are checked and kept; `auto` ones are decided from this CPU's cached calibration,
    measuring (and caching) what is missing.
    """
    ident = ident or cpu_identity(threads=threads)
    is_gguf = str(source).endswith(".gguf")
    engines, dtypes = candidates(engine, dtype, ident, is_gguf)
    if engine != "auto" and (dtype != "auto" or engine == "llamacpp"):
        d = "gguf" if engine == "llamacpp" else dtype
        return Choice(engine=engine, dtype=d, reason=f"engine {engine}" + (
            f", dtype {dtype}" if engine == "hf" else "") + " set in the config")
    if engines == ["llamacpp"]:
        return Choice(engine="llamacpp", dtype="gguf", reason="the only candidate: transformers is not installed")
    absent = engine == "auto" and is_gguf and "llamacpp" not in engines
    if engines == ["hf"] and len(dtypes) == 1:  # nothing to measure
        why = [] if engine != "auto" else [LLAMACPP_ABSENT if absent else "not a GGUF file"]
        if dtype == "auto":
            why.append(f"this CPU has no native bf16 ({ident['cpu']})")
        return Choice(engine="hf", dtype=dtypes[0], reason=f"the only candidate: {', '.join(why) or 'set'}")
    path = calibration_path(source)
    have = read_cached(path, ident)
    todo = missing(have, engines, dtypes, batch)
    if todo:
        t0 = time.perf_counter()
        log(f"calibrating {Path(str(source)).name} on this CPU ({cpu_key(ident)}): "
            + ", ".join(f"{e} {d} batch {b}" for e, d, b in todo))
        have = have + measurer(str(source), todo, ident["threads"])
        write_cached(path, ident, have, Path(str(source)).name)
        log(f"calibration took {time.perf_counter() - t0:.1f} s, saved in {path}")
    usable = [m for m in have if m.engine in engines and (m.engine == "llamacpp" or m.dtype in dtypes)]
    choice = choose(usable, batch, cpu_key(ident))
    if absent:
        choice.reason += f"; {LLAMACPP_ABSENT}"
    return choice


def engine_record(backend: Any) -> dict[str, Any]:
    """What a run records about a loaded backend (through its wrappers): its identity, where an engine or dtype
    was chosen automatically which and why, and for the hf engine its batching and padding waste (useful tokens
    against row-steps computed, `cowest.models.hf_refill.DecodeStats`)."""
    inner = backend
    while hasattr(inner, "inner"):  # through the response cache and the stage's fault wrapper
        inner = inner.inner
    record = {"identity": backend.identity, "choice": getattr(inner, "engine_choice", None)}
    stats = getattr(inner, "decode_stats", None)
    if stats is not None:
        record["batching"] = "continuous" if getattr(inner, "refill", None) is not None else "static"
        record["decode"] = stats.as_dict()
    return record
