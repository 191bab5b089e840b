"""A plain TRL DPO script, the reference that `benchmarks/loop.py` times `cowest align` against.

What a user would write by hand from the TRL docs: transformers model + the SFT LoRA merged, DPOTrainer with a new
LoRA, the same hyper-parameters and pairs as cowest's recipe. Prints one JSON line of timings. Uses no cowest code,
so the comparison measures what cowest's recipe adds or saves.

    python benchmarks/plain_dpo.py --model DIR --sft-adapter DIR --pairs pairs.jsonl --out DIR [--lr ...]
"""

from __future__ import annotations

import argparse
import json
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="a transformers model folder (the weak base model)")
    ap.add_argument("--sft-adapter", required=True, help="the SFT LoRA folder (with its tokenizer)")
    ap.add_argument("--pairs", required=True, help="pairs.jsonl with prompt / chosen / rejected")
    ap.add_argument("--out", required=True)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--beta", type=float, default=0.1)
    ap.add_argument("--lora-r", type=int, default=16)
    ap.add_argument("--lora-alpha", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    t0 = time.perf_counter()
    import torch
    from datasets import Dataset
    from peft import LoraConfig, PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    tok = AutoTokenizer.from_pretrained(args.sft_adapter)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    model = PeftModel.from_pretrained(model, args.sft_adapter).merge_and_unload()
    with open(args.pairs, encoding="utf-8") as f:
        rows = [{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in map(json.loads, f)]
    rows = [r for r in rows if r["chosen"] != r["rejected"]]
    config = DPOConfig(
        output_dir=args.out, learning_rate=args.lr, num_train_epochs=args.epochs,
        per_device_train_batch_size=args.batch_size, max_length=args.max_length, beta=args.beta, seed=args.seed,
        lr_scheduler_type="linear", use_cpu=not torch.cuda.is_available(), bf16=False, fp16=False,
        activation_checkpointing=False, report_to="none", save_strategy="no", logging_steps=1,
    )
    trainer = DPOTrainer(model=model, args=config, train_dataset=Dataset.from_list(rows), processing_class=tok,
                         peft_config=LoraConfig(r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=0.0,
                                                target_modules="all-linear", task_type="CAUSAL_LM"))
    t1 = time.perf_counter()
    result = trainer.train()
    t2 = time.perf_counter()
    trainer.save_model(args.out)
    t3 = time.perf_counter()
    print(json.dumps({"pairs": len(rows), "steps": result.global_step, "setup_s": round(t1 - t0, 2),
                      "train_s": round(t2 - t1, 2), "save_s": round(t3 - t2, 2), "total_s": round(t3 - t0, 2)}))


if __name__ == "__main__":
    main()
