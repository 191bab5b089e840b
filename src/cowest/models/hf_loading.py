"""Load a causal LM and its tokenizer into transformers: local folder, hub id or GGUF file, plus adapter chains.

A GGUF file is converted once into a safetensors folder in the dtype that runs (float32 under
`<models cache>/hf/<sha256 of the file>`, bfloat16 under `...-bfloat16`): loading a GGUF dequantizes every tensor
(30-120 s), the saved folder loads in seconds and is hash-checked against the SHA-256 recorded at conversion. Adapters that cowest trains
record their parent in `cowest_adapter.json` (an aligned adapter was trained on the SFT model with the SFT adapter
merged), so loading the leaf rebuilds base -> merge parents -> apply leaf.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from cowest.core.errors import ConfigError, CowestError, require

from cowest.core.layout import ADAPTER_CONFIG, ADAPTER_META
CHATML_TEMPLATE = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
"""Fallback for tokenizers without a chat template (e.g. base models): plain ChatML turns."""


def resolve_source(spec: str) -> str:
    """A model spec -> what `load_model_and_tokenizer` takes: a folder, a hub id or a .gguf path.

    `embedded/<alias>` -> the verified embedded GGUF; `hf/<x>` -> x; `llamacpp/<file.gguf>` -> the file. Black-box
    providers (openai, mock) have no weights to load or train.
    """
    provider, sep, model = spec.partition("/")
    if not sep or not model:
        raise ConfigError(f"model spec '{spec}' is not provider/model (e.g. embedded/smollm2-135m, hf/<folder>)")
    if provider == "embedded":
        from cowest.models.embedded import gguf_path

        return str(gguf_path(model))
    if provider in ("hf", "llamacpp"):
        return model
    raise ConfigError(
        f"model spec '{spec}': provider '{provider}' has no local weights to load or train; "
        "use hf/<folder or hub id>, llamacpp/<file.gguf> or embedded/<alias>"
    )


def _strip_gguf_quantizer(model: Any) -> Any:
    """GGUF-loaded weights are plain fp32, but the model stays flagged quantized, which blocks training and saving."""
    q = getattr(model, "hf_quantizer", None)
    if q is not None:
        q.remove_quantization_config(model)
    model.hf_quantizer = None  # some transformers code reads the attribute directly after removal
    return model


SOURCE_META = "cowest_source.json"
"""Written into every converted folder: the GGUF it came from, its dtype and the SHA-256 of each file."""


def gguf_cache_dir(gguf: str | Path, dtype: str = "float32") -> Path:
    """Where the safetensors copy of a GGUF file in `dtype` lives: keyed by the file's SHA-256, so renames reuse it
    (`<sha>` holds float32, `<sha>-bfloat16` the bf16 copy: half the disk and the read)."""
    from cowest.models.embedded import cache_root
    from cowest.models.identity import file_sha256

    digest = file_sha256(gguf)
    return cache_root() / "hf" / (digest if dtype == "float32" else f"{digest}-{dtype}")


def _folder_hashes(folder: Path) -> dict[str, str]:
    from cowest.models.identity import file_sha256

    return {f.name: file_sha256(f) for f in sorted(folder.iterdir()) if f.is_file() and f.name != SOURCE_META}


def verify_converted(folder: Path) -> str | None:
    """None when every file of a converted folder matches the SHA-256 recorded at conversion, else what is wrong.

    Hashes are remembered by size and mtime (cowest.models.identity), so a folder that did not change is checked
    without reading it. A folder converted before hashes were recorded gets them recorded now.
    """
    try:
        meta = json.loads((folder / SOURCE_META).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return f"{SOURCE_META} is missing or unreadable"
    files = meta.get("files")
    if files is None:
        meta["files"] = _folder_hashes(folder)
        (folder / SOURCE_META).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        return None
    from cowest.models.identity import file_sha256

    for name, digest in files.items():
        f = folder / name
        if not f.is_file():
            return f"{name} is missing"
        if file_sha256(f) != digest:
            return f"{name} does not match its recorded SHA-256"
    return None


def convert_gguf(gguf: str | Path, dtype: str = "float32") -> Path:
    """The safetensors folder of a GGUF file in `dtype`, converting it on first use (atomic: a crash leaves no half
    folder) and converting again when a file fails its hash check. A bf16 copy is cast from the float32 copy when
    that exists (seconds), else from the GGUF (the dequantisation, 30-120 s)."""
    transformers = require("transformers", "train")
    torch = require("torch", "train")
    gguf = Path(gguf)
    if not gguf.is_file():
        raise CowestError(f"GGUF file not found: {gguf}")
    target = gguf_cache_dir(gguf, dtype)
    if (target / "config.json").exists():
        problem = verify_converted(target)
        if problem is None:
            return target
        from cowest.core.progress import log

        log(f"converted weights {target}: {problem}; converting {gguf.name} again")
        shutil.rmtree(target, ignore_errors=True)
    tmp = target.with_name(f"{target.name}.{os.getpid()}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    fp32 = gguf_cache_dir(gguf)
    if dtype != "float32" and (fp32 / "config.json").exists() and verify_converted(fp32) is None:
        tok = transformers.AutoTokenizer.from_pretrained(str(fp32))
        model = transformers.AutoModelForCausalLM.from_pretrained(str(fp32), dtype=getattr(torch, dtype))
    else:
        tok = transformers.AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = transformers.AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name,
                                                                  dtype=torch.float32)
        _strip_gguf_quantizer(model)
        model.to(getattr(torch, dtype))
    _ensure_chat_template(tok)
    model.save_pretrained(str(tmp))
    tok.save_pretrained(str(tmp))
    from cowest.core.hashing import sha256_file

    files = {f.name: sha256_file(f) for f in sorted(tmp.iterdir()) if f.is_file()}
    meta = {"gguf": str(gguf.resolve()), "sha256": fp32.name, "dtype": dtype, "files": files}
    (tmp / SOURCE_META).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    try:
        os.replace(tmp, target)
    except OSError:  # another process converted it first
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _ensure_chat_template(tok: Any) -> None:
    if not getattr(tok, "chat_template", None):
        tok.chat_template = CHATML_TEMPLATE


def _prepare_tokenizer(tok: Any) -> Any:
    _ensure_chat_template(tok)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"  # generation pads on the left; the TRL trainers pad their own batches
    return tok


def read_adapter_meta(adapter: str | Path) -> dict:
    """The `cowest_adapter.json` of an adapter folder, or {} for a plain PEFT adapter."""
    p = Path(adapter) / ADAPTER_META
    if not p.exists():
        return {}
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise CowestError(f"{p}: malformed JSON ({e.msg})") from None


def write_adapter_meta(adapter_dir: str | Path, *, base: str, parent: str | Path | None, method: str,
                       **extra: Any) -> None:
    """Record how an adapter was trained; the parent path is stored relative, so a moved run folder still loads."""
    adapter_dir = Path(adapter_dir)
    rel = os.path.relpath(Path(parent).resolve(), adapter_dir.resolve()) if parent else None
    meta = {"schema_version": 1, "base": base, "parent": rel, "method": method, **extra}
    (adapter_dir / ADAPTER_META).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")


def adapter_chain(adapter: str | Path) -> list[Path]:
    """Adapter folders from the root (first trained, e.g. SFT) to `adapter` itself."""
    chain: list[Path] = []
    cur: Path | None = Path(adapter)
    while cur is not None:
        if not (cur / ADAPTER_CONFIG).exists():
            raise CowestError(f"{cur}: not a PEFT adapter folder (no adapter_config.json)")
        if cur.resolve() in [c.resolve() for c in chain]:
            raise CowestError(f"{cur}/{ADAPTER_META}: parent chain loops back on itself")
        chain.append(cur)
        parent = read_adapter_meta(cur).get("parent")
        cur = (cur / parent).resolve() if parent else None
    return chain[::-1]


def cannot_load(source: str | Path, e: OSError) -> CowestError:
    """The one-line error for a model source transformers cannot open (its config or its weights)."""
    first = str(e).splitlines()[0][:200]
    return CowestError(f"model '{source}': cannot load it with transformers ({first}); name a folder holding "
                       "config.json, a .gguf file, a hub id, or embedded/<alias> (`cowest models` lists them)")


def load_model_and_tokenizer(source: str, *, adapter: str | Path | None = None, trainable: bool = False,
                             dtype: str = "float32") -> tuple[Any, Any]:
    """Load a causal LM and its tokenizer from a folder, a hub id or a .gguf file, with optional adapters.

    `adapter` may be the leaf of a chain (see `adapter_chain`): parents are merged into the base in order. With
    `trainable=False` the leaf is merged too and the model is in eval mode; with `trainable=True` the leaf stays a
    trainable PEFT adapter. Adapters are applied and merged in float32 and the result is cast to `dtype` after, so
    only the final weights are rounded; without adapters a GGUF loads from its converted copy in `dtype`.
    """
    transformers = require("transformers", "train")
    torch = require("torch", "train")
    load_dtype = dtype if adapter is None and not trainable else "float32"
    folder = convert_gguf(source, load_dtype) if str(source).endswith(".gguf") else source
    try:
        tok = transformers.AutoTokenizer.from_pretrained(str(folder))
        model = transformers.AutoModelForCausalLM.from_pretrained(str(folder), dtype=getattr(torch, load_dtype))
    except OSError as e:  # not a model folder, not a hub id (`hf//dev/null`), or offline with nothing cached
        raise cannot_load(source, e) from None
    _strip_gguf_quantizer(model)
    if adapter is not None:
        peft = require("peft", "train")
        chain = adapter_chain(adapter)
        for i, a in enumerate(chain):
            leaf = i == len(chain) - 1
            model = peft.PeftModel.from_pretrained(model, str(a), is_trainable=leaf and trainable)
            if not (leaf and trainable):
                model = model.merge_and_unload()
    if not trainable and model.dtype != getattr(torch, dtype):
        model.to(getattr(torch, dtype))
    _prepare_tokenizer(tok)
    if model.generation_config is not None and model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tok.pad_token_id
    model.train(trainable)
    if not trainable:
        contiguous_head_input(model)
    return model, tok


def contiguous_head_input(model: Any) -> None:
    """Hand the LM head a contiguous input.

    With `logits_to_keep=1` (every prefill: `generate`'s and the refill loop's) the head's input is a strided slice
    of the last position. When the head's weight does not require grad, which is what merging a PEFT adapter leaves,
    torch multiplies such a slice by a batch-expanded copy of the whole weight (`aten::bmm` after a copy of batch x
    vocab x hidden): on the demo's SFT weak model a 32 x 59 prefill took 3.4 s instead of 1.6 s (torch 2.13,
    2026-12-02). A contiguous slice folds into one matmul; the logits are bit-identical."""
    head = model.get_output_embeddings()
    if head is not None:
        head.register_forward_pre_hook(lambda module, args: (args[0].contiguous(), *args[1:]))
