"""The one inference layer: text in, text out through `generate()`, for every lmforge architecture.

`TextGenerator` holds a model, its processor and its spec (`lmforge.models.ModelSpec`); `GenerationSettings` holds
the options of the command line and the server. `lmforge generate` / `chat`, `lmforge serve`, `lmforge demo`, the
training scorers and the run's samples all go through it, so a prompt is encoded, fitted to the context, generated
from and decoded the same way everywhere.

    from lmforge.inference import GenerationSettings, TextGenerator

    generator = TextGenerator.from_pretrained("outputs/quickstart")
    print(generator.generate("ROMEO:", GenerationSettings(max_new_tokens=60, do_sample=True, top_k=50)))
    for piece in generator.stream(messages=[{"role": "user", "content": "Hello"}]):
        print(piece, end="", flush=True)

The rules follow the spec's `prompt_style`:

- "continue" (a decoder: Aksis, CharTransformer). The prompt is encoded without special tokens and the new text
  follows it; an empty prompt starts from the end-of-text token that lmforge's language-model training puts between
  documents. The model sees at most `max_position_embeddings` tokens: `max_new_tokens` must be below that, and a
  longer prompt keeps its last tokens (with a warning). A chat is the conversation through the tokenizer's chat
  template (`PLAIN_CHAT_TEMPLATE`, "role: text" lines, when it has none); the answer gets the room the conversation
  leaves, at least half the context (or what was asked, if less), and the conversation keeps its most recent tokens.
- "answer" (an encoder-decoder: AE-LLM, LatentReasoner). The prompt is encoded with its special tokens, as in
  training. The encoder reads at most `max_position_embeddings` tokens (AE-LLM) or what its tokenizer's
  `model_max_length` allows (LatentReasoner's encoder tokenizer, saved with the training run's `max_source_length`):
  a longer prompt keeps its first tokens (with a warning). `max_new_tokens` is lowered to what the decoder writes
  (AE-LLM's `max_position_embeddings`; LatentReasoner's decoder context after its prefix embeddings), with a
  warning. A chat answers the last user message: the model was trained on single inputs, not on conversations.

The limits come from the spec (`ModelSpec.generation_limits`), so no model type is named here.

A spec with the "interpolate" mode (LatentReasoner) also decodes from a mix of two texts' latent vectors: its head has
`get_latent_vector(input_ids, attention_mask=...)` and `generate(idea_vectors=...)`.

`TextGenerator(..., compile_decoding=True)` (`--compile-decoding` of `lmforge generate`, `chat`, `serve` and `demo`)
decodes through transformers' compiled decoding step: a static cache sized to the whole context, so that every prompt
and length of one batch size reuses one compiled graph, and `torch.compile` of the model's step
(`compiled_decoding`). The first generation of each batch size compiles (seconds to a minute); later ones decode
about 2x faster than eager decoding at batch 1 on a CPU (`bench/compiled_decoding.py`). It needs a decoder whose
model can compile its whole step with a static cache (transformers' `_can_compile_fullgraph`: Aksis,
CharTransformer)."""

import dataclasses
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, overload

import torch
from tqdm.auto import tqdm
from transformers import (
    CompileConfig,
    GenerationConfig,
    LogitsProcessor,
    LogitsProcessorList,
    NoRepeatNGramLogitsProcessor,
    StoppingCriteria,
    StoppingCriteriaList,
    TextIteratorStreamer,
)

from .errors import LmforgeError
from .loading import load_model_and_processor
from .models import SPECS, ModelSpec
from .models.spec import context_limits

logger = logging.getLogger(__name__)

# The chat template of a tokenizer that has none of its own (e.g. a character-level one): "role: text" lines.
PLAIN_CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] + ': ' + message['content'] + '\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'assistant: ' }}{% endif %}"
)
# Options that only apply when sampling (left out when do_sample is False, so generate() does not warn about them).
SAMPLING_OPTIONS = ("temperature", "top_k", "top_p")
# What a processor with a decoder prompt adds to an encoder-decoder's inputs: the prompt, padded on the left, which
# the decoder reads after its start token (`generate()` puts the start token in front).
DECODER_PROMPT_INPUTS = ("decoder_input_ids", "decoder_attention_mask")
# Settings that are not `GenerationConfig` fields: the seed, and OpenAI's penalties (`OpenAIPenalties`).
NOT_GENERATION_CONFIG = ("seed", "presence_penalty", "frequency_penalty")


