"""LatentReasoner on dialogue summarization: the builder, and the ROUGE scores after training next to LEAD-3.

The model comes from a saved LatentReasoner (`model_name_or_path`) or from two pretrained backbones
(`encoder_name_or_path`, `decoder_name_or_path`, and `decoder_gguf_file` for a decoder stored as GGUF; `pkg:NAME`
names a backbone installed as a pip package, see `lmforge.backbones`). `config_overrides` sets `LatentReasonerConfig`
fields (`idea_size`, `num_prefix_tokens`, `dropout`, ...). The backbones stay frozen: only the compression MLP, the
middle MLP and the prefix adapter have `requires_grad`, and the Trainer's optimizer holds only those.

Each example is a dialogue read by the encoder (its special tokens, truncated to `max_source_length`) and a summary
written by the decoder: `labels` are the summary's decoder tokens plus the decoder's end-of-sequence token
(truncated to `max_target_length` in all), padded with -100 by `DataCollatorForSeq2Seq`; the model builds the
decoder inputs from them (the BART convention).

With a frozen encoder (the default), `cache_encoder_outputs` (default: on when the encoder is frozen) runs the encoder
once over the train and validation rows, a `datasets.map` cached to disk: the rows then hold the mean-pooled encoder
output (`pooled_encoder_output`, which the model's `forward` takes in place of the text) and `labels`, and a training
step runs only the MLPs and the decoder. The encoder is run in eval mode (no dropout) for the cache.

After training, the `post_train` hook writes a summary of every validation dialogue (greedy, batched through
`generate()`) and reports ROUGE-1/2/L/Lsum (0-100) as `eval_rouge*`, next to the same scores of two references: LEAD-3
(the first three utterances of the dialogue) as `lead3_rouge*`, and the frozen decoder alone, prompted
`PROMPTED_DECODER_PROMPT` (`prompted_decoder_baseline`), as `prompted_decoder_rouge*`; each also counts its distinct
summaries (`*_distinct_summaries`). All are scored by `score_summaries`. `predictions.jsonl` in the output folder holds
every dialogue with its reference and each system's summary.
"""

import copy
import dataclasses
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import torch
from datasets import Dataset
from datasets.fingerprint import Hasher
from tqdm.auto import tqdm
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    DataCollatorForSeq2Seq,
    GenerationConfig,
    PreTrainedTokenizerBase,
)

from ..backbones import load_causal_lm_from_gguf, resolve_backbone
from ..data import lead_3, load_summarization
from ..errors import LmforgeError, one_line
from ..evaluation import rouge
from ..inference import GenerationSettings, TextGenerator, no_repeat_after_prompt
from ..loading import load_pretrained
from ..models import ModelSpec, get_spec
from ..models.latent_reasoner.processing_latent_reasoner import check_decoder_prompt
from .arguments import LmforgeTrainingArguments, ModelArguments, Seq2SeqDataArguments
from .builders import TrainingSetup, eval_mode, limit_rows
from .tasks import register_task

logger = logging.getLogger(__name__)

DEFAULT_MAX_TARGET_LENGTH = 128
# The reference of the frozen decoder alone (issue 17): how it is asked for a summary.
PROMPTED_DECODER_PROMPT = "Summarize this dialogue: {dialogue}"
# Summaries are written greedily without repeating any 3-gram (the setting of BART's summarization checkpoints); it
# goes into the model's generation_config, so `lmforge generate` writes the same summaries as the evaluation.
SUMMARY_GENERATION = {"do_sample": False, "num_beams": 1, "no_repeat_ngram_size": 3}


@dataclass
class SummarizationModelArguments(ModelArguments):
    """The model keys of summarization recipes: the two frozen backbones a new model is built on."""

    encoder_name_or_path: str | None = field(
        default=None, metadata={"help": "The frozen encoder (folder, Hub id or pkg:NAME)."}
    )
    decoder_name_or_path: str | None = field(
        default=None, metadata={"help": "The frozen causal decoder (folder, Hub id or pkg:NAME)."}
    )
    decoder_gguf_file: str | None = field(
        default=None, metadata={"help": "Load the decoder from this GGUF file (needs gguf)."}
    )
    decoder_dtype: str | None = field(
        default=None,
        metadata={
            "help": "Hold the frozen decoder (and its LM head) in this dtype (bfloat16 or float32; default: as "
            "loaded). With bf16 autocast, bfloat16 saves casting its weights at every step."
        },
    )


