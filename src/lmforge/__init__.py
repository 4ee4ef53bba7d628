"""lmforge: Aksis, CharTransformer, AE-LLM and LatentReasoner as Hugging Face models.

The model classes are exported at the top level, as transformers exports its own: `from lmforge import AksisConfig,
AksisForCausalLM`. `import lmforge` itself is cheap (no torch, no transformers models, no peft): the classes and the
subpackages load on first use (PEP 562), and two post-import hooks (`lmforge.import_hooks`) do the registration
as soon as the libraries are in use:

- once transformers' Auto classes are imported (`from transformers import AutoModelForCausalLM`, before or after
  `import lmforge`), `lmforge.models` is imported, which registers every architecture with `AutoConfig`,
  `AutoModel`, `AutoModelForCausalLM` / `AutoModelForSeq2SeqLM` and `AutoTokenizer` / `AutoProcessor`;
- once peft is imported, PEFT gets each architecture's default LoRA `target_modules` (see `lmforge.adapters`).
"""

import importlib
from typing import Any

from .errors import LmforgeError as LmforgeError
from .import_hooks import is_imported, when_imported

__version__ = "0.1.0"

SUBMODULES = ("adapters", "backbones", "data", "evaluation", "hub", "models", "studies", "training")
_LIGHT_EXPORTS = ["LmforgeError", "__version__", *SUBMODULES]


def _register_models() -> None:
    importlib.import_module("lmforge.models")  # registers the Auto classes (a no-op while it is being imported)


def _register_lora_defaults() -> None:
    if is_imported("lmforge.models"):  # else `lmforge.models` does it when it is imported
        importlib.import_module("lmforge.models").add_lora_defaults()


# Registering imports the model code, hence transformers.modeling_utils: wait until transformers has finished
# importing whatever it is importing.
when_imported("transformers.models.auto.configuration_auto", _register_models, settled=("transformers",))
when_imported("peft.utils.constants", _register_lora_defaults)


def _exports() -> dict[str, Any]:
    """The public names of `lmforge.models` and of each lmforge model package (`lmforge.models.<name>`)."""
    models = importlib.import_module("lmforge.models")
    modules = [models]
    for spec in models.SPECS.values():
        package = spec.config_class.__module__.rpartition(".")[0]
        if package.startswith("lmforge.models."):
            modules.append(importlib.import_module(package))
    return {name: getattr(module, name) for module in modules for name in module.__all__ if name != "SPEC"}


def __getattr__(name: str) -> Any:
    if name.startswith("__") and name != "__all__":  # probes (__wrapped__, __path__...) must not import models
        raise AttributeError(f"module 'lmforge' has no attribute {name!r}")
    if name in SUBMODULES:
        return importlib.import_module(f"lmforge.{name}")
    exports = _exports()
    if name == "__all__":
        return [*_LIGHT_EXPORTS, *sorted(exports)]
    if name in exports:
        return exports[name]
    raise AttributeError(f"module 'lmforge' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__getattr__("__all__")})