@dataclass(frozen=True)
class GenerationSettings:
    """How to generate: the options of `lmforge generate` / `chat`, the server and the demo.

    None leaves an option to the model's `generation_config` (e.g. LatentReasoner's greedy decoding without repeated
    3-grams). `seed` seeds torch's generator before each generation, for reproducible sampling.
    """

    max_new_tokens: int = 100
    do_sample: bool | None = None
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    num_beams: int | None = None
    length_penalty: float | None = None
    repetition_penalty: float | None = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None

    def __post_init__(self) -> None:
        if self.max_new_tokens <= 0:
            raise LmforgeError(f"the number of new tokens must be positive, got {self.max_new_tokens}")
        if self.temperature is not None and self.temperature < 0:
            raise LmforgeError(f"temperature must be 0 (greedy) or more, got {self.temperature}")
        if self.temperature == 0:  # temperature 0 is greedy decoding, as in OpenAI's API and `lmforge serve`
            for name, value in (("do_sample", False), ("temperature", None), ("top_k", None), ("top_p", None)):
                object.__setattr__(self, name, value)  # a frozen dataclass
        if self.top_k is not None and self.top_k < 0:
            raise LmforgeError(f"top-k must be 0 (off) or a positive number of tokens, got {self.top_k}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise LmforgeError(f"top-p must be in (0, 1], got {self.top_p}")
        if self.num_beams is not None and self.num_beams < 1:
            raise LmforgeError(f"the number of beams must be 1 or more, got {self.num_beams}")
        if self.repetition_penalty is not None and self.repetition_penalty <= 0:
            raise LmforgeError(f"repetition penalty must be positive (1 is none), got {self.repetition_penalty}")

    def generation_options(self) -> dict[str, Any]:
        """The `GenerationConfig` fields these settings set (None left out; the sampling ones only when sampling)."""
        options = {
            field.name: getattr(self, field.name)
            for field in dataclasses.fields(self)
            if field.name not in NOT_GENERATION_CONFIG and getattr(self, field.name) is not None
        }
        if options.get("do_sample") is False:
            for key in SAMPLING_OPTIONS:
                options.pop(key, None)
        return options


@dataclass
class Completion:
    """One generated text: the text (special tokens left out), the prompt and new token counts, and why it ended
    ("stop": an end-of-sequence token or a cancelled stream; "length": `max_new_tokens` reached)."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str
    logprobs: "list[TokenLogprob] | None" = None


@dataclass
class TokenLogprob:
    """One generated token's text and log-probability under the model (a log-softmax of its raw logits, before
    temperature, top-p or penalties), with the `top` most likely tokens at that step."""

    token: str
    logprob: float
    top: list[tuple[str, float]] = dataclasses.field(default_factory=list)


@dataclass
class BatchRequest:
    """One row of a shared `generate()` call (`TextGenerator.run_batch`): an encoded prompt (one row, from `encode`
    or `encode_chat`), the strings that end it (the text is cut before the first one), how many top log-probabilities
    to return per token (None: none), an event that stops it, and a callback that receives its new text as it
    comes."""

    encoded: "Encoded"
    stop: tuple[str, ...] = ()
    logprobs: int | None = None
    cancel: threading.Event | None = None
    on_text: Callable[[str], None] | None = None


@dataclass
class Encoded:
    """Model inputs ready for `generate()`, the number of new tokens that fits, and the prompt's length in tokens."""

    inputs: dict[str, torch.Tensor]
    max_new_tokens: int
    prompt_tokens: int


