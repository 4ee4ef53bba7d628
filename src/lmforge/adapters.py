"""LoRA adapters (PEFT) for every lmforge model.

Each architecture's spec (`lmforge.models.<name>.SPEC`) names its PEFT task type and default LoRA `target_modules`.
Once peft is imported (lmforge never imports it just for this), they are in PEFT's per-model_type table
`TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING` (see `lmforge.models.add_lora_defaults`), so
`get_peft_model(model, LoraConfig(task_type=...))` works without naming modules:

| model_type | task_type | default LoRA targets |
| --- | --- | --- |
| `aksis`, `char_transformer` | `CAUSAL_LM` | attention `qkv_proj`, `o_proj` and MLP `up_proj`, `down_proj` of every layer |
| `ae_llm` | `SEQ_2_SEQ_LM` | the latent path of the head's `model` (or of a bare `AELLMModel`), as LoRA has no GRU layer: `model.encoder.to_latent`, `model.decoder.latent_to_state` (the decoder's initial state) and the Thinking Net's (`model.transition`) memory (`query`, `out_proj`), expert and gated-block MLPs (`gate_proj`, `up_proj`, `down_proj`); not the GRUs, the MoE router, the hyper-adapter or `lm_head` (PEFT would save the whole head with every adapter) |
| `latent_reasoner` | `SEQ_2_SEQ_LM` | in the head's `model` (or a bare `LatentReasonerModel`): the idea MLPs (`model.compression`, `model.middle`, `model.prefix_adapter`) and the decoder's attention projections (`c_attn`, `qkv_proj`, `q_proj`, `k_proj`, `v_proj`, `o_proj`, `query_key_value` under `model.decoder`); not the encoder or `lm_head` |

A recipe's `peft:` section (`r`, `lora_alpha`, `lora_dropout`, `target_modules`, or any other `LoraConfig` field)
becomes a `LoraConfig` with `lora_config`; `apply_peft` wraps a model with it. peft is imported by these functions,
not by this module. The routed mixture of adapters moved to `lmforge.studies.routing`.
"""

import dataclasses
import importlib
import logging
import warnings
from typing import TYPE_CHECKING, Any

import yaml

from .errors import LmforgeError, one_line
from .models import SPECS, get_spec

if TYPE_CHECKING:
    from peft import LoraConfig, PeftModel
    from torch import nn
    from transformers import PreTrainedModel

logger = logging.getLogger(__name__)

# model_type -> PEFT task type name ("CAUSAL_LM", "SEQ_2_SEQ_LM") and default LoRA target_modules (module-name
# suffixes, or one regular expression), from the specs registered so far; `get_spec(model_type)` has the current ones.
PEFT_TASK_TYPES: dict[str, str] = {model_type: spec.peft_task_type for model_type, spec in SPECS.items()}
LORA_TARGET_MODULES: dict[str, list[str] | str] = {t: spec.lora_target_modules for t, spec in SPECS.items()}


def register_lora_target_modules() -> None:
    """Add lmforge's default LoRA targets to PEFT's per-model_type table (imports peft; `import lmforge` does it
    without importing peft, when peft is imported)."""
    import peft.utils.constants  # noqa: F401

    from .models import add_lora_defaults

    add_lora_defaults()


def lora_config(model_type: str, peft: dict[str, Any] | str | None = None) -> "LoraConfig":
    """The `LoraConfig` of a recipe's `peft:` section for `model_type` (task type and default targets filled in)."""
    from peft import LoraConfig

    section: Any = yaml.safe_load(peft) if isinstance(peft, str) else peft
    section = {} if section is None else section
    if not isinstance(section, dict):
        raise LmforgeError(f"peft must be a mapping like {{r: 8, lora_alpha: 16}}, got {peft!r}")
    section = dict(section)
    if model_type not in SPECS:
        raise LmforgeError(f"no LoRA defaults for model_type '{model_type}'; choose one of {sorted(SPECS)}")
    spec = get_spec(model_type)
    known = {f.name for f in dataclasses.fields(LoraConfig) if f.init}
    unknown = sorted(set(section) - known)
    if unknown:
        main_keys = "r, lora_alpha, lora_dropout, target_modules"
        raise LmforgeError(f"peft: unknown key '{unknown[0]}' (LoRA keys: {main_keys}, or another LoraConfig field)")
    section.setdefault("task_type", spec.peft_task_type)
    section.setdefault("target_modules", spec.lora_target_modules)
    try:
        return LoraConfig(**section)
    except (TypeError, ValueError) as err:
        raise LmforgeError(f"peft: {one_line(err)}") from None


def apply_peft(model: "PreTrainedModel", peft: dict[str, Any] | str | None = None) -> "PeftModel":
    """Wrap `model` with a LoRA adapter from a recipe's `peft:` section; only the adapter stays trainable."""
    from peft import get_peft_model

    config = lora_config(model.config.model_type, peft)
    try:
        peft_model = get_peft_model(model, config)
    except ValueError as err:
        raise LmforgeError(f"peft: {one_line(err)}") from None
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


def count_parameters(model: "nn.Module") -> tuple[int, int]:
    """(trainable, total) parameters, shared (tied) tensors counted once."""
    get_nb_trainable_parameters = getattr(model, "get_nb_trainable_parameters", None)  # a PeftModel
    if get_nb_trainable_parameters is not None:
        trainable, total = get_nb_trainable_parameters()
        return int(trainable), int(total)
    unique = {id(p): p for p in model.parameters()}.values()
    return sum(p.numel() for p in unique if p.requires_grad), sum(p.numel() for p in unique)


# Moved names, kept for one release: old name -> (module, name).
_MOVED = {
    "AdapterRouter": ("lmforge.studies.routing", "AdapterRouter"),
    "RoutedAdapterModel": ("lmforge.studies.routing", "RoutedAdapterModel"),
    "mean_token_embedding": ("lmforge.studies.routing", "mean_token_embedding"),
    "ROUTER_CONFIG_NAME": ("lmforge.studies.routing", "ROUTER_CONFIG_NAME"),
    "ROUTER_WEIGHTS_NAME": ("lmforge.studies.routing", "ROUTER_WEIGHTS_NAME"),
    "is_adapter_folder": ("lmforge.loading", "is_adapter_folder"),
    "load_adapter_model": ("lmforge.loading", "load_adapter_model"),
    "ADAPTER_CONFIG_NAME": ("lmforge.loading", "ADAPTER_CONFIG_NAME"),
    "ADAPTER_WEIGHTS_NAME": ("lmforge.loading", "ADAPTER_WEIGHTS_NAME"),
}


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        module, new_name = _MOVED[name]
        warnings.warn(
            f"lmforge.adapters.{name} is deprecated and will be removed in the next release: use {module}.{new_name}",
            FutureWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module(module), new_name)
    raise AttributeError(f"module 'lmforge.adapters' has no attribute {name!r}")


__all__ = [
    "LORA_TARGET_MODULES",
    "PEFT_TASK_TYPES",
    "apply_peft",
    "count_parameters",
    "lora_config",
    "register_lora_target_modules",
]
