"""Chat tuning (`objective: sft`): a saved causal model learns to answer in turn, with TRL's `SFTTrainer`.

    lmforge sft recipes/aksis/chat_sft.yaml           # or: lmforge train recipes/aksis/chat_sft.yaml
    lmforge chat --model-path outputs/aksis-chat

The data are conversations (`messages`: a list of {role, content}) rendered by the tokenizer's chat template, the
one `lmforge chat` uses, and the loss is on the assistant turns only (`assistant_only_loss`): TRL masks every other
token with the `{% generation %}` markers of the template. Aksis's template ("<s>role: text</s>" lines) and the plain
"role: text" template of the inference layer get their marked twins here (`TRAINING_TEMPLATES`); they render the
same text, so the saved tokenizer (which keeps the marked one) chats exactly as before. The assistant's text and its
end-of-turn token are trained; the "assistant: " header is the generation prompt and is not.

Data (`ChatDataArguments`): `train_file` / `validation_file` (JSON lines with a `messages` column), or
`dialogsum_file`: DialogSum dialogues, #Person1# as the user and #Person2# as the assistant (consecutive turns of one
speaker are joined; a dialogue starts at its first user turn and ends at its last assistant turn; dialogues with a
third speaker are left out). Without a validation file, `validation_split_percentage` of the dialogues (whole
dialogues, a seeded split) are held out. Sequences longer than `max_length` (at most the model's context) keep
their start.

LoRA: a `peft:` section, as in any lmforge recipe (`lmforge.adapters.apply_peft`); output_dir then holds the adapter.
"""

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datasets import Dataset, DatasetDict, load_dataset
from transformers import AutoModelForCausalLM, set_seed
from trl import SFTConfig, SFTTrainer

from ..adapters import apply_peft, lora_config
from ..errors import LmforgeError
from ..inference import PLAIN_CHAT_TEMPLATE
from ..loading import load_pretrained
from ..models.aksis.tokenization_aksis import CHAT_TEMPLATE as AKSIS_CHAT_TEMPLATE
from .arguments import ModelArguments, OutputDirArguments
from .builders import limit_rows, load_tokenizer
from .recipe import parse_objective_recipe
from .run import check_output_dir, resolve_checkpoint
from .trainer import JsonTrainingArgumentsMixin, train_evaluate_save

logger = logging.getLogger("lmforge")

AKSIS_TRAINING_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}"
    "{{ bos_token + 'assistant: ' }}{% generation %}{{ message['content'] + eos_token }}{% endgeneration %}{{ '\n' }}"
    "{% else %}{{ bos_token + message['role'] + ': ' + message['content'] + eos_token + '\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ bos_token + 'assistant: ' }}{% endif %}"
)
PLAIN_TRAINING_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}"
    "{{ 'assistant: ' }}{% generation %}{{ message['content'] + '\n' }}{% endgeneration %}"
    "{% else %}{{ message['role'] + ': ' + message['content'] + '\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'assistant: ' }}{% endif %}"
)
# A template lmforge knows -> the same template with `{% generation %}` markers around the assistant's text.
TRAINING_TEMPLATES = {AKSIS_CHAT_TEMPLATE: AKSIS_TRAINING_TEMPLATE, PLAIN_CHAT_TEMPLATE: PLAIN_TRAINING_TEMPLATE}
SPEAKER = re.compile(r"^#(Person\d+)#:\s*(.*)$")
ROLES = {"Person1": "user", "Person2": "assistant"}


@dataclass
class ChatDataArguments:
    """Where the conversations come from (see the module docstring)."""

    train_file: str | None = field(default=None, metadata={"help": "JSON lines with a `messages` column."})
    validation_file: str | None = field(default=None, metadata={"help": "JSON lines with a `messages` column."})
    dialogsum_file: str | None = field(
        default=None,
        metadata={"help": "DialogSum JSON lines (`dialogue`): #Person1# is the user, #Person2# the assistant."},
    )
    validation_split_percentage: int = field(default=10, metadata={"help": "Dialogues held out (percent)."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Keep at most N training conversations."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Keep at most N validation conversations."})


@dataclass
class ChatSFTConfig(SFTConfig, OutputDirArguments):
    """TRL's `SFTConfig` with lmforge's defaults (the loss on assistant turns only, no reporting service, 32-bit) and
    the output-dir guard."""

    assistant_only_loss: bool = field(default=True, metadata={"help": "Loss on the assistant's tokens only."})
    report_to: Any = field(default="none", metadata={"help": "Where to report the logs (none)."})
    # 32-bit unless the recipe asks for bf16, as in every lmforge recipe (TRL would default to bf16 and fail on CPU)
    bf16: bool = field(default=False, metadata={"help": "bf16 mixed precision (needs a GPU that has it)."})


def dialogsum_messages(dialogue: str) -> list[dict[str, str]] | None:
    """One DialogSum dialogue as user/assistant turns (None when it has a third speaker or no exchange)."""
    turns: list[dict[str, str]] = []
    for line in dialogue.splitlines():
        match = SPEAKER.match(line.strip())
        if match is None:
            if turns and line.strip():
                turns[-1]["content"] += " " + line.strip()
            continue
        role = ROLES.get(match[1])
        if role is None:
            return None
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"] += " " + match[2]
        else:
            turns.append({"role": role, "content": match[2]})
    while turns and turns[0]["role"] != "user":
        turns.pop(0)
    while turns and turns[-1]["role"] != "assistant":
        turns.pop()
    return turns or None


