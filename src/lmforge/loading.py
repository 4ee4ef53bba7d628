"""Loading a saved model folder, or a LoRA adapter folder on its base, for inference: `(model, processor)`.

The processor is what reads and writes the folder's text (the spec's `processor_class`): the tokenizer of Aksis,
CharTransformer and AE-LLM, the `LatentReasonerProcessor` (encoder and decoder tokenizers) of LatentReasoner. A folder
of a transformers model type loads too, with `AutoTokenizer` and the Auto class its config asks for. Every failure
the user can fix is one `LmforgeError` sentence; weights load from safetensors only.

    from lmforge.loading import load_model_and_processor

    model, processor = load_model_and_processor("outputs/quickstart")
"""

import copy
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer
from transformers.models.auto.configuration_auto import CONFIG_MAPPING
from transformers.processing_utils import ProcessorMixin
from transformers.utils import logging as transformers_logging

from .errors import LmforgeError, one_line
from .models import SPECS, ModelSpec

ADAPTER_CONFIG_NAME = "adapter_config.json"
ADAPTER_WEIGHTS_NAME = "adapter_model.safetensors"


def read_model_type(model_path: str | Path) -> str:
    """The `model_type` of a saved folder, with one-sentence errors for a missing or broken folder."""
    path = Path(model_path)
    if not path.is_dir():
        raise LmforgeError(f"model folder not found: {path} (give the output_dir of a training run)")
    config_file = path / "config.json"
    if not config_file.is_file():
        raise LmforgeError(f"{path} has no config.json; it is not a saved model folder")
    try:
        model_type = json.loads(config_file.read_text(encoding="utf-8")).get("model_type")
    except json.JSONDecodeError as err:
        raise LmforgeError(f"{config_file} is not valid JSON ({err.msg}); re-save the model") from None
    if not model_type:
        raise LmforgeError(f"{config_file} has no model_type")
    return str(model_type)


def check_weight_shapes(model_path: str | Path, auto_class: Any, config: Any, **config_kwargs: Any) -> None:
    """A `config.json` that no longer matches the folder's weights (a width edited by hand, a config copied from
    another run) fails in one sentence naming the first tensor that differs, before transformers prints its load
    report. The model is built from `config` (the folder's, already read) on the meta device (no memory, no weights);
    tensors only one side has are not compared (transformers reports those itself). `config_kwargs` are the caller's
    overrides of the saved config, applied to a copy."""
    path = Path(model_path)
    differ = []
    try:
        config = copy.deepcopy(config)
        config.update({key: value for key, value in config_kwargs.items() if hasattr(config, key)})
        with torch.device("meta"):
            built = {key: tuple(t.shape) for key, t in auto_class.from_config(config).state_dict().items()}
        for file in sorted(path.glob("*.safetensors")):
            with safe_open(str(file), framework="pt") as weights:
                for key in weights.keys():  # noqa: SIM118 (a safetensors file is not a dict)
                    saved = tuple(weights.get_slice(key).get_shape())
                    if key in built and built[key] != saved:
                        differ.append((key, saved, built[key]))
    except Exception:  # a corrupt file or a config transformers refuses: from_pretrained names it
        return
    if differ:
        key, saved, expected = differ[0]
        raise LmforgeError(
            f"{path / 'config.json'} does not match the weights: {key} is {list(saved)} in the weights but "
            f"{list(expected)} by the config ({len(differ)} tensors differ); restore the config.json saved with them"
        )


def load_pretrained(auto_class: Any, name_or_path: str | Path, what: str = "a model", **kwargs: Any) -> Any:
    """`auto_class.from_pretrained(name_or_path, use_safetensors=True, **kwargs)`, each mistake a user can fix in one
    `LmforgeError` sentence: an encoder-decoder where a causal model is needed (transformers would list every causal
    configuration it knows), a config that does not match the weights, and any other loading error."""
    path = Path(str(name_or_path))
    if path.is_dir() and (path / "config.json").is_file():
        try:
            config = AutoConfig.from_pretrained(str(path))
        except Exception as err:
            raise LmforgeError(f"could not load {what} from '{name_or_path}': {one_line(err)}") from None
        if auto_class is AutoModelForCausalLM and getattr(config, "is_encoder_decoder", False):
            raise LmforgeError(
                f"'{name_or_path}' holds an encoder-decoder ({config.model_type}); this needs a causal model "
                f"({', '.join(t for t, spec in SPECS.items() if not spec.is_encoder_decoder)} or a transformers "
                "causal LM)"
            )
        if any(path.glob("*.safetensors")):
            check_weight_shapes(path, auto_class, config, **kwargs)
    try:
        return auto_class.from_pretrained(str(name_or_path), use_safetensors=True, **kwargs)
    except Exception as err:
        raise LmforgeError(f"could not load {what} from '{name_or_path}': {one_line(err)}") from None


