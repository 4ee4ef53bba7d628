"""The `text2text-generation` pipeline of AE-LLM: a question in, its answer out.

transformers 5 removed its own `text2text-generation` pipeline, but a model folder can still bring a pipeline of its
own: `lmforge push` (and every training run) writes this file next to the weights and names it in `config.json`
under `custom_pipelines`, so that

    pipe = pipeline("text2text-generation", model="path/or/hub-id", trust_remote_code=True)
    pipe("who wrote hamlet?", max_new_tokens=16)  # [{"generated_text": "shakespeare wrote it."}]

works where lmforge is not installed. The output format is the one of the removed transformers pipeline.
"""

from typing import Any

from transformers import GenerationConfig, Pipeline


class AELLMText2TextGenerationPipeline(Pipeline):
    """Encode each input text with the AE-LLM tokenizer (closing `</s>` included, truncated to the model's context),
    decode its answer with `generate()` and return `[{"generated_text": ...}]` per input.

    Generation settings (`max_new_tokens`, `num_beams`, `do_sample`, `temperature`, ...) can be given when the
    pipeline is built or at each call.
    """

    _pipeline_calls_generate = True
    _load_processor = False
    _load_image_processor = False
    _load_feature_extractor = False
    _load_tokenizer = True
    # Greedy answers of at most 32 tokens unless told otherwise (the model's generation config comes first).
    _default_generation_config = GenerationConfig(max_new_tokens=32)

    def _sanitize_parameters(
        self, clean_up_tokenization_spaces: bool | None = None, **generate_kwargs: Any
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        postprocess_params = {}
        if clean_up_tokenization_spaces is not None:
            postprocess_params["clean_up_tokenization_spaces"] = clean_up_tokenization_spaces
        return {}, generate_kwargs, postprocess_params

    def preprocess(self, inputs: Any) -> dict[str, Any]:
        if not isinstance(inputs, str):
            raise TypeError(f"{type(self).__name__} reads text; got {type(inputs).__name__}")
        context = getattr(self.model.config, "max_position_embeddings", None)
        encoded = self.tokenizer(inputs, return_tensors="pt", truncation=context is not None, max_length=context)
        return {key: encoded[key] for key in ("input_ids", "attention_mask") if key in encoded}

    def _forward(self, model_inputs: dict[str, Any], **generate_kwargs: Any) -> Any:
        generate_kwargs = self._prepare_generate_kwargs(generate_kwargs)
        model: Any = self.model
        return {"output_ids": model.generate(**model_inputs, **generate_kwargs)}

    def postprocess(self, model_outputs: Any, **decode_kwargs: Any) -> Any:
        tokenizer: Any = self.tokenizer
        return [
            {"generated_text": tokenizer.decode(ids, skip_special_tokens=True, **decode_kwargs).strip()}
            for ids in model_outputs["output_ids"]
        ]


__all__ = ["AELLMText2TextGenerationPipeline"]
