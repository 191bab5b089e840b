"""The pipeline of `cowest run`: the recipe `loop.run_all` (sft -> (feedback -> align) x rounds -> eval -> recall
-> report) and its stages, each with the inputs it declares (`stage_inputs`), its done marker and lock (`stages`).

Read `loop.run_all` first; the stages' recipes are `train/sft.py`, `feedback.py` + `pairs.py`, `train/dpo.py`,
`evaluate.py` + `summary.py` and `report.py`.
"""
