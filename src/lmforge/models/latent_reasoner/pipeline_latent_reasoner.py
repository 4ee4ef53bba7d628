"""The `summarization` pipeline of LatentReasoner: a text (a dialogue, an article) in, its summary out.

transformers 5 removed its own `summarization` pipeline, and that pipeline used one tokenizer for reading and writing,
while LatentReasoner reads with its encoder's tokenizer and writes with its decoder's. A model folder can still bring
a pipeline of its own: `lmforge push` (and every training run) writes this file next to the weights and names it in
`config.json` under `custom_pipelines`, so that

    pipe = pipeline("summarization", model="path/or/hub-id", trust_remote_code=True)
    pipe("#Person1#: Hi ... #Person2#: ...", max_new_tokens=40)  # [{"summary_text": "..."}]

works where lmforge is not installed. `pipeline()` loads the top-level tokenizer of the folder, the decoder's; this
pipeline loads the encoder's from the `encoder_tokenizer/` subfolder (or takes `encoder_tokenizer=`).

`interpolate_with=` and `alpha=` decode from a mix of two idea vectors: `(1 - alpha) * idea(text) + alpha *
idea(interpolate_with)`.

A model trained with a decoder prompt (the processor's `decoder_prompt`, saved in `processor_config.json`) is
prompted as in training: the decoder reads the text's prompt before it writes, and the 3-grams
`no_repeat_ngram_size` forbids are those of the summary only. With interpolation, the decoder reads the first text's
prompt.
"""

import copy
from typing import Any

import torch
from transformers import AutoTokenizer, GenerationConfig, LogitsProcessorList, NoRepeatNGramLogitsProcessor, Pipeline

from .processing_latent_reasoner import LatentReasonerProcessor
from .tokenization_latent_reasoner import ENCODER_TOKENIZER_SUBFOLDER

DECODER_PROMPT_INPUTS = ("decoder_input_ids", "decoder_attention_mask")


# Copied from lmforge.inference.NoRepeatNGramAfter
class NoRepeatNGramAfter(NoRepeatNGramLogitsProcessor):
    """transformers' `no_repeat_ngram_size` over the new tokens only (from column `start` of `input_ids`): an
    encoder-decoder's decoder prompt (the text to summarize, read word for word) is not text the model wrote, and a
    summary may repeat its 3-grams (names, phrases)."""

    def __init__(self, ngram_size: int, start: int) -> None:
        super().__init__(ngram_size)
        self.start = start

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> Any:
        return super().__call__(input_ids[:, self.start :], scores)  # type: ignore[arg-type]


def saved_decoder_prompt(name_or_path: str) -> str | None:
    """The `decoder_prompt` in a model folder's (or Hub repository's) `processor_config.json`, if any."""
    try:
        processor_dict, _ = LatentReasonerProcessor.get_processor_dict(name_or_path)
    except OSError:
        return None
    prompt = processor_dict.get("decoder_prompt")
    return prompt if isinstance(prompt, str) else None