@dataclass
class SummarizationDataArguments(Seq2SeqDataArguments):
    """The data keys of summarization recipes: the columns of the dialogue and of its summary."""

    source_column: str | None = field(default=None, metadata={"help": "The input column (default: dialogue)."})
    target_column: str | None = field(default=None, metadata={"help": "The output column (default: summary)."})
    prompted_decoder_baseline: bool = field(
        default=True,
        metadata={"help": "After training, also score the frozen decoder alone, prompted to summarize each dialogue."},
    )
    decoder_prompt: str | None = field(
        default=None,
        metadata={
            "help": "What the decoder reads after its start token and before the summary, with {text} where the "
            "dialogue goes (its first max_source_length decoder tokens); saved with the processor. Default: "
            "nothing, the summary is written from the idea vector alone."
        },
    )
    cache_encoder_outputs: bool | None = field(
        default=None,
        metadata={
            "help": "Run the frozen encoder once over the data (cached to disk) and train on its pooled outputs "
            "(default: when the encoder is frozen)."
        },
    )


def config_fields(spec: ModelSpec) -> list[str]:
    """The config fields a recipe may set through config_overrides (the sub-configs come from the backbones)."""
    fields = {f.name for f in dataclasses.fields(spec.config_class)}
    return sorted(fields - {"encoder", "decoder", "is_encoder_decoder"})


def _config_overrides(model_args: ModelArguments) -> dict[str, Any]:
    overrides = dict(model_args.config_overrides or {})  # type: ignore[arg-type]
    spec = get_spec(model_args.model_type)
    fields = config_fields(spec)
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise LmforgeError(
            f"config_overrides: {unknown} are not {spec.config_class.__name__} fields; choose from {fields}"
        )
    return overrides


def _load_tokenizer(name_or_path: str, role: str, **kwargs: Any) -> PreTrainedTokenizerBase:
    try:
        return AutoTokenizer.from_pretrained(name_or_path, **kwargs)
    except Exception as err:
        raise LmforgeError(f"could not load the {role} tokenizer from '{name_or_path}': {one_line(err)}") from None


def load_from_backbones(model_args: SummarizationModelArguments) -> tuple[Any, Any]:
    """A new LatentReasoner (random MLPs) on the pretrained encoder and decoder the recipe names, with their
    tokenizers."""
    if not model_args.encoder_name_or_path or not model_args.decoder_name_or_path:
        raise LmforgeError(
            f"{model_args.model_type} recipes need model_name_or_path (a saved model) or both encoder_name_or_path "
            "and decoder_name_or_path (pretrained backbones)"
        )
    spec = get_spec(model_args.model_type)
    overrides = _config_overrides(model_args)
    encoder_path, _ = resolve_backbone(model_args.encoder_name_or_path)
    decoder_path, gguf_file = resolve_backbone(model_args.decoder_name_or_path, model_args.decoder_gguf_file)
    gguf = {"gguf_file": gguf_file} if gguf_file else {}
    encoder_tokenizer = _load_tokenizer(encoder_path, "encoder")
    decoder_tokenizer = _load_tokenizer(decoder_path, "decoder", **gguf)

    attn = model_args.attn_implementation
    backbone_kwargs: dict[str, Any] = {"encoder_attn_implementation": attn, "decoder_attn_implementation": attn}
    backbone_kwargs = {key: value for key, value in backbone_kwargs.items() if value is not None}
    if gguf_file:
        try:
            backbone_kwargs["decoder_model"] = load_causal_lm_from_gguf(
                decoder_path, gguf_file, **({"attn_implementation": attn} if attn else {})
            )
        except Exception as err:
            raise LmforgeError(
                f"could not load the decoder from {gguf_file} in '{decoder_path}' (reading GGUF needs the gguf "
                f"package: pip install gguf): {one_line(err)}"
            ) from None
    try:
        head_class: Any = spec.head_class
        model = head_class.from_encoder_decoder_pretrained(encoder_path, decoder_path, **backbone_kwargs, **overrides)
    except Exception as err:
        raise LmforgeError(
            f"could not build a {spec.head_class.__name__} from encoder '{encoder_path}' and decoder '{decoder_path}': "
            f"{one_line(err)}"
        ) from None
    model.generation_config.update(**SUMMARY_GENERATION)
    return model, spec.processor_class(decoder_tokenizer, encoder_tokenizer)


