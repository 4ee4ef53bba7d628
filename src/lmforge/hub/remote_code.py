"""What a saved model folder needs to load with `trust_remote_code=True` where lmforge is not installed.

`save_pretrained` already copies the model's code files and writes `auto_map` (the classes are registered with
`register_for_auto_class`). This module checks a folder for them and supplies what is missing (a folder written by
an older lmforge, or by hand), and adds the custom pipeline of the sequence-to-sequence models: transformers 5 has no
`text2text-generation` / `summarization` pipeline of its own any more, but a folder can name a pipeline class of its
own in `config.json` under `custom_pipelines`, which `pipeline(task, model=..., trust_remote_code=True)` loads.
"""

import json
import sys
from pathlib import Path
from typing import Any

from transformers.dynamic_module_utils import get_relative_import_files

from ..errors import LmforgeError
from ..models import SPECS


def _code_files(cls: type) -> list[Path]:
    """The module file of `cls` and every file it imports relatively (what `custom_object_save` copies)."""
    module_file = Path(str(sys.modules[cls.__module__].__file__))
    return [module_file, *(Path(path) for path in get_relative_import_files(str(module_file)))]


def _reference(cls: type) -> str:
    """`module.Class` as `auto_map` and `custom_pipelines` name a class of the folder's own code."""
    return f"{cls.__module__.rsplit('.', 1)[-1]}.{cls.__name__}"


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise LmforgeError(f"{path} is not valid JSON ({err.msg}); re-save the model") from None
    if not isinstance(data, dict):
        raise LmforgeError(f"{path} does not hold a JSON object; re-save the model")
    return data


def remote_code_updates(model_path: str | Path) -> dict[str, bytes]:
    """The files to add to (or replace in) `model_path` so that it loads with `trust_remote_code=True`.

    Keys are paths relative to the folder: missing code files, and `config.json` / `tokenizer_config.json` when
    their `auto_map` (or the `custom_pipelines` entry of a model whose spec has a `pipeline_class`) is missing. Code files already
    in the folder are kept as they are (they match the weights they were saved with). An empty dict means the folder
    is complete; a LoRA adapter folder (no `config.json`) needs nothing here.
    """
    folder = Path(model_path)
    config_file = folder / "config.json"
    if not config_file.is_file():
        return {}
    config = read_json(config_file)
    model_type = config.get("model_type")
    spec = SPECS.get(str(model_type))
    if spec is None:
        raise LmforgeError(
            f"{config_file} has model_type {model_type!r}, not an lmforge architecture ({', '.join(SPECS)})"
        )
    config_class, tokenizer_class = spec.config_class, spec.tokenizer_class
    architectures = config.get("architectures") or []
    by_name = {
        spec.model_class.__name__: ("AutoModel", spec.model_class),
        spec.head_class.__name__: (spec.auto_class_name, spec.head_class),
    }
    if not architectures or architectures[0] not in by_name:
        raise LmforgeError(
            f"{config_file} names architectures {architectures}; expected one of {sorted(by_name)} for {model_type}"
        )
    auto_name, model_class = by_name[architectures[0]]

    updates: dict[str, bytes] = {}
    needed_classes: list[type] = [config_class, model_class, spec.model_class]
    new_config = dict(config)
    auto_map = dict(new_config.get("auto_map") or {})
    auto_map.setdefault("AutoConfig", _reference(config_class))
    auto_map.setdefault(auto_name, _reference(model_class))
    # The base model too (as `save_pretrained` writes it): AutoModel loads it, and so does vLLM's Transformers backend.
    auto_map.setdefault("AutoModel", _reference(spec.model_class))
    new_config["auto_map"] = auto_map
    if spec.pipeline_class is not None:  # transformers has no pipeline of its own for the model's task
        pipelines = dict(new_config.get("custom_pipelines") or {})
        entry = {"impl": _reference(spec.pipeline_class), "pt": [spec.auto_class_name]}
        pipelines.setdefault(spec.pipeline_tag, entry)
        new_config["custom_pipelines"] = pipelines
        needed_classes.append(spec.pipeline_class)
    if new_config != config:
        updates["config.json"] = (json.dumps(new_config, indent=2, sort_keys=True) + "\n").encode("utf-8")

    tokenizer_config_file = folder / "tokenizer_config.json"
    if tokenizer_class is not None and tokenizer_config_file.is_file():
        tokenizer_config = read_json(tokenizer_config_file)
        if tokenizer_config.get("tokenizer_class") == tokenizer_class.__name__:
            needed_classes.append(tokenizer_class)
            if "AutoTokenizer" not in (tokenizer_config.get("auto_map") or {}):
                tokenizer_config["auto_map"] = {
                    **(tokenizer_config.get("auto_map") or {}),
                    "AutoTokenizer": [_reference(tokenizer_class), None],
                }
                updates["tokenizer_config.json"] = (json.dumps(tokenizer_config, indent=2) + "\n").encode("utf-8")

    for cls in needed_classes:
        for code_file in _code_files(cls):
            if not (folder / code_file.name).is_file():
                updates[code_file.name] = code_file.read_bytes()
    return updates


def add_remote_code(model_path: str | Path) -> list[str]:
    """Write `remote_code_updates` into the folder; returns the names of the files written."""
    updates = remote_code_updates(model_path)
    for name, content in updates.items():
        (Path(model_path) / name).write_bytes(content)
    return sorted(updates)


def __getattr__(name: str) -> Any:
    if name == "CUSTOM_PIPELINES":  # lmforge 0.1's table, now the specs' pipeline_class and pipeline_tag
        import warnings

        warnings.warn(
            "lmforge.hub.remote_code.CUSTOM_PIPELINES is deprecated: read lmforge.models.get_spec(model_type)"
            ".pipeline_class and .pipeline_tag",
            FutureWarning,
            stacklevel=2,
        )
        return {
            model_type: (spec.pipeline_tag, spec.pipeline_class, spec.auto_class_name)
            for model_type, spec in SPECS.items()
            if spec.pipeline_class is not None
        }
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["add_remote_code", "read_json", "remote_code_updates"]
