"""AE-LLM on SQuAD: the three training phases as one builder, and the answer scores after training.

A recipe picks the phase with `training_phase` (the seed's flags `--train-ae`, `--train-trans` and `--finetune`):

- `autoencoder`: the encoder and decoder learn to reconstruct the questions (the model inputs) and the answers of the
  train split (`mode: reconstruct`, inputs = labels); a new tokenizer is trained on the same texts.
- `transition`: loads the previous phase (`model_name_or_path`), freezes the autoencoder and trains the Thinking Net
  alone to map question latents to answer latents (`mode: answer`).
- `finetune`: loads the previous phase and trains everything end to end on question -> answer, with a small rate.

After each phase the `post_train` hook scores the model on the validation questions: reconstruction accuracy of the
autoencoder, and exact match, F1, BLEU and ROUGE of greedy answers, next to the same scores of a baseline that
always answers the most frequent answer of the train split.
"""

import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from datasets import Dataset, concatenate_datasets
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import AutoModelForSeq2SeqLM, DataCollatorForSeq2Seq, PreTrainedTokenizerBase

from ..data import load_squad
from ..errors import LmforgeError, one_line
from ..evaluation import bleu, normalize_answer, rouge, squad_scores
from ..inference import GenerationSettings, TextGenerator
from ..models import get_spec
from .arguments import LmforgeTrainingArguments, ModelArguments, Seq2SeqDataArguments
from .builders import TrainingSetup, build_config, eval_mode, limit_rows, load_tokenizer, train_tokenizer
from .tasks import register_task

logger = logging.getLogger(__name__)

PHASES = ("autoencoder", "transition", "finetune")
# The phase decides what the decoder decodes from: the encoder latent itself, or the Thinking Net's answer latent.
PHASE_MODE = {"autoencoder": "reconstruct", "transition": "answer", "finetune": "answer"}


@dataclass
class QuestionAnsweringModelArguments(ModelArguments):
    """The model keys of question-answering recipes: the phase of the run."""

    training_phase: str | None = field(
        default=None,
        metadata={"help": "autoencoder, transition (autoencoder frozen) or finetune (end to end)."},
    )


@dataclass
class QuestionAnsweringDataArguments(Seq2SeqDataArguments):
    """The data keys of question-answering recipes: what the model reads."""

    qa_input: str = field(
        default="question",
        metadata={"help": "question, or question_and_sentence (with the sentence holding the answer)."},
    )


def check_phase(model_args: QuestionAnsweringModelArguments) -> str:
    """The recipe's `training_phase`; transition and finetune need the previous phase's output to start from."""
    phase = model_args.training_phase
    if phase not in PHASES:
        raise LmforgeError(
            f"{model_args.model_type} recipes need training_phase: one of {list(PHASES)} (got {phase!r})"
        )
    if phase != "autoencoder" and not model_args.model_name_or_path:
        previous = PHASES[PHASES.index(phase) - 1]
        raise LmforgeError(
            f"training_phase {phase} starts from the {previous} phase: set model_name_or_path to its output_dir"
        )
    return phase


def _warn_on_other_input(model_args: ModelArguments, data_args: QuestionAnsweringDataArguments) -> None:
    """A later phase should read the same kind of input as the phase it starts from."""
    previous = Path(str(model_args.model_name_or_path)) / "recipe.yaml"
    if not previous.is_file():
        return
    recipe = yaml.safe_load(previous.read_text(encoding="utf-8")) or {}
    if recipe.get("qa_input", "question") != data_args.qa_input:
        logger.warning(
            "%s was trained with qa_input %s but this phase uses %s",
            model_args.model_name_or_path,
            recipe.get("qa_input"),
            data_args.qa_input,
        )


