"""LoRA adapters (PEFT) for every lmforge model, and a routed mixture of adapters.

`import lmforge` registers a default `target_modules` for each lmforge `model_type` in PEFT's
`TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING`, so `get_peft_model(model, LoraConfig(task_type=...))` works
without naming modules:

| model_type | task_type | default LoRA targets |
| --- | --- | --- |
| `aksis`, `char_transformer` | `CAUSAL_LM` | attention `qkv_proj`, `o_proj` and MLP `up_proj`, `down_proj` of every layer |
| `ae_llm` | `SEQ_2_SEQ_LM` | the latent path of the head's `model` (or of a bare `AELLMModel`), as LoRA has no GRU layer: `model.encoder.to_latent`, `model.decoder.latent_to_state` (the decoder's initial state) and the Thinking Net's (`model.transition`) memory (`query`, `out_proj`), expert and gated-block MLPs (`gate_proj`, `up_proj`, `down_proj`); not the GRUs, the MoE router, the hyper-adapter or `lm_head` (PEFT would save the whole head with every adapter) |
| `latent_reasoner` | `SEQ_2_SEQ_LM` | in the head's `model` (or a bare `LatentReasonerModel`): the idea MLPs (`model.compression`, `model.middle`, `model.prefix_adapter`) and the decoder's attention projections (`c_attn`, `qkv_proj`, `q_proj`, `k_proj`, `v_proj`, `o_proj`, `query_key_value` under `model.decoder`); not the encoder or `lm_head` |

A recipe's `peft:` section (`r`, `lora_alpha`, `lora_dropout`, `target_modules`, or any other `LoraConfig` field)
becomes a `LoraConfig` with `lora_config`; `apply_peft` wraps a model with it.

The routed mixture keeps one LoRA adapter per task on one base model, and a small router (`AdapterRouter`: layer norm
and a linear layer over the mean of the base model's token embeddings) picks the adapter of each input.
`RoutedAdapterModel` runs a batch with a different adapter per row through PEFT's mixed-adapter batches
(`adapter_names=`), so the adapters themselves are plain PEFT adapters.
"""

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import torch
import yaml
from datasets import Dataset, concatenate_datasets
from peft import LoraConfig, PeftModel, TaskType, get_peft_model
from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoTokenizer, PreTrainedModel, Trainer, TrainingArguments, default_data_collator
from transformers.modeling_outputs import SequenceClassifierOutput

from .errors import LmforgeError

logger = logging.getLogger(__name__)

_DECODER_ATTENTION = "c_attn|qkv_proj|q_proj|k_proj|v_proj|o_proj|query_key_value"

# model_type -> PEFT target_modules: a list of module-name suffixes, or one regular expression (full match)
LORA_TARGET_MODULES: dict[str, list[str] | str] = {
    "aksis": ["qkv_proj", "o_proj", "up_proj", "down_proj"],
    "char_transformer": ["qkv_proj", "o_proj", "up_proj", "down_proj"],
    "ae_llm": (
        r"(model\.)?(encoder\.to_latent|decoder\.latent_to_state|transition\.memory\.(query|out_proj)"
        r"|transition\.(moe\.experts\.\d+|blocks\.\d+\.mlp)\.(gate_proj|up_proj|down_proj))"
    ),
    "latent_reasoner": (
        rf"(model\.)?((compression|middle)\.layers\.\d+|prefix_adapter\.proj|decoder\..*\.({_DECODER_ATTENTION}))"
    ),
}

PEFT_TASK_TYPES: dict[str, TaskType] = {
    "aksis": TaskType.CAUSAL_LM,
    "char_transformer": TaskType.CAUSAL_LM,
    "ae_llm": TaskType.SEQ_2_SEQ_LM,
    "latent_reasoner": TaskType.SEQ_2_SEQ_LM,
}