class CancelledCriteria(StoppingCriteria):
    """Stops `generate` once `event` is set (e.g. the streaming client went away)."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any) -> Any:
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)


class TextStream:
    """The new text of one generation as it is generated: `generate()` runs in a thread and feeds a
    `TextIteratorStreamer`. Iterate over it for the pieces; afterwards `completion` holds the finished `Completion`.
    Leaving the loop early stops the generation (through `cancel`). An error in the generation is raised to the
    reader. With `streaming=False` (beam search, which cannot stream) the whole text comes as one piece; with
    `strip=True` the pieces add up to the stripped text (an encoder-decoder's answer)."""

    def __init__(
        self,
        run: Callable[[TextIteratorStreamer | None], Any],
        processor: Any,
        cancel: threading.Event | None = None,
        streaming: bool = True,
        strip: bool = False,
    ) -> None:
        self._run = run
        self._processor = processor
        self.cancel = cancel or threading.Event()
        self.streaming = streaming
        self.strip = strip
        self.completion: Any = None

    def __iter__(self) -> Iterator[str]:
        if not self.streaming:
            self.completion = self._run(None)
            text = getattr(self.completion, "text", "")
            if text:
                yield text
            return
        streamer = TextIteratorStreamer(self._processor, skip_prompt=True, skip_special_tokens=True, timeout=600)
        errors: list[BaseException] = []

        def target() -> None:
            try:
                self.completion = self._run(streamer)
            except BaseException as err:  # raised to the reader, not lost in the thread
                errors.append(err)
                streamer.end()

        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        started, held = not self.strip, ""
        try:
            for piece in streamer:
                if self.strip:  # no leading whitespace, and trailing whitespace only once more text follows it
                    piece = piece if started else piece.lstrip()
                    started = started or bool(piece)
                    kept = (held + piece).rstrip()
                    piece, held = kept, (held + piece)[len(kept) :]
                if piece:
                    yield piece
        finally:
            if thread.is_alive():
                self.cancel.set()
            thread.join()
        if errors:
            raise errors[0]


class OpenAIPenalties(LogitsProcessor):
    """OpenAI's `presence_penalty` / `frequency_penalty`: each token's logit is lowered by `frequency` times the number
    of times it was generated so far plus `presence` if it was generated at all (the new tokens only, not the
    prompt). `start` is where the new tokens begin in `input_ids` (the same column for every row of a batch)."""

    def __init__(self, presence: float, frequency: float, start: int) -> None:
        self.presence = presence
        self.frequency = frequency
        self.start = start

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> Any:
        new = input_ids[:, self.start :]
        if new.shape[1] == 0:
            return scores
        counts = torch.zeros_like(scores).scatter_add_(1, new, torch.ones(new.shape, dtype=scores.dtype))
        return scores - self.frequency * counts - self.presence * (counts > 0).to(scores.dtype)


class NoRepeatNGramAfter(NoRepeatNGramLogitsProcessor):
    """transformers' `no_repeat_ngram_size` over the new tokens only (from column `start` of `input_ids`): an
    encoder-decoder's decoder prompt (the text to summarize, read word for word) is not text the model wrote, and a
    summary may repeat its 3-grams (names, phrases)."""

    def __init__(self, ngram_size: int, start: int) -> None:
        super().__init__(ngram_size)
        self.start = start

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> Any:
        return super().__call__(input_ids[:, self.start :], scores)  # type: ignore[arg-type]


def no_repeat_after_prompt(config: GenerationConfig, start: int) -> LogitsProcessorList:
    """Move `config.no_repeat_ngram_size` into a `NoRepeatNGramAfter(start)` (returned, for `generate()`'s
    `logits_processor`), so that the n-grams of a prompt that ends before `start` stay allowed."""
    size = config.no_repeat_ngram_size or 0
    config.no_repeat_ngram_size = 0
    return LogitsProcessorList([NoRepeatNGramAfter(size, start)] if size > 0 else [])


class RowProgress:
    """What one row of a shared `generate()` has written: it decides when the row is done (end-of-sequence, its own
    `max_new_tokens`, a stop string, its cancel event) and sends its new text to `on_text` as it comes. Text that could
    still become a stop string, an unfinished UTF-8 character, or (for a stripped answer) trailing whitespace is held
    back until the next token settles it."""

    def __init__(self, request: BatchRequest, decode: Callable[[list[int]], str], eos: set[int], strip: bool) -> None:
        self.request = request
        self.decode = decode
        self.eos = eos
        self.strip = strip
        self.ids: list[int] = []
        self.text = ""
        self.done = False
        self.finish_reason = "length"
        self.sent = ""
        self.hold = max((len(stop) for stop in request.stop), default=1) - 1

    def step(self, row: list[int]) -> bool:
        """Take the row's new ids so far; True once the row is done."""
        if self.done:
            return True
        self.ids = row
        if row and row[-1] in self.eos:
            self.done, self.finish_reason = True, "stop"
        text = self.decode([token for token in row if token not in self.eos])
        text = text.lstrip() if self.strip else text
        cuts = [index for index in (text.find(stop) for stop in self.request.stop if stop) if index >= 0]
        if cuts:
            text, self.done, self.finish_reason = text[: min(cuts)], True, "stop"
        elif not self.done and len(row) >= self.request.encoded.max_new_tokens:
            self.done = True
        elif not self.done and self.request.cancel is not None and self.request.cancel.is_set():
            self.done, self.finish_reason = True, "stop"
        self.text = text.rstrip() if self.done and self.strip else text
        self._send()
        return self.done

    def _send(self) -> None:
        if self.request.on_text is None:
            return
        ready = self.text
        if not self.done:
            ready = ready[: len(ready) - self.hold] if self.hold else ready
            ready = ready.rstrip("\ufffd")
            ready = ready.rstrip() if self.strip else ready
        if ready.startswith(self.sent) and len(ready) > len(self.sent):
            self.request.on_text(ready[len(self.sent) :])
            self.sent = ready


class RowStops(StoppingCriteria):
    """The per-row stopping rules of a shared `generate()` (`RowProgress.step` for each row, every step)."""

    def __init__(self, rows: list[RowProgress], start: int) -> None:
        self.rows = rows
        self.start = start

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any) -> Any:
        new = input_ids[:, self.start :].tolist()
        done = [row.step(ids) for row, ids in zip(self.rows, new, strict=True)]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


def generation_config(model: Any, options: dict[str, Any]) -> GenerationConfig:
    """A copy of the model's generation config updated with `options` (`GenerationSettings.generation_options`)."""
    if model.generation_config is not None:
        config = GenerationConfig(**model.generation_config.to_dict())
    else:
        config = GenerationConfig.from_model_config(model.config)
    config.update(**options)
    return config


