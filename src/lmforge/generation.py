"""Loading a saved lmforge model folder and generating text from it, for every architecture, through `generate()`."""

import json
import logging
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    GenerationConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.utils import logging as transformers_logging

from .errors import LmforgeError

logger = logging.getLogger(__name__)

# model_type -> the Auto class that loads it
SEQ2SEQ_MODEL_TYPES = {"ae_llm", "latent_reasoner"}


def _one_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[-1] if lines else type(err).__name__


def read_model_type(model_path: str | Path) -> str:
    """The `model_type` of a saved folder, with one-sentence errors for a missing or broken folder."""
    path = Path(model_path)
    if not path.is_dir():
        raise LmforgeError(f"model folder not found: {path} (give the output_dir of a training run)")
    config_file = path / "config.json"
    if not config_file.is_file():
        raise LmforgeError(f"{path} has no config.json; it is not a saved model folder")
    try:
        model_type = json.loads(config_file.read_text(encoding="utf-8")).get("model_type")
    except json.JSONDecodeError as err:
        raise LmforgeError(f"{config_file} is not valid JSON ({err.msg}); re-save the model") from None
    if not model_type:
        raise LmforgeError(f"{config_file} has no model_type")
    return str(model_type)


def load_model_and_tokenizer(
    model_path: str | Path, device: str | None = None, **model_kwargs: Any
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a saved folder (weights from safetensors only) with the Auto class that fits its model type."""
    model_type = read_model_type(model_path)
    transformers_logging.disable_progress_bar()  # loading a small model is instant; keep stderr for errors
    if not any(Path(model_path).glob("*.safetensors")):
        raise LmforgeError(f"{model_path} has no .safetensors weights; lmforge loads weights from safetensors only")
    auto_class = AutoModelForSeq2SeqLM if model_type in SEQ2SEQ_MODEL_TYPES else AutoModelForCausalLM
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_path)
    except Exception as err:
        raise LmforgeError(f"could not load the tokenizer of {model_path}: {_one_line(err)}") from None
    try:
        model: Any = auto_class.from_pretrained(str(model_path), use_safetensors=True, **model_kwargs)
    except Exception as err:
        raise LmforgeError(f"could not load the model in {model_path}: {_one_line(err)}") from None
    model.eval()
    if device:
        model.to(device)
    return model, tokenizer


def build_generation_config(model: PreTrainedModel, **kwargs: Any) -> GenerationConfig:
    """The model's generation config updated with the given strategy options (None values are left out)."""
    config = GenerationConfig.from_model_config(model.config)
    if model.generation_config is not None:
        config = GenerationConfig(**model.generation_config.to_dict())
    options = {k: v for k, v in kwargs.items() if v is not None}
    if options.get("do_sample") is False:
        for key in ("temperature", "top_k", "top_p"):
            options.pop(key, None)
    config.update(**options)
    return config


def generate_text(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompt: str,
    max_new_tokens: int = 64,
    seed: int | None = None,
    **generate_kwargs: Any,
) -> str:
    """Continue `prompt` (causal models) or answer it (seq2seq models); returns only the new text."""
    if max_new_tokens <= 0:
        raise LmforgeError(f"the number of new tokens must be positive, got {max_new_tokens}")
    if seed is not None:
        torch.manual_seed(seed)
    inputs = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).to(model.device)
    if inputs["input_ids"].shape[1] == 0:
        bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        inputs["input_ids"] = torch.tensor([[bos]], device=model.device)
        inputs["attention_mask"] = torch.ones_like(inputs["input_ids"])
    context = getattr(model.config, "max_position_embeddings", None)
    if not model.config.is_encoder_decoder and context is not None:
        if max_new_tokens >= context:
            raise LmforgeError(f"max new tokens ({max_new_tokens}) must be below the model's context ({context})")
        room = context - max_new_tokens
        if inputs["input_ids"].shape[1] > room:
            # Documented truncation: the model sees at most `context` tokens, so keep the end of the prompt.
            logger.warning("Prompt longer than %d tokens: only its last %d tokens are used", room, room)
            inputs = {k: v[:, -room:] for k, v in inputs.items()}
    generation_config = build_generation_config(model, max_new_tokens=max_new_tokens, **generate_kwargs)
    if generation_config.pad_token_id is None:
        generation_config.pad_token_id = tokenizer.pad_token_id or tokenizer.eos_token_id
    generate: Any = model.generate
    with torch.no_grad():
        output = generate(**inputs, generation_config=generation_config)
    new_tokens = output[0] if model.config.is_encoder_decoder else output[0, inputs["input_ids"].shape[1] :]
    return str(tokenizer.decode(new_tokens, skip_special_tokens=True))


__all__ = ["build_generation_config", "generate_text", "load_model_and_tokenizer", "read_model_type"]