ADAPTER_CONFIG_NAME = "adapter_config.json"
ADAPTER_WEIGHTS_NAME = "adapter_model.safetensors"
ROUTER_WEIGHTS_NAME = "router.safetensors"
ROUTER_CONFIG_NAME = "router_config.json"


def register_lora_target_modules() -> None:
    """Add lmforge's default LoRA targets to PEFT's per-model_type mapping (done by `import lmforge`)."""
    TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING.update(LORA_TARGET_MODULES)


def _one_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[-1] if lines else type(err).__name__


def lora_config(model_type: str, peft: dict[str, Any] | str | None = None) -> LoraConfig:
    """The `LoraConfig` of a recipe's `peft:` section for `model_type` (task type and default targets filled in)."""
    section: Any = yaml.safe_load(peft) if isinstance(peft, str) else dict(peft or {})
    if not isinstance(section, dict):
        raise LmforgeError(f"peft must be a mapping like {{r: 8, lora_alpha: 16}}, got {peft!r}")
    if model_type not in PEFT_TASK_TYPES:
        raise LmforgeError(f"no LoRA defaults for model_type '{model_type}'; choose one of {sorted(PEFT_TASK_TYPES)}")
    known = {f.name for f in dataclasses.fields(LoraConfig) if f.init}
    unknown = sorted(set(section) - known)
    if unknown:
        main_keys = "r, lora_alpha, lora_dropout, target_modules"
        raise LmforgeError(f"peft: unknown key '{unknown[0]}' (LoRA keys: {main_keys}, or another LoraConfig field)")
    section.setdefault("task_type", PEFT_TASK_TYPES[model_type])
    try:
        return LoraConfig(**section)
    except (TypeError, ValueError) as err:
        raise LmforgeError(f"peft: {_one_line(err)}") from None


