"""`python -m cowest.models.llamacpp_server --model FILE.gguf ...`: llama-cpp-python's OpenAI-compatible server.

The same server as `python -m llama_cpp.server` (same arguments), started with the AMX guard of
`cowest.models.llamacpp.safe_model_params`, so it also runs on machines where AMX kernels crash. Point an
`openai/<model>` backend at it with `base_url: http://127.0.0.1:<port>/v1`.
"""

from __future__ import annotations

from cowest.core.errors import require
from cowest.models.llamacpp import safe_model_params


def main() -> None:
    llama_cpp = require("llama_cpp", "llamacpp")
    require("sse_starlette", "llamacpp")
    from llama_cpp.server.__main__ import main as server_main

    # The guard stays on for the server's life: models are loaded in create_app, inside server_main.
    with safe_model_params(llama_cpp):
        server_main()


if __name__ == "__main__":
    main()