def load_dialogsum(path: str | Path) -> Dataset:
    path = Path(path)
    if not path.is_file():
        raise LmforgeError(f"dialogsum_file not found: {path}")
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            dialogue = json.loads(line)["dialogue"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise LmforgeError(f"{path} line {number}: expected a JSON object with a 'dialogue'") from None
        messages = dialogsum_messages(dialogue)
        if messages:
            rows.append({"messages": messages})
    if not rows:
        raise LmforgeError(f"{path} holds no two-speaker dialogue")
    return Dataset.from_list(rows)


def _messages_file(path: str) -> Dataset:
    if not Path(path).is_file():
        raise LmforgeError(f"chat data file not found: {path}")
    dataset = load_dataset("json", data_files=path, split="train")
    if "messages" not in dataset.column_names:
        raise LmforgeError(f"{path} needs a 'messages' column (a list of {{role, content}} per line)")
    return dataset.select_columns(["messages"])


def load_chat_data(data_args: ChatDataArguments, seed: int) -> DatasetDict:
    """train / validation conversations (see the module docstring)."""
    if data_args.train_file:
        train = _messages_file(data_args.train_file)
    elif data_args.dialogsum_file:
        train = load_dialogsum(data_args.dialogsum_file)
    else:
        raise LmforgeError("give the chat data: train_file (JSON lines with messages) or dialogsum_file")
    if data_args.validation_file:
        data = DatasetDict(train=train, validation=_messages_file(data_args.validation_file))
    elif data_args.validation_split_percentage > 0 and train.num_rows >= 2:
        split = train.train_test_split(test_size=data_args.validation_split_percentage / 100, seed=seed)
        data = DatasetDict(train=split["train"], validation=split["test"])
    else:
        data = DatasetDict(train=train)
    data["train"] = limit_rows(data["train"], data_args.max_train_samples)
    if "validation" in data:
        data["validation"] = limit_rows(data["validation"], data_args.max_eval_samples)
    return data


def training_template(tokenizer: Any) -> str:
    """The tokenizer's chat template with `{% generation %}` markers (a template lmforge knows, or one that has
    them); a template without them is one sentence."""
    template = tokenizer.chat_template or PLAIN_CHAT_TEMPLATE
    if "{% generation %}" in template:
        return str(template)
    if template in TRAINING_TEMPLATES:
        return TRAINING_TEMPLATES[template]
    raise LmforgeError(
        "the tokenizer's chat template has no {% generation %} markers around the assistant's text, which "
        "assistant_only_loss needs; add them, or set assistant_only_loss: false"
    )


class _SFTTrainer(JsonTrainingArgumentsMixin, SFTTrainer):
    """TRL's `SFTTrainer`, saving its arguments as JSON (`training_args.json`), never as a pickle, like every lmforge run."""


def build_sft_trainer(model_args: ModelArguments, data_args: ChatDataArguments, config: ChatSFTConfig) -> SFTTrainer:
    """TRL's `SFTTrainer` for a recipe: the saved model (with LoRA if `peft` is set), its tokenizer with the marked
    chat template, and the conversations."""
    if model_args.peft is not None:
        lora_config(model_args.model_type, model_args.peft)  # a wrong peft section fails before any work is done
    tokenizer = load_tokenizer(model_args.tokenizer_name_or_path or str(model_args.model_name_or_path))
    if config.assistant_only_loss:
        tokenizer.chat_template = training_template(tokenizer)
    attn = {"attn_implementation": model_args.attn_implementation} if model_args.attn_implementation else {}
    model: Any = load_pretrained(AutoModelForCausalLM, str(model_args.model_name_or_path), "a causal model", **attn)
    context = int(getattr(model.config, "max_position_embeddings", 0) or 0)
    if context and (config.max_length is None or config.max_length > context):
        config.max_length = context
    if model_args.peft is not None:
        model = apply_peft(model, model_args.peft)
    data = load_chat_data(data_args, config.seed)
    logger.info(
        "Chat tuning on %d conversations (%d held out), loss on %s",
        data["train"].num_rows,
        data["validation"].num_rows if "validation" in data else 0,
        "the assistant's turns" if config.assistant_only_loss else "every token",
    )
    if "validation" not in data:
        config.eval_strategy = "no"
    return _SFTTrainer(
        model=model,
        args=config,
        train_dataset=data["train"],
        eval_dataset=data.get("validation"),
        processing_class=tokenizer,
    )


def run_sft(recipe: dict[str, Any], source: str = "recipe") -> dict[str, float]:
    """Chat-tune, evaluate and save (model or adapter, and the tokenizer with its chat template) in output_dir."""
    model_args, data_args, config = parse_objective_recipe(
        recipe, (ModelArguments, ChatDataArguments, ChatSFTConfig), source
    )
    check_output_dir(config)
    set_seed(config.seed)
    resume = resolve_checkpoint(config)
    metrics = train_evaluate_save(build_sft_trainer(model_args, data_args, config), recipe, resume)
    output_dir = config.output_dir
    logger.info("Chat-tuned model saved in %s; try it with: lmforge chat --model-path %s", output_dir, output_dir)
    return metrics


__all__ = [
    "AKSIS_TRAINING_TEMPLATE",
    "PLAIN_TRAINING_TEMPLATE",
    "TRAINING_TEMPLATES",
    "ChatDataArguments",
    "ChatSFTConfig",
    "build_sft_trainer",
    "dialogsum_messages",
    "load_chat_data",
    "load_dialogsum",
    "run_sft",
    "training_template",
]
