"""The OpenAI request schema that `lmforge serve` accepts (pydantic models: FastAPI validates bodies against them),
and how a request becomes `GenerationSettings`.

Fields a client may send but this server cannot honour (tools, audio, `echo`, a `suffix`, ...) are refused with 422
rather than silently ignored; unknown fields are ignored, as OpenAI's own server does.

The penalties: `presence_penalty` / `frequency_penalty` are OpenAI's, applied to the generated tokens by a logits
processor (`lmforge.inference.OpenAIPenalties`), not mapped onto transformers' `repetition_penalty` (a different,
multiplicative rule that also counts the prompt). `repetition_penalty` itself is read from the `generation_config`
that `transformers chat` sends.
"""

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, field_validator

from .inference import GenerationSettings

MAX_N = 16  # choices per request (`n`): each is a row of the batch
MAX_STOP = 4  # stop strings, as OpenAI allows
# Generation settings that `transformers chat` sends in its `generation_config` field (a JSON string).
GENERATION_CONFIG_KEYS = {"max_new_tokens", "do_sample", "temperature", "top_p", "top_k", "repetition_penalty"}

Temperature = Annotated[float, Field(ge=0.0, le=2.0)]
TopP = Annotated[float, Field(gt=0.0, le=1.0)]
Penalty = Annotated[float, Field(ge=-2.0, le=2.0)]
PositiveInt = Annotated[StrictInt, Field(ge=1)]


class StreamOptions(BaseModel):
    include_usage: StrictBool = False


class TextPart(BaseModel):
    """An OpenAI content part; only text parts are understood."""

    type: Literal["text"]
    text: str


class Message(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str | list[TextPart]

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(part.text for part in self.content)


class SamplingRequest(BaseModel):
    """The fields completions and chat completions share."""

    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    max_tokens: PositiveInt | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    n: Annotated[StrictInt, Field(ge=1, le=MAX_N)] = 1
    stop: str | Annotated[list[str], Field(max_length=MAX_STOP)] | None = None
    seed: StrictInt | None = None
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    user: str | None = None

    def stop_strings(self) -> tuple[str, ...]:
        stops = [self.stop] if isinstance(self.stop, str) else (self.stop or [])
        return tuple(stop for stop in stops if stop)

    @property
    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage


class CompletionRequest(SamplingRequest):
    """`POST /v1/completions`: a base model continues `prompt` (a sequence-to-sequence model answers it)."""

    prompt: str | Annotated[list[str], Field(min_length=1, max_length=MAX_N)]
    logprobs: Annotated[StrictInt, Field(ge=0, le=5)] | None = None
    echo: Literal[False] = False
    suffix: None = None
    best_of: Literal[1] | None = None

    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)


class ChatRequest(SamplingRequest):
    """`POST /v1/chat/completions` (also what `transformers chat` sends, with its `generation_config`)."""

    messages: Annotated[list[Message], Field(min_length=1)]
    max_completion_tokens: PositiveInt | None = None
    logprobs: StrictBool = False
    top_logprobs: Annotated[StrictInt, Field(ge=0, le=20)] | None = None
    generation_config: str | dict[str, Any] | None = None
    tools: None = None
    tool_choice: None = None
    audio: None = None

    @field_validator("generation_config")
    @classmethod
    def _generation_config(cls, value: str | dict[str, Any] | None) -> dict[str, Any] | None:
        """`transformers chat` sends its generation settings as a JSON string; the known keys are kept, checked."""
        if value is None:
            return None
        try:
            extra = json.loads(value) if isinstance(value, str) else value
        except json.JSONDecodeError:
            raise ValueError("must be a JSON object") from None
        if not isinstance(extra, dict):
            raise ValueError("must be a JSON object")
        kept = {}
        for key, item in extra.items():
            if key not in GENERATION_CONFIG_KEYS or item is None:
                continue
            valid = isinstance(item, bool) if key == "do_sample" else isinstance(item, int | float)
            if not valid or (key != "do_sample" and isinstance(item, bool)):
                raise ValueError(f"{key} has the wrong type")
            kept[key] = item
        return kept

    def conversation(self) -> list[dict[str, str]]:
        return [{"role": message.role, "content": message.text()} for message in self.messages]


def generation_settings(
    request: SamplingRequest, default_max_tokens: int, max_tokens_limit: int, model_limit: int | None
) -> GenerationSettings:
    """The request's settings: `max_tokens` (default `default_max_tokens`) clamped to `max_tokens_limit` and to
    what the model can write; temperature 0 is greedy decoding, as in OpenAI's API."""
    options: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    if isinstance(request, ChatRequest) and isinstance(request.generation_config, dict):
        extra = dict(request.generation_config)  # validated: a dict of known keys
    requested = extra.pop("max_new_tokens", None)
    requested = request.max_tokens or requested
    if isinstance(request, ChatRequest) and request.max_completion_tokens is not None:
        requested = request.max_completion_tokens
    if isinstance(requested, bool) or not isinstance(requested, int | None) or (requested or 1) < 1:
        raise ValueError(f"max new tokens must be a positive integer, got {requested!r}")
    max_tokens = min(requested or default_max_tokens, max_tokens_limit, model_limit or max_tokens_limit)
    options.update(extra)
    for key in ("temperature", "top_p", "presence_penalty", "frequency_penalty", "seed"):
        if getattr(request, key) is not None:
            options[key] = getattr(request, key)
    if options.get("temperature") == 0.0:  # OpenAI's temperature 0: greedy decoding
        options = {key: value for key, value in options.items() if key not in ("temperature", "top_p", "top_k")}
        options["do_sample"] = False
    else:
        options.setdefault("do_sample", True)
    return GenerationSettings(max_new_tokens=max_tokens, **options)


__all__ = [
    "MAX_N",
    "ChatRequest",
    "CompletionRequest",
    "Message",
    "SamplingRequest",
    "generation_settings",
]