class LatentReasonerSummarizationPipeline(Pipeline):
    """Read each input with the encoder tokenizer, write with `generate()`, decode with the decoder tokenizer, and
    return `[{"summary_text": ...}]` per input (the output format of the removed transformers pipeline)."""

    _pipeline_calls_generate = True
    _load_processor = False
    _load_image_processor = False
    _load_feature_extractor = False
    _load_tokenizer = True
    _default_generation_config = GenerationConfig(max_new_tokens=60)

    def __init__(
        self, *args: Any, encoder_tokenizer: Any = None, decoder_prompt: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        if encoder_tokenizer is None:
            encoder_tokenizer = AutoTokenizer.from_pretrained(
                self.model.name_or_path, subfolder=ENCODER_TOKENIZER_SUBFOLDER
            )
        self.encoder_tokenizer = encoder_tokenizer
        if decoder_prompt is None and self.model.name_or_path:
            decoder_prompt = saved_decoder_prompt(self.model.name_or_path)
        # Reads as the model's processor does: the encoder's tokens, and the decoder prompt when there is one.
        decoder_tokenizer: Any = self.tokenizer
        self.text_processor = LatentReasonerProcessor(
            decoder_tokenizer, encoder_tokenizer, decoder_prompt=decoder_prompt
        )

    def _sanitize_parameters(
        self,
        interpolate_with: str | None = None,
        alpha: float | None = None,
        clean_up_tokenization_spaces: bool | None = None,
        **generate_kwargs: Any,
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        preprocess_params: dict[str, Any] = {}
        forward_params: dict[str, Any] = dict(generate_kwargs)
        if interpolate_with is not None:
            preprocess_params["interpolate_with"] = interpolate_with
            forward_params["alpha"] = 0.5 if alpha is None else float(alpha)
        elif alpha is not None:
            raise ValueError("alpha needs interpolate_with=<a second text> to interpolate towards")
        postprocess_params = {}
        if clean_up_tokenization_spaces is not None:
            postprocess_params["clean_up_tokenization_spaces"] = clean_up_tokenization_spaces
        return preprocess_params, forward_params, postprocess_params

    def _encode(self, text: str) -> dict[str, Any]:
        if not isinstance(text, str):
            raise TypeError(f"{type(self).__name__} reads text; got {type(text).__name__}")
        encoded = self.text_processor(text, return_tensors="pt")
        return {key: encoded[key] for key in ("input_ids", "attention_mask", *DECODER_PROMPT_INPUTS) if key in encoded}

    def preprocess(self, inputs: Any, interpolate_with: str | None = None) -> dict[str, Any]:
        model_inputs = self._encode(inputs)
        if interpolate_with is not None:
            other = self._encode(interpolate_with)
            model_inputs.update(
                {"other_input_ids": other["input_ids"], "other_attention_mask": other["attention_mask"]}
            )
        return model_inputs

    def _forward(self, model_inputs: dict[str, Any], alpha: float = 0.5, **generate_kwargs: Any) -> Any:
        generate_kwargs = self._prepare_generate_kwargs(generate_kwargs)
        model: Any = self.model
        inputs = {key: model_inputs[key] for key in ("input_ids", "attention_mask")}
        if "other_input_ids" in model_inputs:  # decode from the mix of the two texts' idea vectors
            idea_a, _ = model.encode(model_inputs["input_ids"], model_inputs["attention_mask"])  # (B, I)
            idea_b, _ = model.encode(model_inputs["other_input_ids"], model_inputs["other_attention_mask"])
            inputs = {"idea_vectors": (1.0 - alpha) * idea_a + alpha * idea_b}
        start = 1  # generate() returns the decoder start token, the decoder prompt if any, then the new tokens
        if DECODER_PROMPT_INPUTS[0] in model_inputs:
            inputs.update({key: model_inputs[key] for key in DECODER_PROMPT_INPUTS})
            start += int(model_inputs[DECODER_PROMPT_INPUTS[0]].shape[1])
            # no_repeat_ngram_size counts the summary's own tokens: a summary may repeat the prompt's 3-grams
            config = generate_kwargs.get("generation_config")
            if config is not None:
                config = copy.deepcopy(config)
                size, config.no_repeat_ngram_size = config.no_repeat_ngram_size or 0, 0
                generate_kwargs["generation_config"] = config
            else:
                size = generate_kwargs.pop("no_repeat_ngram_size", model.generation_config.no_repeat_ngram_size) or 0
                generate_kwargs["no_repeat_ngram_size"] = 0
            if size > 0:
                generate_kwargs["logits_processor"] = LogitsProcessorList([NoRepeatNGramAfter(size, start)])
        return {"output_ids": model.generate(**inputs, **generate_kwargs)[:, start:]}

    def postprocess(self, model_outputs: Any, **decode_kwargs: Any) -> Any:
        tokenizer: Any = self.tokenizer
        return [
            {"summary_text": tokenizer.decode(ids, skip_special_tokens=True, **decode_kwargs).strip()}
            for ids in model_outputs["output_ids"]
        ]


__all__ = ["LatentReasonerSummarizationPipeline"]
