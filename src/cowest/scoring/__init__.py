"""Answer extraction, metrics with bootstrap intervals, and the LLM judge (imported from their modules)."""
