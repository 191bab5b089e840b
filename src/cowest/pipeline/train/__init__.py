"""Training recipes over TRL + PEFT: `sft.run_sft` (specialise the weak model), `dpo.run_dpo` and `dpo.run_sft_positive` (align it on collaborative feedback)."""
