"""The core every other layer builds on: the typed config, the records (samples, generations, traces, pairs),
one-line errors, the name -> factory registry, the run directory's layout, results and system names, and the small
shared helpers (hashing, safe YAML, redaction, markdown, progress lines, fault tallies).

Core imports no other layer of cowest (`tests/test_imports.py` holds it to that), with one named exception: the
experiment config holds the `route` and `prices` sections that `cowest.routing.config` declares.
"""
