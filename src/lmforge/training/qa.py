"""AE-LLM on SQuAD: the three training phases as one builder, and the answer scores after training.

A recipe picks the phase with `training_phase` (the seed's flags `--train-ae`, `--train-trans` and `--finetune`):

- `autoencoder`: the encoder and decoder learn to reconstruct the questions (the model inputs) and the answers of the
  train split (`mode: reconstruct`, inputs = labels); a new tokenizer is trained on the same texts.
- `transition`: loads the previous phase (`model_name_or_path`), freezes the autoencoder and trains the Thinking Net
  alone to map question latents to answer latents (`mode: answer`).
- `finetune`: loads the previous phase and trains everything end to end on question -> answer, with a small rate.

`objective` says what a phase minimises (the model config's `lm_loss_coef` and `latent_loss_coef`): `decoder`, the
decoder's token cross-entropy (the autoencoder's and finetune's default); `latent`, the mean squared error between the
Thinking Net's answer latent and the frozen encoder's latent of the answer (the transition's default: the seed's
transition loss); or `latent+decoder`, both.

After each phase the `post_train` hook scores the model on the validation questions: reconstruction accuracy of the
autoencoder, the Thinking Net's latent error (`eval_latent_mse`, and its share of the latents' variance), and exact
match, F1, BLEU and ROUGE of the answers (greedy, or beam search with `answer_num_beams` and
`answer_length_penalty`), next to the same scores of a baseline that always answers the most frequent answer of the
train split (`eval_baseline_*`: the model card shows them in its table, not in its
model-index). With `train_score_samples: N`, the first N train pairs, the ones the model learned, get the same scores
(`train_*`, and `train_predictions.jsonl`).
"""

import json
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from datasets import Dataset, DatasetDict, concatenate_datasets
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import AutoModelForSeq2SeqLM, DataCollatorForSeq2Seq, PreTrainedTokenizerBase

from ..data import load_squad
from ..data.squad import read_squad_file
from ..errors import LmforgeError
from ..evaluation import bleu, normalize_answer, rouge, squad_scores
from ..inference import GenerationSettings, TextGenerator
from ..loading import load_pretrained
from ..models import get_spec
from .arguments import LmforgeTrainingArguments, ModelArguments, Seq2SeqDataArguments
from .builders import TrainingSetup, build_config, eval_mode, limit_rows, load_tokenizer, train_tokenizer
from .tasks import register_task

logger = logging.getLogger(__name__)

PHASES = ("autoencoder", "transition", "finetune")
# The phase decides what the decoder decodes from: the encoder latent itself, or the Thinking Net's answer latent.
PHASE_MODE = {"autoencoder": "reconstruct", "transition": "answer", "finetune": "answer"}
# What a phase minimises: the decoder's token cross-entropy ("decoder"), the mean squared error between the Thinking
# Net's answer latent and the encoder's latent of the answer ("latent", the seed's transition objective), or both.
# As (lm_loss_coef, latent_loss_coef) of the model config.
OBJECTIVES = {"decoder": (1.0, 0.0), "latent": (0.0, 1.0), "latent+decoder": (1.0, 1.0)}
DEFAULT_OBJECTIVE = {"autoencoder": "decoder", "transition": "latent", "finetune": "decoder"}


@dataclass
class QuestionAnsweringModelArguments(ModelArguments):
    """The model keys of question-answering recipes: the phase of the run."""

    training_phase: str | None = field(
        default=None,
        metadata={"help": "autoencoder, transition (autoencoder frozen) or finetune (end to end)."},
    )
    objective: str | None = field(
        default=None,
        metadata={
            "help": "decoder (token cross-entropy), latent (MSE to the frozen encoder's answer latent) or "
            "latent+decoder; by default latent for the transition phase, decoder for the others."
        },
    )


@dataclass
class QuestionAnsweringDataArguments(Seq2SeqDataArguments):
    """The data keys of question-answering recipes: what the model reads."""

    qa_input: str = field(
        default="question",
        metadata={"help": "question, or question_and_sentence (with the sentence holding the answer)."},
    )
    articles: list[str] | None = field(
        default=None,
        metadata={"help": "Keep only the train data's questions of these article titles (before the split)."},
    )
    validation_articles: list[str] | None = field(
        default=None,
        metadata={"help": "Hold out these articles of the train data for validation (instead of a share of them)."},
    )
    answer_num_beams: int = field(
        default=1,
        metadata={"help": "Beam width of the answers scored after training (1: greedy), through generate()."},
    )
    answer_length_penalty: float = field(
        default=1.0,
        metadata={
            "help": "generate()'s length_penalty for those beams: a finished beam scores its log-probability divided "
            "by its length to this power (1: per-token average; 0: the log-probability itself; below 0: shorter "
            "answers preferred)."
        },
    )
    train_score_samples: int = field(
        default=0,
        metadata={
            "help": "After training, also score the first N train pairs (answers, reconstruction, latent error): "
            "what the model learned by heart."
        },
    )