def load_saved(model_args: SummarizationModelArguments) -> tuple[Any, Any]:
    """A saved LatentReasoner (e.g. an earlier run's output_dir) and its two tokenizers; `config_overrides` update
    its config (e.g. `dropout`)."""
    path = str(model_args.model_name_or_path)
    if model_args.encoder_name_or_path or model_args.decoder_name_or_path:
        raise LmforgeError(
            "give model_name_or_path (a saved model) or encoder_name_or_path and decoder_name_or_path "
            "(new MLPs on pretrained backbones), not both"
        )
    spec = get_spec(model_args.model_type)
    overrides = _config_overrides(model_args)
    model: Any = load_pretrained(AutoModelForSeq2SeqLM, path, "a model", **overrides)
    head_class: Any = spec.head_class
    if not isinstance(model, head_class):
        raise LmforgeError(f"'{path}' holds a {model.config.model_type} model; {spec.model_type} recipes need one")
    try:
        tokenizers = spec.processor_class.from_pretrained(path)
    except Exception as err:
        raise LmforgeError(
            f"could not load the two tokenizers of '{path}' (the decoder's at the top, the encoder's in "
            f"encoder_tokenizer/): {one_line(err)}"
        ) from None
    return model, tokenizers


DECODER_DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32}


def hold_decoder_in(model: Any, dtype_name: str) -> None:
    """Cast the frozen decoder and its LM head to `dtype_name` (`decoder_dtype`); the encoder and the MLPs keep
    theirs. A saved model holds the decoder weights in that dtype (they load back in the model's dtype)."""
    if dtype_name not in DECODER_DTYPES:
        raise LmforgeError(f"decoder_dtype must be one of {sorted(DECODER_DTYPES)}, got '{dtype_name}'")
    if not model.config.freeze_decoder:
        raise LmforgeError(
            "decoder_dtype holds a frozen decoder in another dtype; with freeze_decoder: false the decoder trains "
            "and keeps the model's dtype"
        )
    model.model.decoder.to(DECODER_DTYPES[dtype_name])
    model.lm_head.to(DECODER_DTYPES[dtype_name])


def _check_lengths(model: Any, tokenizers: Any, data_args: Seq2SeqDataArguments) -> tuple[int, int]:
    """`max_source_length` (at most the encoder's context) and `max_target_length` (prefix, start token and target
    must fit the decoder's context), with their defaults."""
    encoder_context = getattr(model.config.encoder, "max_position_embeddings", None) or 512
    encoder_context = min(encoder_context, tokenizers.encoder_tokenizer.model_max_length)
    max_source_length = data_args.max_source_length or encoder_context
    if not 0 < max_source_length <= encoder_context:
        raise LmforgeError(
            f"max_source_length ({max_source_length}) must be between 1 and the encoder's context ({encoder_context})"
        )
    decoder_context = getattr(model.config.decoder, "max_position_embeddings", None)
    room = decoder_context - model.config.num_prefix_tokens - 1 if decoder_context else None
    max_target_length = data_args.max_target_length or min(
        DEFAULT_MAX_TARGET_LENGTH, room or DEFAULT_MAX_TARGET_LENGTH
    )
    if max_target_length < 2 or (room is not None and max_target_length > room):
        raise LmforgeError(
            f"max_target_length ({max_target_length}) must be between 2 and {room} (the decoder's context "
            f"{decoder_context} minus {model.config.num_prefix_tokens} prefix embeddings and the start token)"
        )
    return max_source_length, max_target_length


