"""Learning from feedback (`objective: dpo`): TRL's `DPOTrainer` on the judgements of the demo's side-by-side tab.

    lmforge dpo recipes/aksis/dpo.yaml --preference_file feedback.jsonl

The data is a preference file (`lmforge.evaluation.preferences`: JSON lines of `prompt`, `chosen`, `rejected`), in
TRL's standard (plain-text) preference format: the chosen and rejected texts continue the prompt, each followed by the
end-of-sequence token. LoRA is the default (`peft: {r: 8, lora_alpha: 16}` with the model type's targets): the
reference model is then the same model with the adapter switched off, so only one copy is held; `peft: none` trains
every weight against a frozen copy.

Causal models only (Aksis, CharTransformer): TRL's `DPOTrainer` (1.x) scores completions with a decoder-only
forward pass and has no encoder-decoder path, so AE-LLM and LatentReasoner are refused with one sentence.
"""

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from datasets import DatasetDict, load_dataset
from transformers import AutoModelForCausalLM, set_seed
from trl import DPOConfig, DPOTrainer

from ..adapters import apply_peft, lora_config
from ..errors import LmforgeError
from ..loading import load_pretrained
from ..models import get_spec
from .arguments import ModelArguments, OutputDirArguments
from .builders import limit_rows, load_tokenizer
from .recipe import parse_objective_recipe
from .run import check_output_dir, resolve_checkpoint
from .trainer import JsonTrainingArgumentsMixin, train_evaluate_save

logger = logging.getLogger("lmforge")

DEFAULT_LORA = {"r": 8, "lora_alpha": 16, "lora_dropout": 0.0}
COLUMNS = ["prompt", "chosen", "rejected"]


@dataclass
class PreferenceDataArguments:
    preference_file: str | None = field(
        default=None, metadata={"help": "JSON lines of prompt, chosen, rejected (the demo's judgements)."}
    )
    validation_file: str | None = field(default=None, metadata={"help": "Held-out judgements (same format)."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Keep at most N judgements."})


@dataclass
class PreferenceDPOConfig(DPOConfig, OutputDirArguments):
    """TRL's `DPOConfig` with lmforge's defaults (no reporting service, 32-bit) and the output-dir guard."""

    report_to: Any = field(default="none", metadata={"help": "Where to report the logs (none)."})
    # 32-bit unless the recipe asks for bf16, as in every lmforge recipe (TRL would default to bf16 and fail on CPU)
    bf16: bool = field(default=False, metadata={"help": "bf16 mixed precision (needs a GPU that has it)."})


def load_preferences(path: str) -> Any:
    if not Path(path).is_file():
        raise LmforgeError(f"preference file not found: {path}")
    if not Path(path).read_bytes().strip():
        raise LmforgeError(f"{path} holds no judgements yet; judge some pairs in lmforge demo first")
    dataset = load_dataset("json", data_files=path, split="train")
    missing = [column for column in COLUMNS if column not in dataset.column_names]
    if missing:
        raise LmforgeError(f"{path} needs the columns prompt, chosen and rejected; missing {', '.join(missing)}")
    return dataset.select_columns(COLUMNS)


def peft_section(peft: Any) -> dict[str, Any] | None:
    """The recipe's `peft` (None: the default LoRA; "none" / false: every weight trains)."""
    if peft is None:
        return dict(DEFAULT_LORA)
    if peft in ("none", "false", False):
        return None
    loaded = yaml.safe_load(peft) if isinstance(peft, str) else peft
    if loaded in ("none", False, None):
        return None
    if not isinstance(loaded, dict):
        raise LmforgeError(f"peft must be a mapping like {{r: 8, lora_alpha: 16}} or none, got {peft!r}")
    return dict(loaded)


class _DPOTrainer(JsonTrainingArgumentsMixin, DPOTrainer):
    """TRL's `DPOTrainer`, saving its arguments as JSON (`training_args.json`), never as a pickle, like every lmforge run."""


def build_dpo_trainer(
    model_args: ModelArguments, data_args: PreferenceDataArguments, config: PreferenceDPOConfig
) -> DPOTrainer:
    """TRL's `DPOTrainer` for a recipe: the saved causal model (with LoRA unless `peft: none`) and the judgements."""
    spec = get_spec(model_args.model_type)
    if spec.prompt_style != "continue":
        raise LmforgeError(
            f"dpo needs a causal model (Aksis, CharTransformer): TRL's DPOTrainer has no encoder-decoder path, and "
            f"{model_args.model_type} is an encoder-decoder"
        )
    if not data_args.preference_file:
        raise LmforgeError("set preference_file: the JSON lines of prompt, chosen, rejected (lmforge demo writes it)")
    peft = peft_section(model_args.peft)
    if peft is not None:
        lora_config(model_args.model_type, peft)
    tokenizer = load_tokenizer(model_args.tokenizer_name_or_path or str(model_args.model_name_or_path))
    model: Any = load_pretrained(AutoModelForCausalLM, str(model_args.model_name_or_path), "a causal model")
    context = int(getattr(model.config, "max_position_embeddings", 0) or 0)
    if context and (config.max_length is None or config.max_length > context):
        config.max_length = context
    if peft is not None:
        model = apply_peft(model, peft)
    train = limit_rows(load_preferences(data_args.preference_file), data_args.max_train_samples)
    data = DatasetDict(train=train)
    if data_args.validation_file:
        data["validation"] = load_preferences(data_args.validation_file)
    else:
        config.eval_strategy = "no"
    logger.info("DPO on %d judgements (%s)", train.num_rows, "LoRA" if peft is not None else "every weight")
    return _DPOTrainer(
        model=model,
        args=config,
        train_dataset=data["train"],
        eval_dataset=data.get("validation"),
        processing_class=tokenizer,
    )


@torch.no_grad()
def completion_logprob(model: Any, tokenizer: Any, prompt: str, completion: str) -> float:
    """The summed log-probability of `completion` after `prompt` (plain text, no special tokens), as DPO scores it."""
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    ids = tokenizer(prompt + completion, add_special_tokens=False)["input_ids"]
    start = len(prompt_ids)
    inputs = torch.tensor([ids], device=model.device)
    logits = model(input_ids=inputs).logits[0, :-1].float()
    logprobs = torch.log_softmax(logits, dim=-1)
    targets = inputs[0, 1:]
    picked = logprobs.gather(1, targets.unsqueeze(1)).squeeze(1)
    return float(picked[start - 1 :].sum())


def run_dpo(recipe: dict[str, Any], source: str = "recipe") -> dict[str, float]:
    """Train with DPO, evaluate when there are held-out judgements, save (adapter or model, and the tokenizer)."""
    model_args, data_args, config = parse_objective_recipe(
        recipe, (ModelArguments, PreferenceDataArguments, PreferenceDPOConfig), source
    )
    check_output_dir(config)
    set_seed(config.seed)
    resume = resolve_checkpoint(config)
    metrics = train_evaluate_save(build_dpo_trainer(model_args, data_args, config), recipe, resume)
    logger.info("DPO done; model saved in %s", config.output_dir)
    return metrics


__all__ = [
    "DEFAULT_LORA",
    "PreferenceDPOConfig",
    "PreferenceDataArguments",
    "build_dpo_trainer",
    "completion_logprob",
    "load_preferences",
    "peft_section",
    "run_dpo",
]