def compiled_decoding(config: GenerationConfig, max_cache_len: int) -> GenerationConfig:
    """`config` set for transformers' compiled decoding step: a static cache of `max_cache_len` positions (one size for
    every call, so one compiled graph serves every prompt and length of a batch size) and a `compile_config` that
    compiles on any device (transformers compiles on accelerators only, unless `_compile_all_devices` is set;
    "default" mode, as "reduce-overhead" means CUDA graphs).

    Not `fullgraph`: Dynamo compiles at most `torch._dynamo.config.recompile_limit` (8) graphs of one function,
    and with `fullgraph` the next batch size would fail; without it, that batch size decodes eagerly instead. (The
    models compile their step as one graph either way; the tests count the graphs.)"""
    compile_config = CompileConfig(fullgraph=False, dynamic=False, mode="default")
    compile_config._compile_all_devices = True  # type: ignore[assignment]  # (declared None in transformers)
    config.update(cache_implementation="static", max_cache_len=max_cache_len, compile_config=compile_config)
    return config


def _names_with_mode(mode: str) -> str:
    return " or ".join(model_type for model_type, spec in SPECS.items() if mode in spec.modes)


class TextGenerator:
    """Text in, text out, for one model: `generate`, `chat`, `interpolate` and `stream` (see the module docstring).

    Args:
        model: A model with `generate()` (a `PeftModel` too), in eval mode.
        processor: What reads and writes its text: a tokenizer, or a processor (`LatentReasonerProcessor`).
        spec: The architecture's spec; by default the one of `model.config.model_type` (a transformers model without
            one is a "continue" model, or an "answer" model when its config is an encoder-decoder).
        max_input_tokens: Read at most this many prompt tokens (e.g. the training run's `max_source_length`), on top
            of the context rules; prompts cut to a limit given here are cut without a warning.
        compile_decoding: Decode through transformers' compiled decoding step (`compiled_decoding`; see the module
            docstring). Only for a decoder that can compile its step with a static cache.
    """

    def __init__(
        self,
        model: Any,
        processor: Any,
        spec: ModelSpec | None = None,
        max_input_tokens: int | None = None,
        compile_decoding: bool = False,
    ):
        self.model = model
        self.processor = processor
        config = model.config
        self.spec = spec if spec is not None else SPECS.get(str(config.model_type))
        if self.spec is not None:
            self.prompt_style = self.spec.prompt_style
        else:
            self.prompt_style = "answer" if config.is_encoder_decoder else "continue"
        limits = self.spec.generation_limits if self.spec is not None else context_limits
        # The most prompt tokens the model reads and new tokens it writes; a decoder shares one context between them.
        self.input_limit, self.output_limit = limits(config)
        self.context = self.input_limit if self.prompt_style == "continue" else None
        self.max_input_tokens = max_input_tokens
        self.chat_template = getattr(processor, "chat_template", None) or PLAIN_CHAT_TEMPLATE
        if compile_decoding and (self.context is None or not getattr(model, "_can_compile_fullgraph", False)):
            raise LmforgeError(
                f"compiled decoding needs a decoder that compiles its step with a static cache (Aksis, "
                f"CharTransformer); this {config.model_type} model does not: leave out --compile-decoding"
            )
        self.compile_decoding = compile_decoding

    @classmethod
    def from_pretrained(
        cls, model_path: str | Path, device: str | None = None, compile_decoding: bool = False, **model_kwargs: Any
    ) -> "TextGenerator":
        """Load a saved folder (or a LoRA adapter folder) with `lmforge.loading.load_model_and_processor`."""
        model, processor = load_model_and_processor(model_path, device, **model_kwargs)
        return cls(model, processor, compile_decoding=compile_decoding)

    @property
    def model_type(self) -> str:
        return str(self.model.config.model_type)

    @property
    def modes(self) -> tuple[str, ...]:
        """What the model offers besides plain generation ("chat", "interpolate"), from its spec."""
        return self.spec.modes if self.spec is not None else ("chat",)

    @property
    def max_new_tokens_limit(self) -> int | None:
        """The most new tokens one generation can write (None: no limit from the model)."""
        if self.prompt_style == "continue":
            return self.context - 1 if self.context is not None else None
        return self.output_limit

    # --- Encoding: prompt -> model inputs that fit the context ------------------------------------------------------

    def encode(self, prompts: Sequence[str], max_new_tokens: int) -> Encoded:
        """Model inputs for `prompts` (a "continue" model takes one at a time) and the new tokens that fit."""
        if self.prompt_style == "answer":
            return self._encode_answer(prompts, max_new_tokens)
        if len(prompts) != 1:
            raise ValueError("a decoder continues one prompt at a time")
        if self.context is not None and max_new_tokens >= self.context:
            raise LmforgeError(f"max new tokens ({max_new_tokens}) must be below the model's context ({self.context})")
        ids = list(self.processor(prompts[0], add_special_tokens=False)["input_ids"])
        if not ids:
            # An empty prompt starts from the end-of-text token that separates the training documents: what the
            # model learned to write after it is the start of a new document.
            start = self.processor.eos_token_id
            start = start if start is not None else self.processor.bos_token_id
            if start is None:
                raise LmforgeError("give a prompt: the tokenizer has no end-of-text token to start from")
            ids = [start]
        return Encoded(self._causal_inputs(self._keep_end(ids, max_new_tokens)), max_new_tokens, len(ids))

    def encode_completion(self, prompt: str, max_new_tokens: int) -> Encoded:
        """`encode` for one prompt, with a chat's rule for the room (the server's completions): a decoder's
        continuation gets the room the prompt leaves in the context, at least half of it (or what was asked, if less),
        and a longer prompt keeps its end."""
        if self.prompt_style == "continue" and self.context is not None:
            length = len(self.processor(prompt, add_special_tokens=False)["input_ids"]) or 1
            room = self.context - length
            max_new_tokens = max(1, min(max_new_tokens, max(room, self.context // 2), self.context - 1))
        return self.encode([prompt], max_new_tokens)

    def _keep_end(self, ids: list[int], max_new_tokens: int) -> list[int]:
        limits = [self.context - max_new_tokens] if self.context is not None else []
        limits += [self.max_input_tokens] if self.max_input_tokens else []
        room = min(limits, default=None)
        if room is not None and len(ids) > room:
            # Documented truncation: the model sees at most `context` tokens, so keep the end of the prompt.
            if not self.max_input_tokens:  # a limit the caller set is no surprise
                logger.warning("Prompt longer than %d tokens: only its last %d tokens are used", room, room)
            ids = ids[-room:]
        return ids

    def _causal_inputs(self, ids: list[int]) -> dict[str, torch.Tensor]:
        input_ids = torch.tensor([ids], dtype=torch.long)
        return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}

    def _encode_answer(self, prompts: Sequence[str], max_new_tokens: int) -> Encoded:
        if any(not prompt.strip() for prompt in prompts):
            raise LmforgeError(f"the prompt is empty: a {self.model_type} model answers a text, so give one")
        limit = self.max_input_tokens or self.input_limit  # None: the tokenizer's own model_max_length
        encoded = self.processor(list(prompts), padding=True, truncation=True, max_length=limit, return_tensors="pt")
        kept = encoded["attention_mask"].sum(dim=1).tolist()
        lengths = [len(ids) for ids in self.processor(list(prompts), truncation=False)["input_ids"]]
        cut = sum(length > k for length, k in zip(lengths, kept, strict=True))
        if cut and not self.max_input_tokens:  # a limit the caller set is no surprise
            # Documented truncation: the encoder reads a bounded length, so keep the start of the prompt (and its
            # closing special tokens).
            if len(prompts) == 1:
                logger.warning("Prompt longer than the encoder reads: only its first %d tokens are used", kept[0])
            else:
                logger.warning(
                    "%d of %d prompts longer than the encoder reads: only their first %d tokens are used",
                    cut,
                    len(prompts),
                    max(kept),
                )
        # A processor with a decoder prompt (LatentReasoner's `decoder_prompt`) also gives the decoder's first tokens,
        # which take their room in the decoder's context.
        output_limit = self.output_limit
        if output_limit is not None and DECODER_PROMPT_INPUTS[0] in encoded:
            output_limit = max(1, output_limit - int(encoded[DECODER_PROMPT_INPUTS[0]].shape[1]))
        if output_limit is not None and max_new_tokens > output_limit:
            logger.warning(
                "The decoder writes at most %d tokens: max new tokens lowered from %d", output_limit, max_new_tokens
            )
            max_new_tokens = output_limit
        keys = ("input_ids", "attention_mask", *DECODER_PROMPT_INPUTS)
        inputs = {key: encoded[key] for key in keys if key in encoded}
        return Encoded(inputs, max_new_tokens, int(encoded["input_ids"].shape[1]))

    def last_user_message(self, messages: Sequence[dict[str, str]]) -> str:
        """What an "answer" model reads of a conversation; a one-line error when there is no user message."""
        for message in reversed(messages):
            if message.get("role") == "user":
                return str(message.get("content", ""))
        raise LmforgeError("a sequence-to-sequence model answers the last user message; none was given")

    def check_chat(self, messages: Sequence[dict[str, str]]) -> None:
        """Raise the one-line error `chat` would raise for `messages`, before any work is done."""
        if not messages:
            raise LmforgeError("a chat needs at least one message")
        if self.prompt_style == "answer":
            self.last_user_message(messages)

    def encode_chat(self, messages: Sequence[dict[str, str]], max_new_tokens: int) -> Encoded:
        """Model inputs for a conversation (see the module docstring) and the new tokens that fit."""
        self.check_chat(messages)
        if self.prompt_style == "answer":
            return self._encode_answer([self.last_user_message(messages)], max_new_tokens)
        encoded: Any = self.processor.apply_chat_template(
            list(messages),
            chat_template=self.chat_template,
            add_generation_prompt=True,
            return_tensors="pt",
            return_dict=True,
        )
        ids = encoded["input_ids"][0].tolist()
        prompt_tokens = len(ids)
        if self.context is not None:
            # The answer gets the room the conversation leaves, at least half the context (or less if asked), and
            # the conversation keeps its most recent tokens.
            room = self.context - len(ids)
            max_new_tokens = max(1, min(max_new_tokens, max(room, self.context // 2), self.context - 1))
            ids = ids[-(self.context - max_new_tokens) :]
        if self.max_input_tokens:
            ids = ids[-self.max_input_tokens :]
        return Encoded(self._causal_inputs(ids), max_new_tokens, prompt_tokens)

    def encode_interpolation(self, text_a: str, text_b: str, alpha: float, max_new_tokens: int) -> Encoded:
        """`idea_vectors` = (1 - alpha) * latent(text_a) + alpha * latent(text_b), for `generate(idea_vectors=...)`.

        A model with a decoder prompt reads text_a's at every alpha: only the idea vector moves."""
        if "interpolate" not in self.modes:
            raise LmforgeError(
                f"a {self.model_type} model has no latent space to interpolate in; interpolating between two texts "
                f"needs a {_names_with_mode('interpolate')} model"
            )
        ideas: list[torch.Tensor] = []
        prompt_tokens = 0
        decoder_prompt: dict[str, torch.Tensor] = {}
        for text in (text_a, text_b):
            encoded = self._encode_answer([text], max_new_tokens)
            if not ideas:
                decoder_prompt = {key: encoded.inputs[key] for key in DECODER_PROMPT_INPUTS if key in encoded.inputs}
            inputs = {key: value.to(self.model.device) for key, value in encoded.inputs.items()}
            with torch.no_grad():
                ideas.append(
                    self.model.get_latent_vector(inputs["input_ids"], attention_mask=inputs["attention_mask"])
                )
            prompt_tokens += encoded.prompt_tokens
            max_new_tokens = encoded.max_new_tokens
        idea_vectors = (1.0 - alpha) * ideas[0] + alpha * ideas[1]  # (1, idea_size)
        return Encoded({"idea_vectors": idea_vectors, **decoder_prompt}, max_new_tokens, prompt_tokens)

    # --- Generating: the one generate() call ------------------------------------------------------------------------

    def generation_config(self, settings: GenerationSettings, max_new_tokens: int | None = None) -> GenerationConfig:
        """The model's generation config with `settings`; a pad token (the tokenizer's, else end-of-sequence)."""
        options = {**settings.generation_options(), "max_new_tokens": max_new_tokens or settings.max_new_tokens}
        config = generation_config(self.model, options)
        if config.pad_token_id is None:
            pad = self.processor.pad_token_id
            config.pad_token_id = pad if pad is not None else self.processor.eos_token_id
        if self.compile_decoding and self.context is not None:
            compiled_decoding(config, self.context)
        return config

    def run(
        self,
        encoded: Encoded,
        settings: GenerationSettings,
        streamer: Any = None,
        cancel: threading.Event | None = None,
        **model_kwargs: Any,
    ) -> list[Completion]:
        """`generate()` on encoded inputs; one `Completion` per row. `model_kwargs` go to `generate()` as well."""
        if settings.seed is not None:
            torch.manual_seed(settings.seed)
        config = self.generation_config(settings, encoded.max_new_tokens)
        stopping = StoppingCriteriaList([CancelledCriteria(cancel)]) if cancel is not None else None
        inputs = {key: value.to(self.model.device) for key, value in encoded.inputs.items()}
        start = self.new_tokens_start(inputs)
        generate: Any = self.model.generate
        with torch.no_grad():
            output = generate(
                **inputs,
                generation_config=config,
                streamer=streamer,
                stopping_criteria=stopping,
                logits_processor=self.prompt_processors(inputs, config, start),
                **model_kwargs,
            )
        eos = config.eos_token_id if isinstance(config.eos_token_id, list) else [config.eos_token_id]
        completions = []
        for row in output[:, start:].tolist():
            stop = next((i for i, token in enumerate(row) if token in eos), None)
            new = row if stop is None else row[: stop + 1]  # a batch pads the rows that stopped early
            text = str(self.processor.decode(new, skip_special_tokens=True))
            finish = "length" if stop is None and len(new) >= encoded.max_new_tokens else "stop"
            text = text.strip() if self.prompt_style == "answer" else text
            completions.append(Completion(text, encoded.prompt_tokens, len(new), finish))
        return completions

    def prompt_processors(
        self, inputs: dict[str, torch.Tensor], config: GenerationConfig, start: int
    ) -> LogitsProcessorList:
        """With a decoder prompt, `no_repeat_ngram_size` counts the new tokens only (`no_repeat_after_prompt`)."""
        if self.prompt_style == "answer" and DECODER_PROMPT_INPUTS[0] in inputs:
            return no_repeat_after_prompt(config, start)
        return LogitsProcessorList()

    def new_tokens_start(self, inputs: dict[str, torch.Tensor]) -> int:
        """Where the new tokens start in `generate()`'s output: a decoder returns the prompt and the new tokens; an
        encoder-decoder the decoder start token, its decoder prompt if it has one, and the new ones."""
        if self.prompt_style == "continue":
            return int(inputs["input_ids"].shape[1])
        decoder_prompt = inputs.get("decoder_input_ids")
        return 1 + (int(decoder_prompt.shape[1]) if decoder_prompt is not None else 0)

    def collate(self, encoded: Sequence[Encoded]) -> dict[str, torch.Tensor]:
        """One batch from single-row encoded prompts: a decoder's rows padded on the left (so that every row's new
        tokens follow its own prompt), an encoder's on the right; padding is masked out."""
        pad = self.processor.pad_token_id
        pad = pad if pad is not None else self.processor.eos_token_id
        width = max(int(item.inputs["input_ids"].shape[1]) for item in encoded)
        ids, masks = [], []
        for item in encoded:
            row, mask = item.inputs["input_ids"][0], item.inputs["attention_mask"][0]
            fill = width - row.shape[0]
            pad_ids = torch.full((fill,), pad, dtype=row.dtype)
            zeros = torch.zeros(fill, dtype=mask.dtype)
            left = self.prompt_style == "continue"
            ids.append(torch.cat([pad_ids, row] if left else [row, pad_ids]))
            masks.append(torch.cat([zeros, mask] if left else [mask, zeros]))
        batch = {"input_ids": torch.stack(ids), "attention_mask": torch.stack(masks)}
        if DECODER_PROMPT_INPUTS[0] in encoded[0].inputs:
            # Decoder prompts, like a decoder's rows, are padded on the left: the new tokens follow each one.
            prompts = [item.inputs[DECODER_PROMPT_INPUTS[0]][0] for item in encoded]
            prompt_masks = [item.inputs[DECODER_PROMPT_INPUTS[1]][0] for item in encoded]
            width = max(int(row.shape[0]) for row in prompts)
            batch[DECODER_PROMPT_INPUTS[0]] = torch.stack(
                [torch.cat([torch.full((width - row.shape[0],), pad, dtype=row.dtype), row]) for row in prompts]
            )
            batch[DECODER_PROMPT_INPUTS[1]] = torch.stack(
                [torch.cat([torch.zeros(width - row.shape[0], dtype=row.dtype), row]) for row in prompt_masks]
            )
        return batch

    def run_batch(self, requests: Sequence[BatchRequest], settings: GenerationSettings) -> list[Completion]:
        """One `generate()` call for several prompts that share `settings` (the server's batches): each row stops on
        its own (`RowProgress`), streams its own text, and gets its own `Completion`, with log-probabilities when
        asked. `settings.max_new_tokens` is ignored: each row has its own, from its encoding. A decoder's rows must
        fit the context together: the longest prompt plus the most new tokens asked."""
        if settings.seed is not None:
            torch.manual_seed(settings.seed)
        inputs = {
            key: value.to(self.model.device) for key, value in self.collate([r.encoded for r in requests]).items()
        }
        max_new_tokens = max(request.encoded.max_new_tokens for request in requests)
        config = self.generation_config(settings, max_new_tokens)
        start = self.new_tokens_start(inputs)
        eos = set(config.eos_token_id if isinstance(config.eos_token_id, list) else [config.eos_token_id])

        def decode(ids: list[int]) -> str:
            return str(self.processor.decode(ids, skip_special_tokens=True))

        rows = [RowProgress(request, decode, eos, self.prompt_style == "answer") for request in requests]
        processors = self.prompt_processors(inputs, config, start)
        if settings.presence_penalty or settings.frequency_penalty:
            processors.append(
                OpenAIPenalties(settings.presence_penalty or 0.0, settings.frequency_penalty or 0.0, start)
            )
        scored = any(request.logprobs is not None for request in requests)
        config.return_dict_in_generate = config.output_logits = scored
        generate: Any = self.model.generate
        with torch.no_grad():
            output = generate(
                **inputs,
                generation_config=config,
                stopping_criteria=StoppingCriteriaList([RowStops(rows, start)]),
                logits_processor=processors,
            )
        prompt_tokens = [request.encoded.prompt_tokens for request in requests]
        completions = []
        for index, row in enumerate(rows):
            logprobs = None
            if row.request.logprobs is not None:
                logprobs = self._logprobs(output.logits, index, row, row.request.logprobs)
            completions.append(
                Completion(row.text, prompt_tokens[index], len(row.ids), row.finish_reason, logprobs=logprobs)
            )
        return completions

    def _logprobs(self, logits: Sequence[torch.Tensor], index: int, row: RowProgress, top: int) -> list[TokenLogprob]:
        """The log-softmax of the raw logits of each token of `row` that its text keeps, and the `top` best."""
        kept: list[TokenLogprob] = []
        for step, token in enumerate(row.ids):
            if len(row.decode(row.ids[:step]).lstrip() if row.strip else row.decode(row.ids[:step])) >= len(row.text):
                break
            scores = torch.log_softmax(logits[step][index].float(), dim=-1)
            best = torch.topk(scores, top) if top else None
            alternatives = [] if best is None else list(zip(best.indices.tolist(), best.values.tolist(), strict=True))
            kept.append(
                TokenLogprob(
                    token=row.decode([token]),
                    logprob=float(scores[token]),
                    top=[(row.decode([alt]), value) for alt, value in alternatives],
                )
            )
        return kept

    @overload
    def generate(
        self, prompt: str, settings: GenerationSettings | None = None, *, streamer: Any = None, **model_kwargs: Any
    ) -> str: ...

    @overload
    def generate(
        self,
        prompt: Sequence[str],
        settings: GenerationSettings | None = None,
        *,
        batch_size: int = 8,
        show_progress: bool = False,
        **model_kwargs: Any,
    ) -> list[str]: ...

    def generate(
        self,
        prompt: str | Sequence[str],
        settings: GenerationSettings | None = None,
        *,
        batch_size: int = 8,
        show_progress: bool = False,
        streamer: Any = None,
        **model_kwargs: Any,
    ) -> str | list[str]:
        """The new text for `prompt` (a decoder's continuation, or an encoder-decoder's answer), or for each of a list
        of prompts (an encoder-decoder reads `batch_size` at a time, a decoder one at a time). `streamer` (one prompt)
        receives the tokens as they come; `model_kwargs` go to `generate()` (e.g. AE-LLM's `mode`)."""
        settings = settings or GenerationSettings()
        if isinstance(prompt, str):
            encoded = self.encode([prompt], settings.max_new_tokens)
            return self.run(encoded, settings, streamer, **model_kwargs)[0].text
        prompts = list(prompt)
        size = max(1, batch_size) if self.prompt_style == "answer" else 1
        texts: list[str] = []
        for start in tqdm(range(0, len(prompts), size), desc="Generating", disable=not show_progress):
            encoded = self.encode(prompts[start : start + size], settings.max_new_tokens)
            texts.extend(completion.text for completion in self.run(encoded, settings, **model_kwargs))
        return texts

    def chat(
        self,
        messages: Sequence[dict[str, str]],
        settings: GenerationSettings | None = None,
        *,
        cancel: threading.Event | None = None,
    ) -> Completion:
        """The assistant's answer to a conversation (`[{"role": ..., "content": ...}, ...]`)."""
        settings = settings or GenerationSettings()
        return self.run(self.encode_chat(messages, settings.max_new_tokens), settings, cancel=cancel)[0]

    def interpolate(
        self,
        text_a: str,
        text_b: str,
        alpha: float = 0.5,
        settings: GenerationSettings | None = None,
        *,
        streamer: Any = None,
        **model_kwargs: Any,
    ) -> str:
        """The text decoded from `(1 - alpha) * latent(text_a) + alpha * latent(text_b)` (the "interpolate" mode)."""
        settings = settings or GenerationSettings()
        encoded = self.encode_interpolation(text_a, text_b, alpha, settings.max_new_tokens)
        return self.run(encoded, settings, streamer, **model_kwargs)[0].text

    def stream(
        self,
        prompt: str | None = None,
        settings: GenerationSettings | None = None,
        *,
        messages: Sequence[dict[str, str]] | None = None,
        interpolate_with: str | None = None,
        alpha: float = 0.5,
        cancel: threading.Event | None = None,
    ) -> TextStream:
        """What `generate(prompt)`, `chat(messages)` or `interpolate(prompt, interpolate_with, alpha)` writes, as it is
        written: iterate over the returned `TextStream`. The prompt is encoded (and any error raised) now."""
        settings = settings or GenerationSettings()
        if messages is not None:
            encoded = self.encode_chat(messages, settings.max_new_tokens)
        elif interpolate_with is not None:
            encoded = self.encode_interpolation(prompt or "", interpolate_with, alpha, settings.max_new_tokens)
        else:
            encoded = self.encode([prompt or ""], settings.max_new_tokens)
        cancel = cancel or threading.Event()
        streaming = (self.generation_config(settings).num_beams or 1) == 1  # beam search cannot stream

        def run(streamer: TextIteratorStreamer | None) -> Completion:
            return self.run(encoded, settings, streamer, cancel)[0]

        return TextStream(run, self.processor, cancel, streaming=streaming, strip=self.prompt_style == "answer")


__all__ = [
    "PLAIN_CHAT_TEMPLATE",
    "BatchRequest",
    "CancelledCriteria",
    "Completion",
    "Encoded",
    "GenerationSettings",
    "OpenAIPenalties",
    "RowProgress",
    "RowStops",
    "TextGenerator",
    "TextStream",
    "TokenLogprob",
    "compiled_decoding",
    "generation_config",
]