def _check_decoder_room(model: Any, *datasets_: Dataset) -> None:
    """With a decoder prompt, the prefix and the longest decoder input (start token, prompt, summary) must fit the
    decoder's context."""
    context = getattr(model.config.decoder, "max_position_embeddings", None)
    if context is None or "decoder_input_ids" not in datasets_[0].column_names:
        return
    longest = max(len(ids) for dataset in datasets_ for ids in dataset["decoder_input_ids"])
    if model.config.num_prefix_tokens + longest > context:
        raise LmforgeError(
            f"the decoder prompt and summary take up to {longest} decoder tokens, more than the decoder's context "
            f"{context} leaves after {model.config.num_prefix_tokens} prefix embeddings; lower max_source_length or "
            "max_target_length, or shorten decoder_prompt"
        )


def tokenize_summaries(
    pairs: Dataset,
    tokenizers: Any,
    max_source_length: int,
    max_target_length: int,
    eos_token_id: int,
    decoder_start_token_id: int | None = None,
) -> Dataset:
    """`input_ids` / `attention_mask` of the dialogues (encoder) and `labels` of the summaries (decoder tokens and
    the end-of-sequence token, `max_target_length` in all).

    With a processor `decoder_prompt`, the rows also hold `decoder_input_ids`: the start token, the dialogue's
    decoder prompt and the summary; the prompt's `labels` are -100 (no loss), so the labels still score the summary
    and its end-of-sequence token only."""
    inputs = tokenizers(list(pairs["source"]), max_length=max_source_length)
    targets = tokenizers.decoder_tokenizer(
        list(pairs["target"]), add_special_tokens=False, truncation=True, max_length=max_target_length - 1
    )["input_ids"]
    columns: dict[str, list[Any]] = {
        "input_ids": inputs["input_ids"],
        "attention_mask": inputs["attention_mask"],
        "labels": [[*ids, eos_token_id] for ids in targets],
    }
    prompts = inputs.get("decoder_input_ids")
    if prompts is not None:
        if decoder_start_token_id is None:
            raise LmforgeError("a decoder prompt needs the decoder's start token id (config decoder_start_token_id)")
        columns["labels"] = [
            [-100] * len(prompt) + labels for prompt, labels in zip(prompts, columns["labels"], strict=True)
        ]
        columns["decoder_input_ids"] = [
            [decoder_start_token_id, *prompt, *ids] for prompt, ids in zip(prompts, targets, strict=True)
        ]
    return Dataset.from_dict(columns)


POOLED_COLUMN = "pooled_encoder_output"
LENGTH_COLUMN = "length"
ENCODE_BATCH_SIZE = 32


def add_pooled_encoder_outputs(
    tokenized: Dataset,
    model: Any,
    encoder_tokenizer: PreTrainedTokenizerBase,
    batch_size: int = ENCODE_BATCH_SIZE,
    cache_dir: Path | None = None,
) -> Dataset:
    """The frozen encoder run once over a tokenized dataset (`datasets.map`, cached to disk): `input_ids` and
    `attention_mask` become `pooled_encoder_output` (the encoder's mean-pooled output, what
    `forward(pooled_encoder_output=)` takes), and `length` is the row's decoder tokens (for length bucketing).

    The encoder runs in eval mode (no dropout) without gradients. The cache file is named by a fingerprint of the
    dataset and the encoder's weights, so a second run on the same data and encoder reads it instead of encoding
    (`cache_dir`: default the datasets cache).
    """
    encoder = model.model.encoder
    fingerprint = Hasher.hash([tokenized._fingerprint, POOLED_COLUMN, encoder.state_dict()])
    folder = Path(cache_dir) if cache_dir is not None else Path(datasets.config.HF_DATASETS_CACHE) / "lmforge"
    folder.mkdir(parents=True, exist_ok=True)

    def encode(batch: dict[str, list[Any]]) -> dict[str, Any]:
        features = [
            {"input_ids": ids, "attention_mask": mask}
            for ids, mask in zip(batch["input_ids"], batch["attention_mask"], strict=True)
        ]
        padded = encoder_tokenizer.pad(features, return_tensors="pt")
        with torch.no_grad():
            pooled = model.pool_encoder_output(padded["input_ids"].to(encoder.device), padded["attention_mask"])
        return {
            POOLED_COLUMN: pooled.float().cpu().numpy(),
            LENGTH_COLUMN: [len(labels) for labels in batch["labels"]],
        }

    with eval_mode(model):
        return tokenized.map(
            encode,
            batched=True,
            batch_size=batch_size,
            remove_columns=["input_ids", "attention_mask"],
            cache_file_name=str(folder / f"pooled-encoder-output-{fingerprint}.arrow"),
            new_fingerprint=fingerprint,
            desc="Encoding the sources once (frozen encoder)",
        )