def check_phase(model_args: QuestionAnsweringModelArguments) -> str:
    """The recipe's `training_phase`; transition and finetune need the previous phase's output to start from."""
    phase = model_args.training_phase
    if phase not in PHASES:
        raise LmforgeError(
            f"{model_args.model_type} recipes need training_phase: one of {list(PHASES)} (got {phase!r})"
        )
    objective = model_args.objective
    if objective is not None and objective not in OBJECTIVES:
        raise LmforgeError(f"objective must be one of {list(OBJECTIVES)}, got {objective!r}")
    if phase == "autoencoder" and objective not in (None, "decoder"):
        raise LmforgeError(f"the autoencoder phase reconstructs its inputs: objective decoder, not {objective}")
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


def load_model(model_args: QuestionAnsweringModelArguments, tokenizer: PreTrainedTokenizerBase, phase: str) -> Any:
    """A fresh model sized to the tokenizer (autoencoder phase) or the previous phase's model; `config_overrides`
    apply to both (e.g. `teacher_forcing_ratio` or `dropout` of a loaded model)."""
    overrides = dict(model_args.config_overrides or {})  # type: ignore[arg-type]
    if model_args.model_name_or_path:
        model: Any = load_pretrained(AutoModelForSeq2SeqLM, model_args.model_name_or_path, "a model", **overrides)
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
    objective = model_args.objective or DEFAULT_OBJECTIVE[phase]
    model.config.lm_loss_coef, model.config.latent_loss_coef = OBJECTIVES[objective]
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
    num_beams: int = 1,
    length_penalty: float = 1.0,
) -> list[str]:
    """Answers (`mode="answer"`) to `questions`, `batch_size` at a time, through the inference layer and the model's
    `generate()`: greedy, or beam search of `num_beams` beams ranked with `length_penalty`."""
    generator = TextGenerator(model, tokenizer, max_input_tokens=max_source_length)
    settings = GenerationSettings(
        max_new_tokens=max_new_tokens,
        do_sample=False,
        num_beams=num_beams,
        length_penalty=length_penalty if num_beams > 1 else None,
    )
    return generator.generate(questions, settings, batch_size=batch_size, show_progress=show_progress, mode="answer")


