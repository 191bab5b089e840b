"""`python -m cowest.cli ...` (e.g. under `accelerate launch -m cowest.cli sft CONFIG`)."""

from cowest.cli import main

raise SystemExit(main())