def _pad_right(rows: list[list[int]], value: int) -> torch.Tensor:
    tensors = [torch.as_tensor(row, dtype=torch.long) for row in rows]
    return torch.nn.utils.rnn.pad_sequence(tensors, batch_first=True, padding_value=value)


@dataclass
class PooledEncoderCollator:
    """Batches of the cached-encoder path: the rows' `pooled_encoder_output` stacked (B, H) and their `labels` padded
    with -100 to the longest in the batch, and their `decoder_input_ids` (a decoder prompt) padded on the right with
    `pad_token_id` (the causal decoder never reads the padding before a labelled token); other columns, such as
    `length`, are left out."""

    label_pad_token_id: int = -100
    pad_token_id: int = 0

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = {
            POOLED_COLUMN: torch.stack([torch.as_tensor(feature[POOLED_COLUMN]) for feature in features]).float(),
            "labels": _pad_right([feature["labels"] for feature in features], self.label_pad_token_id),
        }
        if "decoder_input_ids" in features[0]:
            batch["decoder_input_ids"] = _pad_right(
                [feature["decoder_input_ids"] for feature in features], self.pad_token_id
            )
        return batch


@dataclass
class DecoderPromptCollator:
    """Batches of the live-encoder path with a decoder prompt: `DataCollatorForSeq2Seq` for the dialogues and
    labels, and the rows' `decoder_input_ids` padded on the right with `pad_token_id`."""

    seq2seq: DataCollatorForSeq2Seq
    pad_token_id: int

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        prompts = [feature.pop("decoder_input_ids") for feature in features]
        batch: dict[str, Any] = self.seq2seq(features)
        batch["decoder_input_ids"] = _pad_right(prompts, self.pad_token_id)
        return batch


def generate_summaries(
    model: Any,
    tokenizers: Any,
    dialogues: list[str],
    max_source_length: int,
    max_new_tokens: int,
    batch_size: int,
    show_progress: bool = True,
) -> list[str]:
    """A summary of each dialogue, `batch_size` dialogues per `generate()` call of the inference layer, with the
    model's generation_config (greedy and without repeated 3-grams for a model built by this module)."""
    generator = TextGenerator(model, tokenizers, max_input_tokens=max_source_length)
    settings = GenerationSettings(max_new_tokens=max_new_tokens)
    return generator.generate(dialogues, settings, batch_size=batch_size, show_progress=show_progress)


def rouge_percent(predictions: list[str], references: list[str]) -> dict[str, float]:
    """ROUGE-1/2/L/Lsum F-measures of `lmforge.evaluation.rouge`, as percentages."""
    return {key: 100.0 * value for key, value in rouge(predictions, references).items()}


def score_summaries(predictions: list[str], references: list[str]) -> dict[str, float]:
    """What every system of the evaluation is scored with: `rouge_percent` (rouge_score, Porter stemming, mean
    F-measure x 100; rougeL is the sentence-level LCS, rougeLsum the summary-level one over newline-split
    sentences), and `distinct_summaries`, how many different summaries it wrote."""
    return {**rouge_percent(predictions, references), "distinct_summaries": float(len(set(predictions)))}


def decoder_causal_lm(model: Any) -> Any:
    """The LatentReasoner's frozen decoder as the causal LM it was built from: a `AutoModelForCausalLM` of
    `config.decoder` whose base model and LM head are the LatentReasoner's own modules (shared, not copied)."""
    with torch.device("meta"):  # the fresh weights are replaced at once: never allocate them
        causal_lm: Any = AutoModelForCausalLM.from_config(model.config.decoder)
    setattr(causal_lm, causal_lm.base_model_prefix, model.model.decoder)
    causal_lm.set_output_embeddings(model.lm_head)
    causal_lm.generation_config = GenerationConfig(**SUMMARY_GENERATION)
    return causal_lm.eval()


