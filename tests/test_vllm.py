"""`engine: vllm`: a real vLLM server (its own venv, .venv-vllm) serving the embedded weak model with LoRA adapters.

The server tests are skipped only where the venv is absent (`bash scripts/setup.sh --vllm` makes it; CI does). One
server start (~50 s on 2 cores) serves the whole run: a feedback stage and a collaborate evaluation with the weak
model's SFT adapter, then a second adapter (a DPO leaf on the SFT model) is loaded into the same running server and
answers under its own name. Run under the shared CPU lock.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from cowest.core.errors import ConfigError, CowestError
from cowest.models import vllm_server
from cowest.models.vllm_server import vllm_python

pytestmark = pytest.mark.slow


def _venv_present() -> bool:
    try:
        vllm_python()
        return True
    except ConfigError:
        return False


needs_vllm = pytest.mark.skipif(not _venv_present(), reason=f"no vLLM venv (.venv-vllm): run {vllm_server.SETUP}")


@pytest.fixture(scope="module")
def base_folder() -> Path:
    """The embedded weak model's cached bf16 safetensors copy: what the server loads."""
    pytest.importorskip("transformers")
    from cowest.models.embedded import gguf_path
    from cowest.models.hf_loading import convert_gguf

    return convert_gguf(gguf_path("smollm2-135m"), "bfloat16")