@torch.no_grad()
def latent_error(
    model: Any, pairs: Dataset, collator: Callable[..., Any], batch_size: int, show_progress: bool = True
) -> dict[str, float]:
    """How close the Thinking Net's answer latents come to the encoder's latents of the answers (the transition
    objective), over tokenized (question, answer) rows: the mean squared error, and the same divided by the variance
    of the answer latents around their mean (1 - R^2: 0 = every latent right, 1 = no better than the mean latent; an
    MSE alone depends on the latents' scale)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # under a PEFT adapter too
    predicted, targets = [], []
    loader = DataLoader(pairs, batch_size=batch_size, collate_fn=collator)  # type: ignore[arg-type]
    for batch in tqdm(loader, desc="Latent error", disable=not show_progress):
        batch = {key: value.to(base.device) for key, value in batch.items()}
        encoded = base.get_encoder()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        predicted.append(base.model.transition(encoded.last_hidden_state[:, 0]).answer_latent.float())
        targets.append(base.encode_labels(batch["labels"]).float())
    prediction, target = torch.cat(predicted), torch.cat(targets)
    mse = float(((prediction - target) ** 2).mean())
    spread = float(((target - target.mean(dim=0)) ** 2).mean())
    return {"latent_mse": mse, "latent_relative_mse": mse / spread if spread > 0 else math.nan}


@dataclass
class PairScores:
    """Everything scored on one set of pairs: the metrics (unprefixed) and the answers given."""

    metrics: dict[str, float]
    questions: list[str]
    predictions: list[str]
    references: list[list[str]]


@dataclass
class AnswerScorer:
    """The `post_train` hook: scores the trained model and the most-frequent-answer baseline on validation (and, with
    `train_score_samples`, the model on the first train pairs, the ones it learned)."""

    validation: Dataset
    baseline_answer: str
    max_source_length: int
    max_target_length: int
    batch_size: int
    output_dir: Path
    show_progress: bool
    train: Dataset | None = None
    num_beams: int = 1
    length_penalty: float = 1.0

    def score(self, model: Any, tokenizer: PreTrainedTokenizerBase, pairs: Dataset) -> PairScores:
        """Reconstruction of the questions and answers, the latent error of the Thinking Net ("answer" mode) and the
        answers' EM, F1, BLEU and ROUGE (greedy, or `num_beams` beams ranked with `length_penalty`)."""
        collator = DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=-100)
        recon = reconstruction_accuracy(
            model,
            reconstruction_dataset(tokenizer, pairs, self.max_source_length, self.max_target_length),
            collator,
            self.batch_size,
            self.show_progress,
        )
        metrics = {
            "reconstruction_token_accuracy": recon["token_accuracy"],
            "reconstruction_sequence_accuracy": recon["sequence_accuracy"],
        }
        if model.config.mode == "answer":
            rows = tokenize_pairs(
                tokenizer, pairs["source"], pairs["target"], self.max_source_length, self.max_target_length
            )
            metrics.update(latent_error(model, rows, collator, self.batch_size, self.show_progress))
        started = time.monotonic()
        questions = list(pairs["source"])
        predictions = generate_answers(
            model,
            tokenizer,
            questions,
            self.max_source_length,
            self.max_target_length,
            self.batch_size,
            self.show_progress,
            self.num_beams,
            self.length_penalty,
        )
        metrics["answer_seconds"] = time.monotonic() - started
        metrics["questions"] = float(len(questions))
        references = [list(golds) for golds in pairs["answers"]]
        metrics.update(answer_scores(predictions, references))
        return PairScores(metrics, questions, predictions, references)

    def __call__(self, trainer: Any, setup: TrainingSetup) -> dict[str, float]:
        model: Any = trainer.model
        with eval_mode(model):
            scores = self.score(model, setup.tokenizer, self.validation)
            learned = self.score(model, setup.tokenizer, self.train) if self.train is not None else None
        references = scores.references
        baseline_scores = answer_scores([self.baseline_answer] * len(references), references)
        model_scores = {key: value for key, value in scores.metrics.items() if key in baseline_scores}

        metrics = {f"eval_{key}": value for key, value in scores.metrics.items()}
        # eval_baseline_*: a reference score, which the model card shows in its table but not in its model-index
        metrics.update({f"eval_baseline_{key}": value for key, value in baseline_scores.items()})
        self.write_predictions("predictions.jsonl", self.validation, scores)
        lines = [f"{'':<14}{'model':>10}{'baseline':>10}"] + [
            f"{key:<14}{model_scores[key]:>10.2f}{baseline_scores[key]:>10.2f}" for key in model_scores
        ]
        logger.info(
            "Answers to %d validation questions (baseline always answers %r); reconstruction: %.2f%% of tokens, "
            "%.2f%% of texts exact%s\n%s",
            len(references),
            self.baseline_answer,
            scores.metrics["reconstruction_token_accuracy"],
            scores.metrics["reconstruction_sequence_accuracy"],
            _latent_note(scores.metrics),
            "\n".join(lines),
        )
        if learned is not None and self.train is not None:
            metrics.update({f"train_{key}": value for key, value in learned.metrics.items()})
            self.write_predictions("train_predictions.jsonl", self.train, learned)
            logger.info(
                "The first %d train pairs: exact match %.2f, F1 %.2f; reconstruction %.2f%% of tokens, %.2f%% of "
                "texts exact%s",
                len(learned.references),
                learned.metrics["exact_match"],
                learned.metrics["f1"],
                learned.metrics["reconstruction_token_accuracy"],
                learned.metrics["reconstruction_sequence_accuracy"],
                _latent_note(learned.metrics),
            )
        return metrics

    def write_predictions(self, name: str, pairs: Dataset, scores: PairScores) -> None:
        """One question per line of `name` in the output folder, with its answer and the golds."""
        self.output_dir.mkdir(parents=True, exist_ok=True)
        with (self.output_dir / name).open("w", encoding="utf-8") as handle:
            for row_id, question, prediction, golds in zip(
                pairs["id"], scores.questions, scores.predictions, scores.references, strict=True
            ):
                record = {"id": row_id, "input": question, "prediction": prediction, "answers": golds}
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def score_squad(
    model_path: str | Path,
    squad_file: str | Path,
    qa_input: str | None = None,
    max_source_length: int | None = None,
    max_target_length: int | None = None,
    baseline_answer: str | None = None,
    batch_size: int = 64,
    output_dir: str | Path | None = None,
    num_beams: int | None = None,
    length_penalty: float | None = None,
) -> dict[str, float]:
    """Score a saved AE-LLM folder on every question of a SQuAD file (official JSON or `.qa.jsonl`), with the code
    that scores a training run's validation split: `eval_*` (and `eval_baseline_*` with a `baseline_answer`, e.g. the
    most frequent answer of the train data). `qa_input`, the lengths and the decoding (`answer_num_beams`,
    `answer_length_penalty`; greedy without them) default to the folder's `recipe.yaml`; with `output_dir`,
    `predictions.jsonl` goes there.

        score_squad("outputs/aellm-pointer-finetune", "withheld-articles.json")
    """
    folder = Path(model_path)
    recipe_file = folder / "recipe.yaml"
    recipe = (yaml.safe_load(recipe_file.read_text(encoding="utf-8")) or {}) if recipe_file.is_file() else {}
    qa_input = qa_input or recipe.get("qa_input", "question")
    pairs = Dataset.from_list(read_squad_file(squad_file, qa_input))
    model: Any = AutoModelForSeq2SeqLM.from_pretrained(folder, use_safetensors=True)
    tokenizer = load_tokenizer(str(folder))
    context = model.config.max_position_embeddings
    scorer = AnswerScorer(
        validation=pairs,
        baseline_answer=baseline_answer or "",
        max_source_length=max_source_length or recipe.get("max_source_length") or context,
        max_target_length=max_target_length or recipe.get("max_target_length") or context,
        batch_size=batch_size,
        output_dir=Path(output_dir) if output_dir is not None else folder,
        show_progress=False,
        num_beams=num_beams or recipe.get("answer_num_beams") or 1,
        length_penalty=length_penalty if length_penalty is not None else recipe.get("answer_length_penalty", 1.0),
    )
    with eval_mode(model):
        scores = scorer.score(model, tokenizer, pairs)
    metrics = {f"eval_{key}": value for key, value in scores.metrics.items()}
    if baseline_answer is not None:
        baseline = answer_scores([baseline_answer] * len(scores.references), scores.references)
        metrics.update({f"eval_baseline_{key}": value for key, value in baseline.items()})
    if output_dir is not None:
        scorer.write_predictions("predictions.jsonl", pairs, scores)
    return metrics