def load_model(model_args: ModelArguments, tokenizer: PreTrainedTokenizerBase, phase: str) -> Any:
    """A fresh model sized to the tokenizer (autoencoder phase) or the previous phase's model; `config_overrides`
    apply to both (e.g. `teacher_forcing_ratio` or `dropout` of a loaded model)."""
    overrides = dict(model_args.config_overrides or {})  # type: ignore[arg-type]
    if model_args.model_name_or_path:
        try:
            model: Any = AutoModelForSeq2SeqLM.from_pretrained(
                model_args.model_name_or_path, use_safetensors=True, **overrides
            )
        except Exception as err:
            raise LmforgeError(
                f"could not load a model from '{model_args.model_name_or_path}': {one_line(err)}"
            ) from None
        head_class: Any = get_spec(model_args.model_type).head_class
        if not isinstance(model, head_class):
            raise LmforgeError(
                f"'{model_args.model_name_or_path}' holds a {model.config.model_type} model; "
                f"training_phase {phase} needs a {model_args.model_type} model"
            )
        if model.config.vocab_size != len(tokenizer):
            raise LmforgeError(
                f"the tokenizer has {len(tokenizer)} tokens but the model {model.config.vocab_size}; "
                "use the tokenizer saved with the model"
            )
    else:
        config = build_config(model_args.model_type, overrides, tokenizer)
        model = AutoModelForSeq2SeqLM.from_config(config)
    model.config.mode = PHASE_MODE[phase]
    if phase == "transition":
        model.freeze_autoencoder()
    else:
        model.unfreeze_autoencoder()
    return model


def _check_length(name: str, value: int | None, limit: int) -> int:
    if value is None:
        return limit
    if not 0 < value <= limit:
        raise LmforgeError(f"{name} ({value}) must be between 1 and the model's max_position_embeddings ({limit})")
    return value


def tokenize_pairs(
    tokenizer: PreTrainedTokenizerBase,
    sources: Iterable[str],
    targets: Iterable[str],
    max_source_length: int,
    max_target_length: int,
) -> Dataset:
    """Rows of `input_ids`, `attention_mask` and `labels` (each text ends with `</s>`, kept when truncating)."""
    inputs = tokenizer(list(sources), truncation=True, max_length=max_source_length)
    labels = tokenizer(list(targets), truncation=True, max_length=max_target_length)["input_ids"]
    return Dataset.from_dict(
        {"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"], "labels": labels}
    )


def reconstruction_texts(pairs: Dataset) -> tuple[list[str], list[str]]:
    """The distinct sources (questions) and the distinct answers of `pairs`, in order."""
    return list(dict.fromkeys(pairs["source"])), list(dict.fromkeys(pairs["target"]))


def reconstruction_dataset(
    tokenizer: PreTrainedTokenizerBase, pairs: Dataset, max_source_length: int, max_target_length: int
) -> Dataset:
    """Autoencoder rows: every distinct question and every distinct answer, as input and as label."""
    sources, targets = reconstruction_texts(pairs)
    return concatenate_datasets(
        [
            tokenize_pairs(tokenizer, sources, sources, max_source_length, max_source_length),
            tokenize_pairs(tokenizer, targets, targets, max_target_length, max_target_length),
        ]
    )


def most_frequent_answer(answers: list[str]) -> str:
    """The answer given most often, counted after SQuAD normalisation (the first one met among ties), as first
    written: the baseline's answer to every question."""
    counts = Counter(normalize_answer(answer) for answer in answers)
    best = counts.most_common(1)[0][0]
    return next(answer for answer in answers if normalize_answer(answer) == best)


def answer_scores(predictions: list[str], references: list[list[str]]) -> dict[str, float]:
    """Exact match and F1 (SQuAD normalisation, best gold answer), BLEU against all gold answers and ROUGE against
    the first, all 0-100."""
    scores = dict(squad_scores(predictions, references))
    scores["bleu"] = float(bleu(predictions, references)["bleu"])
    for key, value in rouge(predictions, [golds[0] for golds in references]).items():
        scores[key] = 100.0 * value
    return scores


