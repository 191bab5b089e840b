"""Prompt wordings against the token budget: how many of the strong model's replies are cut, and how many reach gold.

The numbers in configs/method_ethics.yaml and configs/method_medmcqa.yaml (the comments above their `prompts`) come
from this script: the strong model alone with the built-in solo template and with the config's own `solo` prompt
(the method configs' "at most two short sentences"), on train rows START..START+N of the config's task, sampled at
temperature 0.7 with a budget of 160 tokens. Not recorded in BENCHMARKS.md (a few minutes, alone under the CPU lock):

    flock /tmp/cowest-cpu.lock python benchmarks/prompt_cut.py configs/method_medmcqa.yaml [--start 200] [--n 48]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from cowest.core.config import load_config
from cowest.core.records import SamplingParams
from cowest.models.base import load_backend
from cowest.pipeline.rationales import reaches_gold
from cowest.tasks.base import load_samples
from cowest.tasks.prompts import solo_messages

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_io import SHARED_DATA  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config")
    ap.add_argument("--start", type=int, default=200)
    ap.add_argument("--n", type=int, default=48)
    ap.add_argument("--max-tokens", type=int, default=160)
    args = ap.parse_args()
    cfg = load_config(args.config, [f"task.data={SHARED_DATA}"])
    samples = load_samples(cfg.task, "train")[args.start:args.start + args.n]
    backend = load_backend(cfg.models.strong)
    params = SamplingParams(temperature=0.7, max_tokens=args.max_tokens, seed=0)
    for name, overrides in (("built-in", {}), ("the config's", cfg.collaboration.prompts)):
        t0 = time.perf_counter()
        gens = [o[0] for o in backend.generate([solo_messages(s, overrides) for s in samples], params)]
        cut = sum(g.finish_reason == "length" for g in gens)
        gold = sum(g.finish_reason != "length" and reaches_gold(s, g.text) for g, s in zip(gens, samples))
        print(f"{name} solo prompt: cut {cut}/{len(gens)}, gold {gold}/{len(gens)}, "
              f"{sum(g.completion_tokens for g in gens) / len(gens):.0f} tokens on average, "
              f"{time.perf_counter() - t0:.0f} s", flush=True)
    backend.close()


if __name__ == "__main__":
    main()
