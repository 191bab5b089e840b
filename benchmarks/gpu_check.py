"""GPU check of the training recipes: a few SFT and DPO steps of `cowest.pipeline.train.sft.run_sft` / `cowest.pipeline.train.dpo.run_dpo`
on a RANDOMLY INITIALISED model with the weak model's architecture (SmolLM2-135M: Llama, 30 layers, hidden 576,
9 heads / 3 kv heads, intermediate 1536, vocab 49152, tied embeddings), so nothing has to be downloaded or carried.

The tokenizer is a small byte-level BPE trained offline on the demo task's own text (ChatML special tokens), so the
prompts and drafts are the ones the recipes really see (draft prompt of the demo task, gold draft / pair texts).

    python benchmarks/gpu_check.py                 # the device torch sees (cuda when present)
    python benchmarks/gpu_check.py --device cpu    # the same on CPU, for comparison (run under the CPU lock)

Prints one table row per recipe: steps, mean s/step after the first step (warm-up), steps/s. With --json PATH the
rows are also written as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # runs from a bare checkout too (GPU machine)

SMOLLM2_135M = dict(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                    num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=8192, rms_norm_eps=1e-5,
                    rope_theta=100000.0, tie_word_embeddings=True, hidden_act="silu")
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def build_model_dir(texts: list[str], out: Path) -> Path:
    """Save a random SmolLM2-135M-shaped Llama and a BPE tokenizer trained on `texts` into `out` (an hf folder)."""
    import torch
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    from cowest.models.hf_loading import CHATML_TEMPLATE

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=4096, special_tokens=SPECIALS,
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = transformers.PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token=None, eos_token="<|im_end|>",
                                               pad_token="<|endoftext|>", unk_token=None)
    tok.chat_template = CHATML_TEMPLATE
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(**SMOLLM2_135M, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    model = transformers.LlamaForCausalLM(cfg)
    model.save_pretrained(str(out))
    tok.save_pretrained(str(out))
    return out


def steps_per_s(adapter_dir: Path) -> dict[str, float]:
    """Read s/step off the recipe's train_log.jsonl wall-clock stamps, dropping the first (warm-up) step."""
    rows = [json.loads(x) for x in (adapter_dir / "train_log.jsonl").read_text().splitlines()]
    times = [r["time"] for r in rows if "loss" in r]
    if len(times) < 3:
        raise SystemExit(f"{adapter_dir}: only {len(times)} logged steps; ask for more --steps")
    per = (times[-1] - times[0]) / (len(times) - 1)
    return {"steps": len(times), "s_per_step": round(per, 4), "steps_per_s": round(1 / per, 3)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", choices=["auto", "cpu"], default="auto",
                    help="cpu hides the GPU (CUDA_VISIBLE_DEVICES='') so the recipes take their CPU settings")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # before torch is imported: device_kwargs() then picks use_cpu
    import torch

    from cowest.core.config import ExperimentConfig
    from cowest.core.records import PreferencePair, write_jsonl
    from cowest.tasks.base import load_samples
    from cowest.tasks.prompts import draft_messages, draft_target
    from cowest.pipeline.train.dpo import run_dpo
    from cowest.pipeline.train.sft import run_sft

    cfg = ExperimentConfig()
    cfg.task.name = "demo"
    samples = load_samples(cfg.task, "train", limit=args.steps * args.batch_size)
    fmt = cfg.collaboration.draft_format
    texts = [m["content"] for s in samples for m in draft_messages(s, fmt)] + \
        [draft_target(s, fmt) or s.answers[0] for s in samples]
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({platform.processor() or 'x86_64'}, {torch.get_num_threads()} threads)"
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        model_dir = build_model_dir(texts, tmp / "model")
        cfg.models.weak.spec = f"hf/{model_dir}"
        for section in (cfg.sft, cfg.align):
            section.max_steps, section.batch_size = args.steps, args.batch_size
        sft_dir = run_sft(cfg, samples, tmp / "sft")
        rows.append({"recipe": "sft", **steps_per_s(sft_dir)})
        # Pairs: the gold draft is chosen over a wrong one (another sample's draft); the DPO recipe only needs texts.
        pairs = [PreferencePair(prompt=draft_messages(s, fmt),
                                chosen=[{"role": "assistant", "content": draft_target(s, fmt) or s.answers[0]}],
                                rejected=[{"role": "assistant", "content": draft_target(o, fmt) or o.answers[0]}],
                                question_id=s.id, delta_chosen=1.0, delta_rejected=-1.0)
                 for s, o in zip(samples, samples[1:] + samples[:1])]
        write_jsonl(tmp / "pairs.jsonl", pairs)
        dpo_dir = run_dpo(cfg, tmp / "pairs.jsonl", tmp / "dpo", weak_source=str(model_dir), reference_adapter=sft_dir)
        rows.append({"recipe": "dpo", **steps_per_s(dpo_dir)})
    print(f"\ndevice: {device}; torch {torch.__version__}; model: random SmolLM2-135M architecture, LoRA r=16 "
          f"all-linear; batch {args.batch_size}, {args.steps} steps each")
    print("| recipe | steps | s/step | steps/s |\n| --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['recipe']} | {r['steps']} | {r['s_per_step']} | {r['steps_per_s']} |")
    if args.json:
        args.json.write_text(json.dumps({"device": device, "torch": torch.__version__, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
