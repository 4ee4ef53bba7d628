"""BLEU as an `evaluate` module that works offline: `evaluate.load(lmforge.evaluation.metric_path("bleu"))`."""

import datasets
import evaluate

from lmforge.evaluation.scores import bleu

_DESCRIPTION = "Corpus BLEU (0-100) computed by sacrebleu with its default 13a tokenization."
_KWARGS = """
Args:
    predictions (list of str): generated texts.
    references (list of str or list of list of str): one or more references per prediction.
Returns:
    bleu (float, 0-100), brevity_penalty (float), precisions (list of 4 floats, n-gram precisions in percent).
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS)
class Bleu(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="Post, A Call for Clarity in Reporting BLEU Scores, WMT 2018.",
            inputs_description=_KWARGS,
            features=[
                datasets.Features(
                    {
                        "predictions": datasets.Value("string"),
                        "references": datasets.Sequence(datasets.Value("string")),
                    }
                ),
                datasets.Features({"predictions": datasets.Value("string"), "references": datasets.Value("string")}),
            ],
        )

    def _compute(self, predictions: list[str], references: list) -> dict:
        return bleu(predictions, references)
