"""ROUGE as an `evaluate` module that works offline: `evaluate.load(lmforge.evaluation.metric_path("rouge"))`."""

import datasets
import evaluate

from lmforge.evaluation.scores import ROUGE_TYPES, rouge

_DESCRIPTION = "ROUGE-1/2/L/Lsum mean F-measures (0-1) computed by Google's rouge_score, with Porter stemming."
_KWARGS = """
Args:
    predictions (list of str): generated texts.
    references (list of str): one reference per prediction.
    rouge_types (list of str, optional): subset of rouge1, rouge2, rougeL, rougeLsum.
    use_stemmer (bool, optional, default True).
Returns:
    one float per ROUGE type.
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS)
class Rouge(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="Lin, ROUGE: A Package for Automatic Evaluation of Summaries, 2004.",
            inputs_description=_KWARGS,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
        )

    def _compute(
        self,
        predictions: list[str],
        references: list[str],
        rouge_types: list[str] | None = None,
        use_stemmer: bool = True,
    ) -> dict:
        return rouge(predictions, references, tuple(rouge_types or ROUGE_TYPES), use_stemmer)