@torch.no_grad()
def reconstruction_accuracy(
    model: Any,
    dataset: Dataset,
    collator: Callable[..., Any],
    batch_size: int,
    show_progress: bool = True,
) -> dict[str, float]:
    """Teacher-forced reconstruction (`mode="reconstruct"`): the share of tokens whose argmax is the input token,
    and the share of texts with every token right. A text with every token right is also what greedy decoding
    writes (each step then reads the right previous token), so the second number is greedy exact reconstruction."""
    correct = total = exact = texts = 0
    loader = DataLoader(dataset, batch_size=batch_size, collate_fn=collator)  # type: ignore[arg-type]
    for batch in tqdm(loader, desc="Reconstruction", disable=not show_progress):
        batch = {key: value.to(model.device) for key, value in batch.items()}
        logits = model(**batch, mode="reconstruct", use_cache=False).logits  # (B, T, V)
        labels = batch["labels"]  # (B, T), -100 on padding
        mask = labels != -100
        right = (logits.argmax(-1) == labels) & mask
        correct += int(right.sum())
        total += int(mask.sum())
        exact += int((right | ~mask).all(dim=1).sum())
        texts += labels.shape[0]
    return {"token_accuracy": 100.0 * correct / max(total, 1), "sequence_accuracy": 100.0 * exact / max(texts, 1)}


def generate_answers(
    model: Any,
    tokenizer: PreTrainedTokenizerBase,
    questions: list[str],
    max_source_length: int,
    max_new_tokens: int,
    batch_size: int,
    show_progress: bool = True,
) -> list[str]:
    """Greedy answers (`mode="answer"`) to `questions`, `batch_size` at a time, through the inference layer."""
    generator = TextGenerator(model, tokenizer, max_input_tokens=max_source_length)
    settings = GenerationSettings(max_new_tokens=max_new_tokens, do_sample=False, num_beams=1)
    return generator.generate(questions, settings, batch_size=batch_size, show_progress=show_progress, mode="answer")


@dataclass
class AnswerScorer:
    """The `post_train` hook: scores the trained model and the most-frequent-answer baseline on validation."""

    validation: Dataset
    reconstruction: Dataset
    baseline_answer: str
    max_source_length: int
    max_new_tokens: int
    batch_size: int
    output_dir: Path
    show_progress: bool

    def __call__(self, trainer: Any, setup: TrainingSetup) -> dict[str, float]:
        model: Any = trainer.model
        with eval_mode(model):
            recon = reconstruction_accuracy(
                model, self.reconstruction, setup.data_collator, self.batch_size, self.show_progress
            )
            started = time.monotonic()
            questions = list(self.validation["source"])
            predictions = generate_answers(
                model,
                setup.tokenizer,
                questions,
                self.max_source_length,
                self.max_new_tokens,
                self.batch_size,
                self.show_progress,
            )
            seconds = time.monotonic() - started
        references = [list(golds) for golds in self.validation["answers"]]
        model_scores = answer_scores(predictions, references)
        baseline_scores = answer_scores([self.baseline_answer] * len(references), references)

        metrics: dict[str, float] = {
            "eval_reconstruction_token_accuracy": recon["token_accuracy"],
            "eval_reconstruction_sequence_accuracy": recon["sequence_accuracy"],
            "eval_questions": float(len(questions)),
            "eval_answer_seconds": seconds,
        }
        metrics.update({f"eval_{key}": value for key, value in model_scores.items()})
        metrics.update({f"baseline_{key}": value for key, value in baseline_scores.items()})
        self.write_predictions(questions, predictions, references)
        lines = [f"{'':<14}{'model':>10}{'baseline':>10}"] + [
            f"{key:<14}{model_scores[key]:>10.2f}{baseline_scores[key]:>10.2f}" for key in model_scores
        ]
        logger.info(
            "Answers to %d validation questions (baseline always answers %r); reconstruction: %.2f%% of tokens, "
            "%.2f%% of texts exact\n%s",
            len(questions),
            self.baseline_answer,
            recon["token_accuracy"],
            recon["sequence_accuracy"],
            "\n".join(lines),
        )
        return metrics

    def write_predictions(self, questions: list[str], predictions: list[str], references: list[list[str]]) -> None:
        """`predictions.jsonl` in the output folder: one validation question per line with its answer and the golds."""
        self.output_dir.mkdir(parents=True, exist_ok=True)
        with (self.output_dir / "predictions.jsonl").open("w", encoding="utf-8") as handle:
            for row_id, question, prediction, golds in zip(
                self.validation["id"], questions, predictions, references, strict=True
            ):
                record = {"id": row_id, "input": question, "prediction": prediction, "answers": golds}
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")


