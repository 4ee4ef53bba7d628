"""Deprecated (lmforge 0.1): the names of this module moved, and it goes in the next release.

| here | now |
| --- | --- |
| `load_model_and_tokenizer(path)` | `lmforge.loading.load_model_and_processor(path)` |
| `read_model_type(path)` | `lmforge.loading.read_model_type(path)` |
| `generate_text(model, tokenizer, prompt, ...)` | `lmforge.inference.TextGenerator(model, processor).generate(prompt, GenerationSettings(...))` |
| `generate_interpolated_text(model, tokenizer, a, b, alpha, ...)` | `TextGenerator(...).interpolate(a, b, alpha, GenerationSettings(...))` |
| `build_generation_config(model, **options)` | `lmforge.inference.generation_config(model, options)` |

Each function still works, with a `FutureWarning`.
"""

import dataclasses
import warnings
from pathlib import Path
from typing import Any

from transformers import GenerationConfig

from . import loading
from .inference import GenerationSettings, TextGenerator, generation_config

_SETTINGS = {field.name for field in dataclasses.fields(GenerationSettings)}


def _deprecated(name: str, replacement: str) -> None:
    warnings.warn(
        f"lmforge.generation.{name} is deprecated and goes in the next release: use {replacement}",
        FutureWarning,
        stacklevel=3,
    )


def _settings(max_new_tokens: int, seed: int | None, options: dict[str, Any]) -> GenerationSettings:
    known = {key: options.pop(key) for key in list(options) if key in _SETTINGS}
    return GenerationSettings(max_new_tokens=max_new_tokens, seed=seed, **known)


def load_model_and_tokenizer(
    model_path: str | Path, device: str | None = None, **model_kwargs: Any
) -> tuple[Any, Any]:
    _deprecated("load_model_and_tokenizer", "lmforge.loading.load_model_and_processor")
    return loading.load_model_and_processor(model_path, device, **model_kwargs)


def read_model_type(model_path: str | Path) -> str:
    _deprecated("read_model_type", "lmforge.loading.read_model_type")
    return loading.read_model_type(model_path)


def build_generation_config(model: Any, **kwargs: Any) -> GenerationConfig:
    _deprecated("build_generation_config", "lmforge.inference.generation_config")
    options = {key: value for key, value in kwargs.items() if value is not None}
    if options.get("do_sample") is False:
        for key in ("temperature", "top_k", "top_p"):
            options.pop(key, None)
    return generation_config(model, options)


def generate_text(
    model: Any,
    tokenizer: Any,
    prompt: str,
    max_new_tokens: int = 64,
    seed: int | None = None,
    streamer: Any = None,
    **generate_kwargs: Any,
) -> str:
    _deprecated("generate_text", "lmforge.inference.TextGenerator(model, processor).generate")
    settings = _settings(max_new_tokens, seed, generate_kwargs)
    return TextGenerator(model, tokenizer).generate(prompt, settings, streamer=streamer, **generate_kwargs)


def generate_interpolated_text(
    model: Any,
    tokenizer: Any,
    text_a: str,
    text_b: str,
    alpha: float = 0.5,
    max_new_tokens: int = 64,
    seed: int | None = None,
    streamer: Any = None,
    **generate_kwargs: Any,
) -> str:
    _deprecated("generate_interpolated_text", "lmforge.inference.TextGenerator(model, processor).interpolate")
    settings = _settings(max_new_tokens, seed, generate_kwargs)
    return TextGenerator(model, tokenizer).interpolate(
        text_a, text_b, alpha, settings, streamer=streamer, **generate_kwargs
    )


__all__ = [
    "build_generation_config",
    "generate_interpolated_text",
    "generate_text",
    "load_model_and_tokenizer",
    "read_model_type",
]
