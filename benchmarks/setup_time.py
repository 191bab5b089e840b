"""Wall time of `bash scripts/setup.sh` on a fresh clone with an empty pip cache, with and without the llama.cpp
build, and what llama.cpp buys on this machine (which engine `engine: auto` picks with and without it).

Set-up: each variant clones this checkout's HEAD into a temporary folder and runs `scripts/setup.sh` there with
its arguments, with a fresh empty PIP_CACHE_DIR (so llama-cpp-python is built from source, as on a new machine)
and a fresh COWEST_MODELS_DIR (so the embedded models are joined and verified as on a new machine); the pip
index settings of the environment (PIP_FIND_LINKS, pip.conf: torch's CPU wheel) are kept. Downloads count too.

Engines: a fresh calibration (`cowest.models.calibrate.measure`, the measurement `engine: auto` caches; nothing
is read from or written to the cache) of every embedded model, and the choice `auto` makes from it for batched
stages and for single requests, with llama.cpp installed and without it. Run alone, under the CPU lock:

    flock /tmp/cowest-cpu.lock python benchmarks/setup_time.py [--variants default no-llamacpp] [--batch 32]
        [--no-setup] [--no-engines] [--record]
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_io import ROOT, load_average, machine, record  # noqa: E402

VARIANTS = {"default": [], "no-llamacpp": ["--no-llamacpp"]}
"""setup.sh's arguments per variant: the default set-up (llama-cpp-python built from source) and without it."""


