"""`cowest models [--verify] [--prepare [ALIAS ...]]`: the embedded models and which backends can run (the table:
`models.listing`), and the one-time work of a model's first run on a CPU done ahead of it."""

from __future__ import annotations

import argparse

PREPARE_BATCH = 32
"""The batch size the demo and the shipped configs run their stages at: the one the engine choice is made for."""


def cmd_models(args: argparse.Namespace) -> int:
    """Print the embedded models; exit 1 when `--verify` finds an installed model whose hash is wrong. `--prepare`
    then converts and calibrates the named models (default: the weak and strong defaults) on this CPU."""
    from cowest.models.listing import format_table, model_rows

    rows = model_rows(verify=args.verify)
    print(format_table(rows, args.verify))
    if any(r["state"] == "BAD" for r in rows):
        return 1
    if args.prepare is not None:
        prepare(args.prepare or default_aliases())
    return 0


def default_aliases() -> list[str]:
    from cowest.core.config import ModelsConfig
    from cowest.models.base import split_spec

    m = ModelsConfig()
    return [split_spec(spec)[1] for spec in (m.weak.spec, m.strong.spec)]


def prepare(aliases: list[str]) -> None:
    """What a model's first `engine: auto` run on this CPU would do (dequantise the GGUF into the cached
    safetensors copy, measure the engines, cache the choice), done now, so that the first run starts at once."""
    from cowest.models.calibrate import pick
    from cowest.models.embedded import get_embedded, gguf_path
    from cowest.models.hf_loading import convert_gguf

    for alias in aliases:
        gguf = gguf_path(alias)
        choice = pick(str(gguf), "auto", "auto", PREPARE_BATCH)
        print(f"{alias}: {choice.engine} {choice.dtype} at batch {PREPARE_BATCH} ({choice.reason})", flush=True)
        # The copy the hf engine runs, and for a weak model the float32 one its LoRA training and merges load
        # (whatever engine generates); float32 first, since a bf16 copy is then cast from it in seconds.
        dtypes = {choice.dtype} if choice.engine == "hf" else set()
        dtypes |= {"float32"} if get_embedded(alias).role == "weak" else set()
        for dtype in sorted(dtypes, key=lambda d: d != "float32"):
            print(f"{alias}: {dtype} weights in {convert_gguf(gguf, dtype)}", flush=True)


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="embedded models (role, files, size, installed/verified) and backends")
    p.add_argument("--verify", action="store_true", help="SHA-256-check every installed embedded model")
    p.add_argument("--prepare", nargs="*", metavar="ALIAS", default=None,
                   help="convert and calibrate these embedded models for this CPU now (default: the weak and strong "
                        "defaults), so that their first run does not")
    p.set_defaults(func=cmd_models)