def prompted_decoder_summaries(
    model: Any,
    decoder_tokenizer: PreTrainedTokenizerBase,
    dialogues: list[str],
    max_dialogue_tokens: int,
    max_new_tokens: int,
    batch_size: int,
    show_progress: bool = True,
) -> list[str]:
    """The reference of the frozen decoder alone: its summary of each dialogue when prompted
    `PROMPTED_DECODER_PROMPT` (through its chat template as a user message, when the tokenizer has one), written
    with the settings of the model's summaries (greedy, no repeated 3-gram, `max_new_tokens`), `batch_size`
    left-padded prompts per `generate()` call. A dialogue keeps its first `max_dialogue_tokens` decoder tokens.
    The 3-grams the summary may not repeat are its own: those of the prompt (the dialogue) are allowed."""
    causal_lm = decoder_causal_lm(model)
    tokenizer = copy.copy(decoder_tokenizer)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    chat = getattr(tokenizer, "chat_template", None) is not None
    prompts = []
    for dialogue in dialogues:
        ids = tokenizer(dialogue, add_special_tokens=False)["input_ids"][:max_dialogue_tokens]
        text = PROMPTED_DECODER_PROMPT.format(dialogue=tokenizer.decode(ids))
        if chat:
            rendered: Any = tokenizer.apply_chat_template(
                [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=False
            )
            text = str(rendered)
        prompts.append(text)
    summaries: list[str] = []
    eos = causal_lm.config.eos_token_id
    for start in tqdm(range(0, len(prompts), batch_size), desc="Prompted decoder", disable=not show_progress):
        encoded = tokenizer(
            prompts[start : start + batch_size], add_special_tokens=not chat, padding=True, return_tensors="pt"
        )
        width = int(encoded["input_ids"].shape[1])
        config = copy.deepcopy(causal_lm.generation_config)
        config.update(max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id, eos_token_id=eos)
        with torch.no_grad():
            output = causal_lm.generate(
                **encoded.to(causal_lm.device),
                generation_config=config,
                # no repeated 3-gram among the new tokens; the summary may repeat the dialogue's
                logits_processor=no_repeat_after_prompt(config, width),
            )
        new_tokens = output[:, width:]
        summaries.extend(text.strip() for text in tokenizer.batch_decode(new_tokens, skip_special_tokens=True))
    return summaries


@dataclass
class SummaryScorer:
    """The `post_train` hook: ROUGE of the model's summaries of the validation dialogues, of LEAD-3 and (unless
    `prompted_decoder` is off) of the frozen decoder alone, prompted; all scored by `score_summaries`."""

    validation: Dataset
    max_source_length: int
    max_new_tokens: int
    batch_size: int
    output_dir: Path
    show_progress: bool
    prompted_decoder: bool = True

    def __call__(self, trainer: Any, setup: TrainingSetup) -> dict[str, float]:
        model: Any = trainer.model
        tokenizers: Any = setup.tokenizer
        dialogues = list(self.validation["source"])
        references = list(self.validation["target"])
        started = time.monotonic()
        with eval_mode(model):
            predictions = generate_summaries(
                model,
                tokenizers,
                dialogues,
                self.max_source_length,
                self.max_new_tokens,
                self.batch_size,
                self.show_progress,
            )
        seconds = time.monotonic() - started
        # Every system's summaries, scored by the same function (prefix of its metrics, column of the table).
        systems: dict[str, tuple[str, list[str]]] = {
            "summary": ("eval", predictions),
            "lead3": ("lead3", [lead_3(dialogue) for dialogue in dialogues]),
        }
        if self.prompted_decoder:
            with eval_mode(model):
                prompted = prompted_decoder_summaries(
                    model,
                    tokenizers.decoder_tokenizer,
                    dialogues,
                    self.max_source_length,
                    self.max_new_tokens,
                    self.batch_size,
                    self.show_progress,
                )
            systems["prompted_decoder"] = ("prompted_decoder", prompted)
        scores = {column: score_summaries(texts, references) for column, (_, texts) in systems.items()}

        metrics: dict[str, float] = {
            "eval_summaries": float(len(predictions)),
            "eval_summary_seconds": seconds,
            "eval_summary_words": sum(len(p.split()) for p in predictions) / len(predictions),
        }
        for column, (prefix, _) in systems.items():
            metrics.update({f"{prefix}_{key}": value for key, value in scores[column].items()})
        self.write_predictions(dialogues, references, {column: texts for column, (_, texts) in systems.items()})
        titles = {"summary": "model", "lead3": "LEAD-3", "prompted_decoder": "decoder"}
        lines = [f"{'':<19}" + "".join(f"{titles[column]:>9}" for column in systems)] + [
            f"{key:<19}" + "".join(f"{scores[column][key]:>9.2f}" for column in systems) for key in scores["summary"]
        ]
        logger.info(
            "ROUGE (rouge_score, stemmed, F x 100; rougeL sentence-level LCS, rougeLsum summary-level) of %d "
            "validation summaries (model written in %.0fs; decoder: the frozen decoder alone, prompted %r):\n%s",
            len(predictions),
            seconds,
            PROMPTED_DECODER_PROMPT,
            "\n".join(lines),
        )
        return metrics

    def write_predictions(self, dialogues: list[str], references: list[str], systems: dict[str, list[str]]) -> None:
        """`predictions.jsonl` in the output folder: one validation dialogue per line with every system's summary
        (`summary`: the model's, `lead3`, `prompted_decoder` when it ran)."""
        self.output_dir.mkdir(parents=True, exist_ok=True)
        with (self.output_dir / "predictions.jsonl").open("w", encoding="utf-8") as handle:
            for index, (row_id, dialogue, reference) in enumerate(
                zip(self.validation["id"], dialogues, references, strict=True)
            ):
                record = {"id": row_id, "dialogue": dialogue, "reference": reference}
                record.update({column: texts[index] for column, texts in systems.items()})
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")


@register_task("summarization", model_arguments=SummarizationModelArguments, data_arguments=SummarizationDataArguments)
def build_summarization(
    model_args: SummarizationModelArguments,
    data_args: SummarizationDataArguments,
    training_args: LmforgeTrainingArguments,
) -> TrainingSetup:
    """LatentReasoner on dialogue -> summary pairs (see the module docstring)."""
    raw = load_summarization(
        data_args.dataset_name,
        data_args.dataset_config_name,
        data_args.train_file,
        data_args.validation_file,
        data_args.validation_split_percentage,
        data_args.source_column,
        data_args.target_column,
        seed=training_args.seed,
    )
    train_pairs = limit_rows(raw["train"], data_args.max_train_samples)
    validation_pairs = limit_rows(raw["validation"], data_args.max_eval_samples)
    model, tokenizers = load_saved(model_args) if model_args.model_name_or_path else load_from_backbones(model_args)

    if model_args.decoder_dtype is not None:
        hold_decoder_in(model, model_args.decoder_dtype)
    if data_args.decoder_prompt is not None:
        try:
            tokenizers.decoder_prompt = check_decoder_prompt(data_args.decoder_prompt)
        except ValueError as err:
            raise LmforgeError(str(err)) from None
    max_source_length, max_target_length = _check_lengths(model, tokenizers, data_args)
    # Saved with the model, so `lmforge generate` truncates a dialogue as training did.
    tokenizers.encoder_tokenizer.model_max_length = max_source_length
    encoder_config: Any = model.config.encoder
    decoder_config: Any = model.config.decoder
    eos_token_id = tokenizers.eos_token_id
    if eos_token_id is None:
        eos_token_id = decoder_config.eos_token_id
    if isinstance(eos_token_id, list):
        eos_token_id = eos_token_id[0]
    if eos_token_id is None or model.config.resolved_decoder_start_token_id is None:
        raise LmforgeError(
            "the decoder has no end-of-sequence or start token id; set config_overrides.decoder_start_token_id and "
            "give a decoder whose tokenizer has an eos_token"
        )

    encoder_frozen = not any(p.requires_grad for p in model.model.encoder.parameters())
    cache_encoder = data_args.cache_encoder_outputs
    if cache_encoder is None:
        cache_encoder = encoder_frozen
    if cache_encoder and not encoder_frozen:
        raise LmforgeError(
            "cache_encoder_outputs needs a frozen encoder (config freeze_encoder: true); a trained encoder must run "
            "at every step"
        )
    with training_args.main_process_first(desc="tokenizing"):
        start = model.config.resolved_decoder_start_token_id
        train_dataset = tokenize_summaries(
            train_pairs, tokenizers, max_source_length, max_target_length, eos_token_id, start
        )
        eval_dataset = tokenize_summaries(
            validation_pairs, tokenizers, max_source_length, max_target_length, eos_token_id, start
        )
        _check_decoder_room(model, train_dataset, eval_dataset)
        if cache_encoder:
            train_dataset = add_pooled_encoder_outputs(train_dataset, model, tokenizers.encoder_tokenizer)
            eval_dataset = add_pooled_encoder_outputs(eval_dataset, model, tokenizers.encoder_tokenizer)
    data_collator: Any
    pad_token_id = model.config.resolved_pad_token_id
    if cache_encoder:
        data_collator = PooledEncoderCollator(pad_token_id=pad_token_id)
        if training_args.remove_unused_columns and training_args.train_sampling_strategy in (
            "group_by_length",
            "batch_rebalance",
        ):
            # The sampler reads the `length` column, which the Trainer would drop (forward takes no `length`); the
            # collator picks its own columns anyway.
            training_args.remove_unused_columns = False
    else:
        # Pads the dialogues with the encoder's pad token and the labels with -100.
        data_collator = DataCollatorForSeq2Seq(tokenizers.encoder_tokenizer, label_pad_token_id=-100)
        if "decoder_input_ids" in train_dataset.column_names:
            data_collator = DecoderPromptCollator(data_collator, pad_token_id)
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    logger.info(
        "%s (%s encoder, %s decoder): %.1fM parameters, %.3fM trained (the MLPs); %d train and %d "
        "validation dialogues, sources <= %d and targets <= %d tokens; encoder %s",
        model_args.model_type,
        encoder_config.model_type,
        decoder_config.model_type,
        total / 1e6,
        trainable / 1e6,
        train_dataset.num_rows,
        eval_dataset.num_rows,
        max_source_length,
        max_target_length,
        "run once over the data (cached pooled outputs)" if cache_encoder else "run at every step",
    )
    scorer = SummaryScorer(
        validation=validation_pairs,
        max_source_length=max_source_length,
        max_new_tokens=max_target_length,
        batch_size=training_args.per_device_eval_batch_size,
        output_dir=Path(str(training_args.output_dir)),
        show_progress=not training_args.disable_tqdm,
        prompted_decoder=data_args.prompted_decoder_baseline,
    )
    return TrainingSetup(
        model=model,
        tokenizer=tokenizers,  # type: ignore[arg-type]
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        data_collator=data_collator,
        post_train=scorer,
    )


__all__ = [
    "POOLED_COLUMN",
    "SUMMARY_GENERATION",
    "DecoderPromptCollator",
    "PooledEncoderCollator",
    "SummarizationDataArguments",
    "SummarizationModelArguments",
    "SummaryScorer",
    "add_pooled_encoder_outputs",
    "build_summarization",
    "config_fields",
    "decoder_causal_lm",
    "generate_summaries",
    "hold_decoder_in",
    "load_from_backbones",
    "load_saved",
    "prompted_decoder_summaries",
    "rouge_percent",
    "score_summaries",
    "tokenize_summaries",
]


def __getattr__(name: str) -> Any:
    if name == "build_latent_reasoner":  # lmforge 0.1's name, kept for one release
        import warnings

        warnings.warn(
            "lmforge.training.summarization.build_latent_reasoner is deprecated: use build_summarization",
            FutureWarning,
            stacklevel=2,
        )
        return build_summarization
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
