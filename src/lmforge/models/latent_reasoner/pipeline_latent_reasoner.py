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
"""

from typing import Any

from transformers import AutoTokenizer, GenerationConfig, Pipeline

from .tokenization_latent_reasoner import ENCODER_TOKENIZER_SUBFOLDER


class LatentReasonerSummarizationPipeline(Pipeline):
    """Read each input with the encoder tokenizer, write with `generate()`, decode with the decoder tokenizer, and
    return `[{"summary_text": ...}]` per input (the output format of the removed transformers pipeline)."""

    _pipeline_calls_generate = True
    _load_processor = False
    _load_image_processor = False
    _load_feature_extractor = False
    _load_tokenizer = True
    _default_generation_config = GenerationConfig(max_new_tokens=60)

    def __init__(self, *args: Any, encoder_tokenizer: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if encoder_tokenizer is None:
            encoder_tokenizer = AutoTokenizer.from_pretrained(
                self.model.name_or_path, subfolder=ENCODER_TOKENIZER_SUBFOLDER
            )
        self.encoder_tokenizer = encoder_tokenizer

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
        encoded = self.encoder_tokenizer(text, return_tensors="pt", truncation=True, return_token_type_ids=False)
        return {key: encoded[key] for key in ("input_ids", "attention_mask") if key in encoded}

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
        return {"output_ids": model.generate(**inputs, **generate_kwargs)}

    def postprocess(self, model_outputs: Any, **decode_kwargs: Any) -> Any:
        tokenizer: Any = self.tokenizer
        return [
            {"summary_text": tokenizer.decode(ids, skip_special_tokens=True, **decode_kwargs).strip()}
            for ids in model_outputs["output_ids"]
        ]


__all__ = ["LatentReasonerSummarizationPipeline"]
