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
from transformers.models.auto.configuration_auto import CONFIG_MAPPING
from transformers.utils import logging as transformers_logging

from .adapters import is_adapter_folder, load_adapter_model
from .errors import LmforgeError
from .models import MODEL_TYPES
from .tokenizer_pair import TokenizerPair

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
    """Load a saved folder (weights from safetensors only) with the Auto class that fits its model type.

    A LoRA adapter folder (the output_dir of a `peft` run) loads on top of its base model, as a `PeftModel`.
    """
    if is_adapter_folder(model_path):
        return load_adapter_model(model_path, device, **model_kwargs)
    model_type = read_model_type(model_path)
    if model_type not in CONFIG_MAPPING:  # else transformers suggests trust_remote_code, which lmforge never implies
        raise LmforgeError(
            f"{Path(model_path) / 'config.json'}: unknown model_type '{model_type}'; lmforge loads its own models "
            f"({', '.join(MODEL_TYPES)}) and those of transformers"
        )
    transformers_logging.disable_progress_bar()  # loading a small model is instant; keep stderr for errors
    if not any(Path(model_path).glob("*.safetensors")):
        raise LmforgeError(f"{model_path} has no .safetensors weights; lmforge loads weights from safetensors only")
    auto_class = AutoModelForSeq2SeqLM if model_type in SEQ2SEQ_MODEL_TYPES else AutoModelForCausalLM
    try:
        # A LatentReasoner reads with its encoder's tokenizer and writes with its decoder's: a TokenizerPair.
        tokenizer: Any = (
            TokenizerPair.from_pretrained(model_path)
            if model_type == "latent_reasoner"
            else AutoTokenizer.from_pretrained(model_path)
        )
    except Exception as err:
        if not any(Path(model_path).rglob("tokenizer*")):  # transformers would talk of converting a slow tokenizer
            raise LmforgeError(
                f"{model_path} has no tokenizer files (tokenizer.json, tokenizer_config.json); copy them from the "
                "training run's output_dir"
            ) from None
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
    streamer: Any = None,
    **generate_kwargs: Any,
) -> str:
    """Continue `prompt` (causal models) or answer it (seq2seq models); returns only the new text.

    `streamer` (e.g. a `TextIteratorStreamer` with `skip_prompt=True`) receives the new tokens as they come.
    """
    if max_new_tokens <= 0:
        raise LmforgeError(f"the number of new tokens must be positive, got {max_new_tokens}")
    if seed is not None:
        torch.manual_seed(seed)
    seq2seq = bool(model.config.is_encoder_decoder)
    # Encoder inputs carry the special tokens they were trained with (AE-LLM: a closing </s>); a causal prompt does
    # not, since the text goes on after it.
    inputs = tokenizer(prompt, return_tensors="pt", add_special_tokens=seq2seq).to(model.device)
    if inputs["input_ids"].shape[1] == 0:
        # An empty causal prompt starts from the end-of-text token, which lmforge's language-model training puts
        # between documents: what the model learned to write after it is the start of a new document.
        first = (tokenizer.bos_token_id, tokenizer.eos_token_id)
        first = first if seq2seq else first[::-1]
        start = first[0] if first[0] is not None else first[1]
        inputs["input_ids"] = torch.tensor([[start]], device=model.device)
        inputs["attention_mask"] = torch.ones_like(inputs["input_ids"])
    context = getattr(model.config, "max_position_embeddings", None)
    if seq2seq and context is not None:
        # Documented truncation: the encoder reads at most `context` tokens, so keep the start of the prompt (and its
        # closing special tokens); the decoder writes at most `context` tokens.
        if inputs["input_ids"].shape[1] > context:
            logger.warning(
                "Prompt longer than the encoder's %d tokens: only its first %d tokens are used", context, context
            )
            inputs = tokenizer(prompt, return_tensors="pt", truncation=True, max_length=context).to(model.device)
        if max_new_tokens > context:
            logger.warning(
                "The decoder writes at most %d tokens: max new tokens lowered from %d", context, max_new_tokens
            )
            max_new_tokens = context
    if not seq2seq and context is not None:
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
        output = generate(**inputs, generation_config=generation_config, streamer=streamer)
    new_tokens = output[0] if seq2seq else output[0, inputs["input_ids"].shape[1] :]
    return str(tokenizer.decode(new_tokens, skip_special_tokens=True))


def generate_interpolated_text(
    model: PreTrainedModel,
    tokenizer: Any,
    text_a: str,
    text_b: str,
    alpha: float = 0.5,
    max_new_tokens: int = 64,
    seed: int | None = None,
    streamer: Any = None,
    **generate_kwargs: Any,
) -> str:
    """Decode from `(1 - alpha) * idea(text_a) + alpha * idea(text_b)`, the idea vectors of two texts (a model with
    `interpolate_and_generate`, i.e. LatentReasoner, and its `TokenizerPair`); returns the new text. `streamer`
    receives the new tokens as they come."""
    interpolate = getattr(model, "interpolate_and_generate", None)
    if interpolate is None:
        raise LmforgeError(
            f"a {model.config.model_type} model has no latent space to interpolate in; interpolating between two "
            "texts needs a latent_reasoner model"
        )
    if max_new_tokens <= 0:
        raise LmforgeError(f"the number of new tokens must be positive, got {max_new_tokens}")
    if seed is not None:
        torch.manual_seed(seed)
    # Token ids of each text (the tokenizer truncates them as in training), encoded one text at a time.
    ids_a, ids_b = (tokenizer(text, return_tensors="pt")["input_ids"] for text in (text_a, text_b))
    generation_config = build_generation_config(model, max_new_tokens=max_new_tokens, **generate_kwargs)
    if generation_config.pad_token_id is None:
        generation_config.pad_token_id = tokenizer.pad_token_id or tokenizer.eos_token_id
    with torch.no_grad():
        output = interpolate(ids_a, ids_b, alpha, generation_config=generation_config, streamer=streamer)
    return str(tokenizer.decode(output[0], skip_special_tokens=True))


__all__ = [
    "build_generation_config",
    "generate_interpolated_text",
    "generate_text",
    "load_model_and_tokenizer",
    "read_model_type",
]
