"""The arguments of a training run, parsed from a YAML recipe with `HfArgumentParser`.

A recipe is one flat YAML mapping whose keys are the fields of `ModelArguments`, `DataArguments` and
`LmforgeTrainingArguments` (the Trainer's own `TrainingArguments` plus early stopping).
"""

from dataclasses import dataclass, field
from typing import Any

from transformers import TrainingArguments


@dataclass
class ModelArguments:
    """Which model to train and how to build it."""

    model_type: str = field(
        default="aksis",
        metadata={"help": "lmforge architecture: aksis, char_transformer, ae_llm or latent_reasoner."},
    )
    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Start from a saved model (folder or Hub id) instead of a fresh one."},
    )
    config_overrides: dict[str, Any] | str | None = field(
        default=None,
        metadata={"help": "Config fields for a fresh model, e.g. {hidden_size: 256, num_hidden_layers: 4}."},
    )
    tokenizer_name_or_path: str | None = field(
        default=None,
        metadata={"help": "A saved tokenizer (folder or Hub id); by default a new one is trained on the train split."},
    )
    tokenizer_vocab_size: int = field(
        default=10000,
        metadata={"help": "Learned tokens of a newly trained BPE tokenizer (special tokens come on top)."},
    )
    attn_implementation: str | None = field(
        default=None, metadata={"help": "Attention kernel: sdpa (default) or eager."}
    )
    training_phase: str | None = field(
        default=None,
        metadata={"help": "AE-LLM phase: autoencoder, transition (autoencoder frozen) or finetune (end to end)."},
    )
    encoder_name_or_path: str | None = field(
        default=None, metadata={"help": "LatentReasoner: the frozen encoder (folder or Hub id)."}
    )
    decoder_name_or_path: str | None = field(
        default=None, metadata={"help": "LatentReasoner: the frozen causal decoder (folder or Hub id)."}
    )
    decoder_gguf_file: str | None = field(
        default=None, metadata={"help": "LatentReasoner: load the decoder from this GGUF file (needs gguf)."}
    )
    peft: dict[str, Any] | str | None = field(
        default=None,
        metadata={"help": "LoRA fine-tuning: {r: 8, lora_alpha: 16, lora_dropout: 0.05, target_modules: [...]}."},
    )


@dataclass
class DataArguments:
    """Where the text comes from and how it is cut. With no dataset_name and no train_file the embedded corpus is used."""

    dataset_name: str | None = field(default=None, metadata={"help": "A Hub dataset id or a local dataset folder."})
    dataset_config_name: str | None = field(default=None, metadata={"help": "The dataset's configuration name."})
    train_file: str | None = field(default=None, metadata={"help": "A local UTF-8 text file, or JSON lines."})
    validation_file: str | None = field(default=None, metadata={"help": "A local validation file (optional)."})
    text_column: str = field(default="text", metadata={"help": "The column or JSON field holding the text."})
    validation_split_percentage: int = field(
        default=10, metadata={"help": "Part held out for validation when there is no validation split (percent)."}
    )
    block_size: int = field(default=128, metadata={"help": "Tokens per training example (at most the context)."})
    source_column: str | None = field(
        default=None, metadata={"help": "Seq2seq models: the input column (question, dialogue...)."}
    )
    target_column: str | None = field(
        default=None, metadata={"help": "Seq2seq models: the output column (answer, summary...)."}
    )
    max_source_length: int | None = field(default=None, metadata={"help": "Seq2seq: input tokens kept."})
    max_target_length: int | None = field(default=None, metadata={"help": "Seq2seq: output tokens kept."})
    qa_input: str = field(
        default="question",
        metadata={"help": "AE-LLM input: question, or question_and_sentence (with the sentence holding the answer)."},
    )
    max_documents: int | None = field(
        default=None, metadata={"help": "Use only the first N documents of the embedded corpus (quick runs)."}
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Keep at most N training blocks."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Keep at most N validation blocks."})
    preprocessing_num_workers: int | None = field(default=None, metadata={"help": "Processes for datasets.map."})
    overwrite_cache: bool = field(default=False, metadata={"help": "Recompute cached tokenized datasets."})


@dataclass
class LmforgeTrainingArguments(TrainingArguments):
    """`TrainingArguments` with early stopping and the samples printed at the end of a run."""

    early_stopping_patience: int | None = field(
        default=None,
        metadata={
            "help": "Stop after this many evaluations without a better eval_loss (needs load_best_model_at_end)."
        },
    )
    sample_prompts: list[str] | None = field(
        default=None, metadata={"help": "Prompts to generate from after training; the samples go into the log."}
    )
    sample_max_new_tokens: int = field(default=64, metadata={"help": "New tokens per sample."})


__all__ = ["DataArguments", "LmforgeTrainingArguments", "ModelArguments"]