def apply_peft(model: PreTrainedModel, peft: dict[str, Any] | str | None = None) -> PeftModel:
    """Wrap `model` with a LoRA adapter from a recipe's `peft:` section; only the adapter stays trainable."""
    config = lora_config(model.config.model_type, peft)
    try:
        peft_model = get_peft_model(model, config)
    except ValueError as err:
        raise LmforgeError(f"peft: {_one_line(err)}") from None
    trainable, total = peft_model.get_nb_trainable_parameters()
    logger.info(
        "LoRA r=%d alpha=%s on %s: %d trainable of %d parameters (%.2f%%)",
        config.r,
        config.lora_alpha,
        sorted(config.target_modules) if isinstance(config.target_modules, set) else config.target_modules,
        trainable,
        total,
        100 * trainable / total,
    )
    return peft_model


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameters, shared (tied) tensors counted once."""
    if isinstance(model, PeftModel):
        trainable, total = model.get_nb_trainable_parameters()
        return int(trainable), int(total)
    unique = {id(p): p for p in model.parameters()}.values()
    return sum(p.numel() for p in unique if p.requires_grad), sum(p.numel() for p in unique)


def is_adapter_folder(path: str | Path) -> bool:
    """A folder saved from a PEFT model: `adapter_config.json` and no full model `config.json`."""
    path = Path(path)
    return (path / ADAPTER_CONFIG_NAME).is_file() and not (path / "config.json").is_file()


def load_adapter_model(path: str | Path, device: str | None = None, **model_kwargs: Any) -> tuple[Any, Any]:
    """A saved LoRA adapter on top of its saved base model (`base_model_name_or_path` of the adapter config).

    Returns (PeftModel, tokenizer); the tokenizer is the adapter folder's when it has one, else the base model's.
    """
    from .generation import load_model_and_tokenizer  # (generation imports this module)

    path = Path(path)
    try:
        adapter_config = json.loads((path / ADAPTER_CONFIG_NAME).read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise LmforgeError(f"{path / ADAPTER_CONFIG_NAME} is not valid JSON ({err.msg})") from None
    if not (path / ADAPTER_WEIGHTS_NAME).is_file():
        raise LmforgeError(f"{path} has no {ADAPTER_WEIGHTS_NAME}; lmforge loads adapters from safetensors only")
    base_path = adapter_config.get("base_model_name_or_path")
    if not base_path or not Path(base_path).is_dir():
        raise LmforgeError(
            f"the adapter in {path} was trained on the base model '{base_path}', which is not a folder here; "
            "run from the folder the fine-tuning ran in, or fix base_model_name_or_path in its adapter_config.json"
        )
    base_model, tokenizer = load_model_and_tokenizer(base_path, device, **model_kwargs)
    if (path / "tokenizer_config.json").is_file():
        tokenizer = AutoTokenizer.from_pretrained(str(path))
    try:
        model = PeftModel.from_pretrained(base_model, str(path))
    except Exception as err:
        raise LmforgeError(f"could not load the adapter in {path}: {_one_line(err)}") from None
    return model.eval(), tokenizer


# --------------------------------------------------------------------------------------------------------------------
# Routed mixture of adapters


@torch.no_grad()
def mean_token_embedding(
    model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """The router's input: the mean of the model's input embeddings over the real tokens. (B, T) -> (B, H)"""
    embeddings: Any = model.get_input_embeddings()
    vectors = embeddings(input_ids.to(embeddings.weight.device)).float()  # (B, T, H)
    if attention_mask is None:
        return vectors.mean(dim=1)
    mask = attention_mask.to(vectors.device).unsqueeze(-1).float()  # (B, T, 1)
    return (vectors * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


class AdapterRouter(nn.Module):
    """Picks one adapter per input: layer norm and a linear layer over the mean token embedding (`features`).

    Trained as a classifier (labels = the index of each input's task in `adapter_names`), e.g. by the `Trainer`.
    """

    def __init__(self, hidden_size: int, adapter_names: list[str]) -> None:
        super().__init__()
        if len(adapter_names) < 2:
            raise LmforgeError(f"a router needs at least two adapters, got {adapter_names}")
        self.hidden_size = hidden_size
        self.adapter_names = list(adapter_names)
        self.norm = nn.LayerNorm(hidden_size)
        self.classifier = nn.Linear(hidden_size, len(adapter_names))

    def forward(self, features: torch.Tensor, labels: torch.Tensor | None = None) -> SequenceClassifierOutput:
        logits = self.classifier(self.norm(features.float()))  # (B, H) -> (B, n_adapters)
        loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)

    @classmethod
    def fit(cls, model: Any, inputs: dict[str, Dataset], args: TrainingArguments) -> tuple["AdapterRouter", float]:
        """A router for the adapters named by `inputs` (adapter name -> rows with `input_ids` of its task), trained
        by the `Trainer` to tell the tasks apart from `model`'s mean token embeddings; (router, training seconds)."""
        names = list(inputs)
        parts = []
        for label, name in enumerate(names):
            rows = inputs[name]
            features = torch.cat(
                [
                    mean_token_embedding(model, torch.tensor(rows[start : start + 64]["input_ids"]))
                    for start in range(0, rows.num_rows, 64)
                ]
            )
            parts.append(Dataset.from_dict({"features": features.tolist(), "labels": [label] * rows.num_rows}))
        router = cls(int(features.shape[-1]), names)
        dataset = concatenate_datasets(parts).shuffle(seed=args.seed)
        trainer = Trainer(model=router, args=args, train_dataset=dataset, data_collator=default_data_collator)
        result = trainer.train()
        return router.eval(), float(result.metrics.get("train_runtime", 0.0))

    def save_pretrained(self, path: str | Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(path / ROUTER_WEIGHTS_NAME))
        config = {"hidden_size": self.hidden_size, "adapter_names": self.adapter_names}
        (path / ROUTER_CONFIG_NAME).write_text(json.dumps(config, indent=2), encoding="utf-8")

    @classmethod
    def from_pretrained(cls, path: str | Path) -> "AdapterRouter":
        path = Path(path)
        if not (path / ROUTER_CONFIG_NAME).is_file() or not (path / ROUTER_WEIGHTS_NAME).is_file():
            raise LmforgeError(f"{path} has no saved router ({ROUTER_CONFIG_NAME} and {ROUTER_WEIGHTS_NAME})")
        config = json.loads((path / ROUTER_CONFIG_NAME).read_text(encoding="utf-8"))
        router = cls(config["hidden_size"], config["adapter_names"])
        router.load_state_dict(load_file(str(path / ROUTER_WEIGHTS_NAME)))
        return router.eval()


class RoutedAdapterModel(nn.Module):
    """A PEFT model holding one LoRA adapter per task, and a router choosing the adapter of each input row.

    `forward` and `generate` take the usual arguments; each row runs with its routed adapter (PEFT mixed-adapter
    batches), so the model is for evaluation and generation, not for training (train the adapters and the router
    separately).
    """

    # The Trainer must take the wrapped model's own mean token loss as it is (as for the lmforge models), not pass
    # `num_items_in_batch` through `**kwargs` to renormalise it.
    accepts_loss_kwargs = False

    def __init__(self, peft_model: PeftModel, router: AdapterRouter) -> None:
        super().__init__()
        missing = set(router.adapter_names) - set(peft_model.peft_config)
        if missing:
            raise LmforgeError(f"the router names adapters the model does not have: {sorted(missing)}")
        self.peft_model = peft_model
        self.router = router

    @property
    def config(self) -> Any:
        return self.peft_model.config

    @property
    def device(self) -> torch.device:
        return self.peft_model.device

    def route(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> list[str]:
        """The adapter name chosen for each row of the batch."""
        features = mean_token_embedding(self.peft_model, input_ids, attention_mask)
        with torch.no_grad():
            choice = self.router(features.to(self.router.classifier.weight.device)).logits.argmax(dim=-1)
        return [self.router.adapter_names[i] for i in choice.tolist()]

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> Any:
        names = self.route(input_ids, attention_mask)
        return self.peft_model(
            input_ids=input_ids, attention_mask=attention_mask, labels=labels, adapter_names=names, **kwargs
        )

    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs: Any) -> Any:
        names = self.route(input_ids, attention_mask)
        generate: Any = self.peft_model.generate
        return generate(input_ids=input_ids, attention_mask=attention_mask, adapter_names=names, **kwargs)

    def save_pretrained(self, path: str | Path) -> None:
        """Each adapter in `path/<adapter name>/` (PEFT format, safetensors) and the router in `path/`."""
        path = Path(path)
        for name in self.router.adapter_names:
            self.peft_model.save_pretrained(str(path / name), selected_adapters=[name])
            # PEFT writes adapters other than "default" to a subfolder of their name; keep one level.
            nested = path / name / name
            if nested.is_dir():
                for item in nested.iterdir():
                    item.replace(path / name / item.name)
                nested.rmdir()
        self.router.save_pretrained(path)

    @classmethod
    def from_pretrained(cls, base_model: PreTrainedModel, path: str | Path) -> "RoutedAdapterModel":
        """Load the router and its adapters saved by `save_pretrained` on top of `base_model`."""
        router = AdapterRouter.from_pretrained(path)
        first, *others = router.adapter_names
        peft_model = PeftModel.from_pretrained(base_model, str(Path(path) / first), adapter_name=first)
        for name in others:
            peft_model.load_adapter(str(Path(path) / name), adapter_name=name)
        return cls(peft_model, router).eval()


__all__ = [
    "LORA_TARGET_MODULES",
    "PEFT_TASK_TYPES",
    "AdapterRouter",
    "RoutedAdapterModel",
    "apply_peft",
    "count_parameters",
    "is_adapter_folder",
    "load_adapter_model",
    "lora_config",
    "mean_token_embedding",
    "register_lora_target_modules",
]
