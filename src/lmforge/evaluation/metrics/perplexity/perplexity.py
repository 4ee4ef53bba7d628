"""Sliding-window perplexity as an `evaluate` module that works offline.

    ppl = evaluate.load(lmforge.evaluation.metric_path("perplexity"), module_type="metric")
    ppl.compute(predictions=texts, model_id="outputs/aksis-shakespeare", stride=128)

`model_id` is a saved model folder (or a Hub id when online); loading goes through the Auto classes.
"""

import datasets
import evaluate
from transformers import AutoModelForCausalLM, AutoTokenizer

from lmforge.evaluation.perplexity import sliding_window_perplexity

_DESCRIPTION = "Perplexity = exp(mean token NLL) of a causal LM over the given texts, with a sliding window."
_KWARGS = """
Args:
    predictions (list of str): the texts to score (they are joined into one stream, EOS between texts).
    model_id (str): a saved model folder or Hub id.
    max_length (int, optional): window length; defaults to the model's context.
    stride (int, optional): window step; defaults to half the window.
    trust_remote_code (bool, optional): pass True for a folder whose code is not installed.
Returns:
    perplexity (float), mean_nll (float), num_tokens (int).
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS)
class Perplexity(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS,
            features=datasets.Features({"predictions": datasets.Value("string")}),
        )

    def _compute(
        self,
        predictions: list[str],
        model_id: str,
        max_length: int | None = None,
        stride: int | None = None,
        trust_remote_code: bool = False,
    ) -> dict:
        tokenizer = AutoTokenizer.from_pretrained(model_id, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(
            model_id, trust_remote_code=trust_remote_code, use_safetensors=True
        )
        result = sliding_window_perplexity(model, tokenizer, predictions, max_length=max_length, stride=stride)
        return {"perplexity": result.perplexity, "mean_nll": result.mean_nll, "num_tokens": result.num_tokens}
