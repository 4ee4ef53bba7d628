"""Evaluation: sliding-window perplexity, BLEU, ROUGE, SQuAD EM/F1 and the diversity of generations, as functions
and as offline `evaluate` modules.

import evaluate
from lmforge.evaluation import metric_path
rouge = evaluate.load(metric_path("rouge"))
"""

from pathlib import Path

from ..errors import LmforgeError
from .diversity import distinct_n, diversity, mean_length, repeated_ngram_share, self_bleu
from .perplexity import PerplexityResult, sliding_window_perplexity, token_stream
from .scores import ROUGE_TYPES, bleu, normalize_answer, rouge, squad_scores

METRICS_DIR = Path(__file__).parent / "metrics"


def metric_path(name: str) -> str:
    """The local path of one of lmforge's `evaluate` modules (perplexity, bleu, rouge, diversity), for
    `evaluate.load`."""
    path = METRICS_DIR / name / f"{name}.py"
    if not path.is_file():
        available = sorted(p.name for p in METRICS_DIR.iterdir() if p.is_dir())
        raise LmforgeError(f"no lmforge metric named '{name}'; choose one of {available}")
    return str(path)


__all__ = [
    "ROUGE_TYPES",
    "PerplexityResult",
    "bleu",
    "distinct_n",
    "diversity",
    "mean_length",
    "metric_path",
    "normalize_answer",
    "repeated_ngram_share",
    "rouge",
    "self_bleu",
    "sliding_window_perplexity",
    "squad_scores",
    "token_stream",
]
