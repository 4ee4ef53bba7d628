"""The arguments of a training run, parsed from a YAML recipe with `HfArgumentParser`.

A recipe is one flat YAML mapping whose keys are the fields of the model arguments, the data arguments and
`LmforgeTrainingArguments` (the Trainer's own `TrainingArguments` plus early stopping and samples). The keys every
run understands are here (`ModelArguments`, `DataArguments`); the training task of the recipe's model type (its
spec's `task`, see `tasks.py`) adds its own by subclassing them: `CausalLMDataArguments` (block_size...),
`QuestionAnsweringModelArguments` (training_phase), `SummarizationModelArguments` (encoder_name_or_path...).
"""

from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import TrainingArguments


@dataclass
class ModelArguments:
    """Which model to train and how to build it."""

    model_type: str = field(
        default="",
        metadata={
            "help": "lmforge architecture (a key of lmforge.models.SPECS); by default the saved model's "
            "(model_name_or_path), else the first architecture of the registry."
        },
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
        default=10004,
        metadata={
            "help": "Tokens of a newly trained tokenizer, the special tokens included, as config.vocab_size counts "
            "them (Aksis: 10,000 learned + 4 special = 10,004)."
        },
    )
    attn_implementation: str | None = field(
        default=None, metadata={"help": "Attention kernel: sdpa (default) or eager."}
    )
    peft: dict[str, Any] | str | None = field(
        default=None,
        metadata={"help": "LoRA fine-tuning: {r: 8, lora_alpha: 16, lora_dropout: 0.05, target_modules: [...]}."},
    )
    bad_words: list[str] | None = field(
        default=None,
        metadata={
            "help": "Text the saved model's generate() never writes, each string as its tokenizer writes it (its "
            "generation_config.bad_words_ids), e.g. ['\\n\\n\\n']: no run of blank lines."
        },
    )


@dataclass
class DataArguments:
    """Where the text comes from and how it is cut. With no dataset_name and no train_file the embedded corpus is used."""

    dataset_name: str | None = field(default=None, metadata={"help": "A Hub dataset id or a local dataset folder."})
    dataset_config_name: str | None = field(default=None, metadata={"help": "The dataset's configuration name."})
    train_file: str | None = field(default=None, metadata={"help": "A local UTF-8 text file, or JSON lines."})
    validation_file: str | None = field(default=None, metadata={"help": "A local validation file (optional)."})
    validation_split_percentage: int = field(
        default=10, metadata={"help": "Part held out for validation when there is no validation split (percent)."}
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Keep at most N training blocks."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Keep at most N validation blocks."})
    preprocessing_num_workers: int | None = field(default=None, metadata={"help": "Processes for datasets.map."})
    overwrite_cache: bool = field(default=False, metadata={"help": "Recompute cached tokenized datasets."})


@dataclass
class CausalLMDataArguments(DataArguments):
    """The data keys of causal language-model recipes: plain text cut into blocks of `block_size` tokens."""

    text_column: str = field(default="text", metadata={"help": "The column or JSON field holding the text."})
    block_size: int = field(default=128, metadata={"help": "Tokens per training example (at most the context)."})
    max_documents: int | None = field(
        default=None, metadata={"help": "Use only the first N documents of the embedded corpus (quick runs)."}
    )
    random_offsets: bool = field(
        default=False,
        metadata={
            "help": "Train on windows of block_size tokens starting at any token, drawn at random (nanoGPT's "
            "sampling), rather than on fixed consecutive blocks; an epoch is then every start once (block_size times "
            "as many rows), so give max_steps. Validation keeps the fixed blocks."
        },
    )


@dataclass
class Seq2SeqDataArguments(DataArguments):
    """The data keys of sequence-to-sequence recipes: (source, target) pairs, each cut to its own length."""

    max_source_length: int | None = field(default=None, metadata={"help": "Input tokens kept."})
    max_target_length: int | None = field(default=None, metadata={"help": "Output tokens kept."})


@dataclass
class OutputDirArguments:
    """The switch of the output-dir guard (`training.run.check_output_dir`), in every lmforge run's arguments: the
    Trainer's and TRL's (sft, dpo)."""

    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "Start a new run in an output_dir that holds an earlier one (its checkpoints, its interrupted or "
            "final model); without it such a run stops before it starts, rather than overwrite that work."
        },
    )


@dataclass
class LmforgeTrainingArguments(TrainingArguments, OutputDirArguments):
    """`TrainingArguments` with early stopping, the output-dir guard and the samples printed at the end of a run."""

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
    muon: bool = field(
        default=False,
        metadata={
            "help": "Train the hidden weight matrices with torch.optim.Muon and the rest (embeddings, output layer, "
            "norms, biases) with `optim`, at the same learning_rate and weight_decay. Needs whole matrices on each "
            "process: a single process or DDP, not FSDP or DeepSpeed."
        },
    )
    skip_logits: bool = field(
        default=False,
        metadata={
            "help": "Training steps ask the model for its loss without its logits (the forward keyword skip_logits, "
            "which Aksis and CharTransformer take): a chunked cross-entropy that never holds the batch x vocabulary logits. The same "
            "loss and gradients, less memory, and a faster step where the output layer dominates (the quickstart's "
            "small model). Evaluation does the same when it needs only the loss (no compute_metrics)."
        },
    )
    # lmforge pushes once, at the end of the run, with its model card and without checkpoints or pickles
    # (`lmforge.hub.push`); the Trainer itself never uploads (see `run_training`).
    hub_strategy: str = field(
        default="end",
        metadata={"help": "Only 'end': with push_to_hub, lmforge pushes the final model once, at the end."},
    )


def cpu_bf16_settings() -> dict[str, bool]:
    """The recipe keys that turn on bf16 autocast on a machine without an accelerator whose CPU computes in bf16
    natively (AVX512-BF16 or AMX): `bf16` and `use_cpu` (transformers asks for both on a CPU). There it makes the
    quickstart's training step about 1.4x faster than fp32; the weights and the optimizer stay in fp32. Elsewhere
    nothing: an accelerator is left to the recipe, and a CPU without bf16 instructions would emulate it, slower than
    fp32."""
    if torch.accelerator.is_available():
        return {}
    return {"bf16": True, "use_cpu": True} if cpu_has_native_bf16() else {}


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices in hardware (AVX512-BF16 or AMX); without them torch emulates bf16,
    several times slower than fp32."""
    native = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(check is not None and check() for check in native)


__all__ = [
    "CausalLMDataArguments",
    "DataArguments",
    "LmforgeTrainingArguments",
    "ModelArguments",
    "OutputDirArguments",
    "Seq2SeqDataArguments",
    "cpu_bf16_settings",
    "cpu_has_native_bf16",
]