def time_setup(args: list[str]) -> dict:
    """Seconds of `bash scripts/setup.sh ARGS` in a fresh clone of HEAD with empty pip and model caches."""
    with tempfile.TemporaryDirectory(prefix="cowest-setup-") as tmp:
        clone = Path(tmp) / "cowest"
        subprocess.run(["git", "clone", "-q", "--no-local", str(ROOT), str(clone)], check=True)
        env = dict(os.environ, PIP_CACHE_DIR=str(Path(tmp) / "pip-cache"),
                   COWEST_MODELS_DIR=str(Path(tmp) / "models"))
        env.pop("VIRTUAL_ENV", None)
        load_before = load_average()
        t0 = time.perf_counter()
        proc = subprocess.run(["bash", "scripts/setup.sh", *args], cwd=clone, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        load_after = load_average()
        if proc.returncode:
            raise SystemExit(f"setup.sh {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        has_llama = subprocess.run([str(clone / ".venv/bin/python"), "-c", "import llama_cpp"],
                                   capture_output=True).returncode == 0
        shutil.rmtree(clone / ".venv", ignore_errors=True)
    return {"args": " ".join(args) or "(none)", "wall": wall, "llama_cpp": has_llama, "load_before": load_before,
            "load_after": load_after}


def engine_picks(aliases: list[str], batch: int) -> list[dict]:
    """Per embedded model: fresh calibration rates, and auto's pick at `batch` and at 1 with and without llama.cpp."""
    from cowest.models.calibrate import choose, cpu_identity, cpu_key, measure, native_bf16
    from cowest.models.embedded import gguf_path

    ident = cpu_identity()
    dtypes = ["bfloat16", "float32"] if native_bf16(ident) else ["float32"]
    rows = []
    for alias in aliases:
        todo = [("llamacpp", "gguf", 1)] + [("hf", d, b) for d in dtypes for b in sorted({1, batch})]
        ms = measure(str(gguf_path(alias)), todo, ident["threads"])
        rate = {(m.engine, m.dtype, m.batch): m.tok_s for m in ms}
        without = [m for m in ms if m.engine != "llamacpp"]
        picks = {}
        for b in (batch, 1):
            with_c, without_c = choose(ms, b, cpu_key(ident)), choose(without, b, cpu_key(ident))
            best_with = max(m.tok_s for m in ms if m.batch == (1 if m.engine == "llamacpp" else b))
            best_without = max(m.tok_s for m in without if m.batch == b)
            picks[b] = (f"{with_c.engine} {with_c.dtype}", f"{without_c.engine} {without_c.dtype}",
                        best_without / best_with)
        rows.append({"model": alias, "rate": rate, "picks": picks})
        print(alias, rate, picks, flush=True)
    return rows


def engines_table(rows: list[dict], batch: int) -> str:
    lines = [f"| model | llama.cpp tok/s (1 prompt) | hf bf16 tok/s (1 / {batch}) | hf fp32 tok/s (1 / {batch}) | "
             f"auto at batch {batch} (with / without llama.cpp) | speed kept without | "
             "auto at batch 1 (with / without) | speed kept without |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        rate, p = r["rate"], r["picks"]
        hf = lambda d: f"{rate.get(('hf', d, 1), 0):.1f} / {rate.get(('hf', d, batch), 0):.1f}"  # noqa: E731
        lines.append(f"| {r['model']} | {rate[('llamacpp', 'gguf', 1)]:.1f} | {hf('bfloat16')} | {hf('float32')} | "
                     f"{p[batch][0]} / {p[batch][1]} | {p[batch][2]:.2f} | {p[1][0]} / {p[1][1]} | {p[1][2]:.2f} |")
    return "\n".join(lines)


def setup_table(rows: list[dict]) -> str:
    lines = ["| `bash scripts/setup.sh` arguments | llama_cpp installed | wall s | load before / after |",
             "|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['args']} | {'yes' if r['llama_cpp'] else 'no'} | {r['wall']:.0f} | "
                     f"{r['load_before']} / {r['load_after']} |")
    return "\n".join(lines)


def verdict(engines: list[dict], setups: list[dict], batch: int) -> str:
    """The reading: what skipping llama.cpp saves at set-up against what it costs batched and single requests."""
    kept_b = [r["picks"][batch][2] for r in engines]
    kept_1 = [r["picks"][1][2] for r in engines]
    span = lambda xs: f"{min(xs):.2f}" + (f"-{max(xs):.2f}" if f"{min(xs):.2f}" != f"{max(xs):.2f}" else "")  # noqa: E731
    walls = {r["llama_cpp"]: r["wall"] for r in setups}
    saved = (f"skipping the compile saves {walls[True] - walls[False]:.0f} s of a fresh set-up "
             f"({walls[True]:.0f} s -> {walls[False]:.0f} s; pip caches the wheel, so only the first set-up on a "
             "machine pays it)" if len(walls) == 2 else "")
    lost = (f"without llama.cpp, batched stages (batch {batch}) keep {span(kept_b)} of their "
            f"speed and single requests (batch 1: `cowest serve`, which runs each request alone) keep "
            f"{span(kept_1)}")
    if min(kept_1) < 0.9 or min(kept_b) < 0.9:
        return (f"Reading: {saved}; but {lost}, so the default set-up keeps llama.cpp; `bash scripts/setup.sh "
                "--no-llamacpp` skips it where only batched stages matter (`engine: auto` then picks transformers "
                "and says why).")
    return f"Reading: {saved}, and {lost}: the default set-up can skip llama.cpp on this CPU."


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--models", nargs="+", default=["smollm2-135m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"])
    ap.add_argument("--batch", type=int, default=32, help="the batched stages' batch size (the demo's: 32)")
    ap.add_argument("--no-setup", action="store_true", help="skip the set-up timings")
    ap.add_argument("--no-engines", action="store_true", help="skip the engine calibration")
    ap.add_argument("--record", action="store_true", help="write the tables into BENCHMARKS.md")
    args = ap.parse_args()
    parts = [f"### Set-up time and what llama.cpp buys (`benchmarks/setup_time.py`, {datetime.date.today().isoformat()}, {machine()})\n"]
    engines, setups = [], []
    if not args.no_engines:
        load = load_average()
        engines = rows = engine_picks(args.models, args.batch)
        parts += [f"Engines (load average {load} before, {load_average()} after): a fresh calibration "
                  "(`cowest.models.calibrate.measure`: decode steps, llama.cpp one prompt at a time, transformers on "
                  "a model of the checkpoint's shape) and the engine `engine: auto` picks from it, with llama.cpp "
                  "installed and without it; \"speed kept\" = the best tok/s without llama.cpp over the best with "
                  "it.\n", engines_table(rows, args.batch), ""]
    if not args.no_setup:
        setups = rows = []
        for v in args.variants:
            rows.append(time_setup(VARIANTS[v]))
            print(rows[-1], flush=True)
        parts += ["Set-up: `bash scripts/setup.sh` in a fresh clone of HEAD with an empty pip cache (PIP_CACHE_DIR, "
                  "so llama-cpp-python compiles from source) and an empty COWEST_MODELS_DIR; torch's CPU wheel from "
                  "the environment's find-links, everything else downloaded. Run alone under the CPU lock.\n",
                  setup_table(rows)]
    if engines and setups:
        parts += ["", verdict(engines, setups, args.batch)]
    text = "\n".join(parts)
    print(text)
    if args.record:
        record("setup_time.py", text)


if __name__ == "__main__":
    main()