def make_lora(base: Path, out: Path, seed: int, parent: Path | None = None) -> Path:
    """A tiny real PEFT LoRA on every linear layer (as cowest's recipes train), with random, nonzero A and B so it
    changes the model's outputs; `parent`: trained on top of that adapter merged (cowest's DPO)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from cowest.models.hf_loading import write_adapter_meta

    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
    torch.manual_seed(seed)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear",
                                                  init_lora_weights=False, task_type="CAUSAL_LM"))
    with torch.no_grad():  # large enough to change greedy replies, small enough that the model still writes words
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.mul_(0.3)
    peft_model.save_pretrained(str(out))
    write_adapter_meta(out, base="embedded/smollm2-135m", parent=parent, method="test")
    return out


def test_missing_venv_names_the_setup_command(monkeypatch, tmp_path):
    from cowest.core.config import ModelConfig
    from cowest.models.base import load_backend

    monkeypatch.setenv(vllm_server.VENV_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match=r"bash scripts/setup\.sh --vllm") as e:
        load_backend(ModelConfig(spec="embedded/smollm2-135m", engine="vllm"))
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="engine vllm serves embedded"):
        monkeypatch.delenv(vllm_server.VENV_ENV)
        load_backend(ModelConfig(spec="openai/x", engine="vllm", base_url="http://127.0.0.1:1/v1"))


def test_server_that_dies_while_starting_gives_one_line_with_its_log(monkeypatch, tmp_path):
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    python = venv / "bin" / "python"
    python.write_text("#!/bin/sh\necho 'loading'\necho 'ValueError: no such model' >&2\nexit 3\n")
    python.chmod(0o755)
    monkeypatch.setenv(vllm_server.VENV_ENV, str(venv))
    model = tmp_path / "model"
    model.mkdir()
    with pytest.raises(CowestError) as e:
        vllm_server.VLLMServer(str(model), "bfloat16", tmp_path / "logs" / "server.log", max_model_len=512,
                               timeout_s=30)
    msg = str(e.value)
    assert "\n" not in msg and "exited with code 3" in msg and "ValueError: no such model" in msg
    assert str(tmp_path / "logs" / "server.log") in msg


def test_adapter_chain_becomes_one_exact_lora(base_folder, tmp_path, monkeypatch):
    """An SFT -> DPO chain served as one LoRA (PEFT `cat`) gives the logits of the chain merged in order."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from cowest.models.hf_loading import adapter_chain, load_model_and_tokenizer

    monkeypatch.setenv("COWEST_MODELS_DIR", str(tmp_path / "cache"))
    sft = make_lora(base_folder, tmp_path / "sft", seed=0)
    dpo = make_lora(base_folder, tmp_path / "dpo", seed=1, parent=sft)
    chain = adapter_chain(dpo)
    one = vllm_server.single_lora(chain, str(base_folder), vllm_server.adapter_name(chain))
    assert json.loads((one / "adapter_config.json").read_text())["r"] == 8
    merged, tok = load_model_and_tokenizer(str(base_folder), adapter=dpo)
    base = AutoModelForCausalLM.from_pretrained(str(base_folder), dtype=torch.float32)
    served = PeftModel.from_pretrained(base, str(one)).eval()
    ids = tok("The capital of France is", return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        want, got = merged(ids).logits, served(ids).logits
    assert torch.allclose(want, got, atol=2e-3, rtol=0), (want - got).abs().max()
    # a different chain gets a different served name; the same chain the same one
    assert vllm_server.adapter_name([sft]) != vllm_server.adapter_name(chain) == vllm_server.adapter_name(chain)


@needs_vllm
def test_vllm_serves_feedback_and_collaborate_and_loads_a_new_adapter_without_restart(base_folder, make_config):
    import httpx

    from cowest.core.layout import RunLayout
    from cowest.pipeline.loop import do_eval, do_feedback, locked_run, loop_system, weak_model
    from cowest.models.base import load_backend
    from cowest.core.records import SamplingParams
    from cowest.core.system_id import SystemId
    from cowest.core.traces import read_traces

    cfg = make_config(
        task={"name": "demo", "train_limit": 2, "eval_limit": 3},
        models={"weak": {"spec": "embedded/smollm2-135m", "engine": "vllm", "dtype": "bfloat16", "n_ctx": 1024,
                         "batch_size": 8},
                "strong": {"spec": "mock/answer:Answer: 42"}},
        generation={"weak": {"max_tokens": 24}, "strong": {"max_tokens": 16}},
        feedback={"k": 2, "questions": 2},
        eval={"strategies": ["collaborate"], "bootstrap_samples": 10},
    )
    run = RunLayout.of(cfg)
    make_lora(base_folder, run.sft_adapter, seed=0)
    prompt = [[{"role": "user", "content": "Name three colours."}]]
    with locked_run(cfg):
        do_feedback(cfg, 1)
        records = [json.loads(x) for x in (run.feedback_dir(1) / "feedback.jsonl").read_text().splitlines()]
        assert len(records) == 2 and all(len(r["drafts"]) == 2 for r in records)
        assert any(d["text"].strip() for r in records for d in r["drafts"])
        engines = json.loads((run.feedback_dir(1) / "done.json").read_text())["engines"]
        assert engines["weak"]["choice"]["engine"] == "vllm" and engines["weak"]["identity"].startswith("vllm/")

        system = loop_system(cfg, SystemId.collab())
        do_eval(cfg, systems=[system])
        traces = list(read_traces(next((run.eval.path / "traces").glob("*.jsonl"))))
        assert len(traces) == 3
        drafts = [s for t in traces for s in t.steps if s.role == "weak"]
        assert len(drafts) == 3 and all(s.output.text.strip() and s.output.error is None for s in drafts)

        pool = vllm_server._POOL.get()
        assert pool is not None and len(pool.servers) == 1
        server = next(iter(pool.servers.values()))
        pid = server.proc.pid
        greedy = SamplingParams(max_tokens=16, temperature=0.0, logprobs=True)
        replies = {}
        for name, weak in (("base", cfg.models.weak), ("sft", weak_model(cfg, run.sft_adapter))):
            backend = load_backend(weak)
            replies[name] = backend.generate(prompt, greedy)[0][0]
            backend.close()
        assert replies["sft"].text != replies["base"].text  # the adapter is applied

        # DPO's adapter appears after the server started: loaded at runtime into the same process
        dpo = make_lora(base_folder, run.aligned_adapter(1, "dpo"), seed=1, parent=run.sft_adapter)
        dpo_backend = load_backend(weak_model(cfg, dpo))
        assert dpo_backend.server is server and server.proc.pid == pid and server.alive()
        assert httpx.get(f"{server.url}/v1/models", timeout=10).status_code == 401  # the run's key only
        served = {m["id"] for m in httpx.get(f"{server.url}/v1/models", headers=server.auth(),
                                                 timeout=10).json()["data"]}
        assert dpo_backend.served in served and len(server.adapters) == 2
        replies["dpo"] = dpo_backend.generate(prompt, greedy)[0][0]
        dpo_backend.close()
        assert replies["dpo"].text.strip() and replies["dpo"].token_logprobs != replies["sft"].token_logprobs
        assert server.alive()  # kept for the rest of the run
    assert not server.alive()  # stopped with the run
    logs = list((run.root / "vllm").glob("*.log"))
    assert logs and "load_lora_adapter" in logs[0].read_text(errors="replace")
    assert not os.path.exists(f"/proc/{pid}")