@register_task(
    "question_answering",
    model_arguments=QuestionAnsweringModelArguments,
    data_arguments=QuestionAnsweringDataArguments,
)
def build_question_answering(
    model_args: QuestionAnsweringModelArguments,
    data_args: QuestionAnsweringDataArguments,
    training_args: LmforgeTrainingArguments,
) -> TrainingSetup:
    """AE-LLM on SQuAD, one phase per run (see the module docstring)."""
    phase = check_phase(model_args)
    raw = load_squad(
        data_args.dataset_name,
        data_args.dataset_config_name,
        data_args.train_file,
        data_args.validation_file,
        data_args.validation_split_percentage,
        data_args.qa_input,
    )
    # max_train_samples: 500 keeps the first 500 train pairs, as the seed did.
    train_pairs = limit_rows(raw["train"], data_args.max_train_samples)
    validation_pairs = limit_rows(raw["validation"], data_args.max_eval_samples)

    if model_args.tokenizer_name_or_path or model_args.model_name_or_path:
        tokenizer = load_tokenizer(model_args.tokenizer_name_or_path or str(model_args.model_name_or_path))
        if model_args.model_name_or_path:
            _warn_on_other_input(model_args, data_args)
    else:
        sources, targets = reconstruction_texts(train_pairs)  # the new tokenizer learns the questions and answers
        spec = get_spec(model_args.model_type)
        tokenizer = train_tokenizer(spec, iter(sources + targets), model_args.tokenizer_vocab_size)
    model = load_model(model_args, tokenizer, phase)
    context = model.config.max_position_embeddings
    tokenizer.model_max_length = context
    max_source_length = _check_length("max_source_length", data_args.max_source_length, context)
    max_target_length = _check_length("max_target_length", data_args.max_target_length, context)

    # Fast-tokenizer batches in memory: SQuAD tokenizes in seconds, with nothing worth caching.
    reconstruction_eval = reconstruction_dataset(tokenizer, validation_pairs, max_source_length, max_target_length)
    if phase == "autoencoder":
        train_dataset = reconstruction_dataset(tokenizer, train_pairs, max_source_length, max_target_length)
        eval_dataset = reconstruction_eval
    else:
        train_dataset = tokenize_pairs(
            tokenizer, train_pairs["source"], train_pairs["target"], max_source_length, max_target_length
        )
        eval_dataset = tokenize_pairs(
            tokenizer,
            validation_pairs["source"],
            validation_pairs["target"],
            max_source_length,
            max_target_length,
        )
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    logger.info(
        "AE-LLM phase %s (mode %s): %.3fM parameters, %.3fM trained; %d train and %d validation rows",
        phase,
        model.config.mode,
        sum(p.numel() for p in model.parameters()) / 1e6,
        trainable / 1e6,
        train_dataset.num_rows,
        eval_dataset.num_rows,
    )
    scorer = AnswerScorer(
        validation=validation_pairs,
        reconstruction=reconstruction_eval,
        baseline_answer=most_frequent_answer(list(train_pairs["target"])),
        max_source_length=max_source_length,
        max_new_tokens=max_target_length,
        batch_size=training_args.per_device_eval_batch_size,
        output_dir=Path(str(training_args.output_dir)),
        show_progress=not training_args.disable_tqdm,
    )
    return TrainingSetup(
        model=model,
        tokenizer=tokenizer,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        # Pads inputs with the pad token and labels with -100; the model builds decoder inputs from the labels.
        data_collator=DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=-100),
        post_train=scorer,
    )


__all__ = [
    "PHASES",
    "AnswerScorer",
    "QuestionAnsweringDataArguments",
    "QuestionAnsweringModelArguments",
    "answer_scores",
    "build_question_answering",
    "check_phase",
    "generate_answers",
    "most_frequent_answer",
    "reconstruction_accuracy",
    "reconstruction_dataset",
    "tokenize_pairs",
]


def __getattr__(name: str) -> Any:
    if name == "build_ae_llm":  # lmforge 0.1's name, kept for one release
        import warnings

        warnings.warn(
            "lmforge.training.qa.build_ae_llm is deprecated: use build_question_answering", FutureWarning, stacklevel=2
        )
        return build_question_answering
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
