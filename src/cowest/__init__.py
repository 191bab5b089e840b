"""cowest: weak-strong LLM collaboration (CoWeST, Jiao et al., ACL 2025).

Importing the package is light: torch, transformers, trl, llama-cpp-python and openai are imported only by the
modules that need them.
"""

__version__ = "0.1.0"