def is_adapter_folder(path: str | Path) -> bool:
    """A folder saved from a PEFT model: `adapter_config.json` and no full model `config.json`."""
    path = Path(path)
    return (path / ADAPTER_CONFIG_NAME).is_file() and not (path / "config.json").is_file()


def load_processor(model_path: str | Path, spec: ModelSpec | None = None) -> Any:
    """The processor of a saved folder: the spec's `processor_class` when it is a `ProcessorMixin` (a folder saved
    before it had a `processor_config.json` loads too), else the folder's tokenizer (`AutoTokenizer`)."""
    processor_class = spec.processor_class if spec is not None else None
    try:
        if isinstance(processor_class, type) and issubclass(processor_class, ProcessorMixin):
            return processor_class.from_pretrained(str(model_path))
        return AutoTokenizer.from_pretrained(str(model_path))
    except Exception as err:
        if not any(Path(model_path).rglob("tokenizer*")):  # transformers would talk of converting a slow tokenizer
            raise LmforgeError(
                f"{model_path} has no tokenizer files (tokenizer.json, tokenizer_config.json); copy them from the "
                "training run's output_dir"
            ) from None
        raise LmforgeError(f"could not load the tokenizer of {model_path}: {one_line(err)}") from None


def load_model_and_processor(
    model_path: str | Path, device: str | None = None, **model_kwargs: Any
) -> tuple[Any, Any]:
    """Load a saved folder (weights from safetensors only) with the Auto class of its head, and its processor.

    A LoRA adapter folder (the output_dir of a `peft` run) loads on top of its base model, as a `PeftModel`. The
    model is in eval mode, on `device` when given; `model_kwargs` go to `from_pretrained` (e.g. `dtype`).
    """
    if is_adapter_folder(model_path):
        return load_adapter_model(model_path, device, **model_kwargs)
    model_type = read_model_type(model_path)
    spec = SPECS.get(model_type)
    if spec is None and model_type not in CONFIG_MAPPING:  # else transformers suggests trust_remote_code
        raise LmforgeError(
            f"{Path(model_path) / 'config.json'}: unknown model_type '{model_type}'; lmforge loads its own models "
            f"({', '.join(SPECS)}) and those of transformers"
        )
    transformers_logging.disable_progress_bar()  # loading a small model is instant; keep stderr for errors
    if not any(Path(model_path).glob("*.safetensors")):
        raise LmforgeError(f"{model_path} has no .safetensors weights; lmforge loads weights from safetensors only")
    processor = load_processor(model_path, spec)
    try:
        if spec is not None:
            seq2seq = spec.is_encoder_decoder
        else:
            seq2seq = bool(AutoConfig.from_pretrained(str(model_path)).is_encoder_decoder)
    except Exception as err:
        raise LmforgeError(f"could not load the model in {model_path}: {one_line(err)}") from None
    auto_class: Any = AutoModelForSeq2SeqLM if seq2seq else AutoModelForCausalLM
    model: Any = load_pretrained(auto_class, model_path, "the model", **model_kwargs)
    model.eval()
    if device:
        model.to(device)
    return model, processor


def load_adapter_model(path: str | Path, device: str | None = None, **model_kwargs: Any) -> tuple[Any, Any]:
    """A saved LoRA adapter on top of its saved base model (`base_model_name_or_path` of the adapter config).

    Returns (PeftModel, processor); the processor is the adapter folder's when it has one, else the base model's.
    """
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
    from peft import PeftModel  # only for adapter folders

    base_model, processor = load_model_and_processor(base_path, device, **model_kwargs)
    if (path / "tokenizer_config.json").is_file():
        processor = load_processor(path, SPECS.get(str(base_model.config.model_type)))
    try:
        model = PeftModel.from_pretrained(base_model, str(path))
    except Exception as err:
        raise LmforgeError(f"could not load the adapter in {path}: {one_line(err)}") from None
    return model.eval(), processor


__all__ = [
    "ADAPTER_CONFIG_NAME",
    "ADAPTER_WEIGHTS_NAME",
    "is_adapter_folder",
    "load_adapter_model",
    "load_model_and_processor",
    "load_processor",
    "read_model_type",
]