def _latent_note(metrics: dict[str, float]) -> str:
    if "latent_mse" not in metrics:
        return ""
    return f"; latent MSE {metrics['latent_mse']:.5f} ({metrics['latent_relative_mse']:.4f} of the latents' variance)"


def load_question_answer_pairs(data_args: QuestionAnsweringDataArguments) -> DatasetDict:
    """The SQuAD pairs a recipe's data keys name, split by article (train / validation)."""
    return load_squad(
        data_args.dataset_name,
        data_args.dataset_config_name,
        data_args.train_file,
        data_args.validation_file,
        data_args.validation_split_percentage,
        data_args.qa_input,
        articles=data_args.articles,
        validation_articles=data_args.validation_articles,
    )


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
    if data_args.answer_num_beams < 1:
        raise LmforgeError(f"answer_num_beams must be 1 (greedy) or more, got {data_args.answer_num_beams}")
    raw = load_question_answer_pairs(data_args)
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
    if phase == "autoencoder":
        train_dataset = reconstruction_dataset(tokenizer, train_pairs, max_source_length, max_target_length)
        eval_dataset = reconstruction_dataset(tokenizer, validation_pairs, max_source_length, max_target_length)
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
        baseline_answer=most_frequent_answer(list(train_pairs["target"])),
        max_source_length=max_source_length,
        max_target_length=max_target_length,
        batch_size=training_args.per_device_eval_batch_size,
        output_dir=Path(str(training_args.output_dir)),
        show_progress=not training_args.disable_tqdm,
        train=limit_rows(train_pairs, data_args.train_score_samples) if data_args.train_score_samples > 0 else None,
        num_beams=data_args.answer_num_beams,
        length_penalty=data_args.answer_length_penalty,
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
    "load_question_answer_pairs",
    "most_frequent_answer",
    "reconstruction_accuracy",
    "reconstruction_dataset",
    "score_squad",
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
