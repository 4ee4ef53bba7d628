"""Imports the builder modules of every task, so that `BUILDERS` knows each model type.

Causal LM builders live in `builders.py`; each other task adds its module here.
"""

from . import builders, qa, summarization

__all__ = ["builders", "qa", "summarization"]
