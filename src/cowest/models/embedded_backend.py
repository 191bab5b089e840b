"""The `embedded/<alias>` provider: the embedded model's GGUF file (`cowest.models.embedded`) opened with the engine
and dtype the config names or, where they are `auto`, the fastest by measurement (`cowest.models.calibrate`)."""

from __future__ import annotations

from cowest.models.embedded import gguf_path


def load_embedded(model: str, cfg):  # -> a Backend
    """Backend factory for `embedded/<alias>`: the engine and dtype `cfg` names, or, where they are `auto`, the
    fastest on this CPU for batches of `cfg.batch_size` by measurement (`cowest.models.calibrate`). The backend's
    `engine_choice` records which engine runs and why; it is printed too."""
    from cowest.models.base import PROVIDERS
    from cowest.models.calibrate import pick
    from cowest.core.progress import log

    path = gguf_path(model)
    choice = pick(str(path), cfg.engine, cfg.dtype, cfg.batch_size, threads=cfg.n_threads)
    log(f"embedded/{model}: {choice.engine}" + (f" {choice.dtype}" if choice.engine == "hf" else "")
        + f" at batch {cfg.batch_size} ({choice.reason})")
    dtype = choice.dtype if choice.engine == "hf" else cfg.dtype
    backend = PROVIDERS.get(choice.engine)(str(path), cfg.model_copy(update={"engine": choice.engine, "dtype": dtype}))
    backend.engine_choice = choice.as_dict()
    return backend
