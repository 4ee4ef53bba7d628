"""Post-import hooks: run a function once a module has been imported, without importing it ourselves.

`import lmforge` must stay cheap (no torch, no transformers models, no peft), yet two things have to happen as soon as
another library is in use: the lmforge architectures must be registered with the transformers Auto classes
(`import lmforge; AutoModelForCausalLM.from_pretrained(folder)`), and PEFT must know their default LoRA targets
(`import lmforge; get_peft_model(model, LoraConfig(task_type=...))`). `when_imported` runs a function at the moment a
module finishes importing (at once if it already has), the idea of PEP 369, which Python never adopted: a finder at
the front of `sys.meta_path` wraps the loader of the watched modules and calls the hooks after their code has run.

A hook can also wait until no module of some packages is still being imported (`settled`): registering the models
imports `transformers.modeling_utils`, which must not happen while transformers is halfway through importing it (its
own `quantizers.auto` imports `configuration_auto` in the middle of `modeling_utils`).
"""

import importlib.abc
import importlib.machinery
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any


@dataclass
class _Hook:
    name: str
    callback: Callable[[], None]
    settled: tuple[str, ...]


_lock = threading.Lock()
_hooks: list[_Hook] = []
# top-level package -> how many of its modules are running their code right now (those loaded through the finder)
_running: dict[str, int] = {}
# modules whose code has run to the end through the finder (importlib marks them initialized a moment later)
_done: set[str] = set()
_local = threading.local()


def _package(name: str) -> str:
    return name.partition(".")[0]


def is_imported(name: str) -> bool:
    """Whether the module `name` has been imported completely (it is not still running its own code)."""
    module = sys.modules.get(name)
    spec = getattr(module, "__spec__", None)
    return module is not None and (name in _done or not getattr(spec, "_initializing", False))


def _ready(hook: _Hook) -> bool:
    return is_imported(hook.name) and not any(_running.get(package) for package in hook.settled)


def _run_ready_hooks() -> None:
    with _lock:
        ready = [hook for hook in _hooks if _ready(hook)]
        for hook in ready:
            _hooks.remove(hook)
        if not _hooks and _FINDER in sys.meta_path:
            sys.meta_path.remove(_FINDER)
    for hook in ready:  # outside the lock: a hook may import modules, which come back here
        hook.callback()


class _HookedLoader(importlib.abc.Loader):
    """Runs the module with the real loader, then the hooks that became ready."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        create = getattr(self.loader, "create_module", None)
        return create(spec) if create is not None else None

    def exec_module(self, module: ModuleType) -> None:
        name = module.__spec__.name if module.__spec__ is not None else module.__name__
        with _lock:
            _running[_package(name)] = _running.get(_package(name), 0) + 1
        try:
            self.loader.exec_module(module)
            _done.add(name)
        finally:
            with _lock:
                _running[_package(name)] -= 1
        _run_ready_hooks()

    def __getattr__(self, name: str) -> Any:  # is_package, get_source, get_resource_reader...
        return getattr(self.loader, name)


class _HookFinder(importlib.abc.MetaPathFinder):
    """Finds the watched modules with the other finders and hands out their spec with a `_HookedLoader`."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if getattr(_local, "finding", False):  # a finder below asked the import system again
            return None
        with _lock:
            watched = any(_package(fullname) in (_package(hook.name), *hook.settled) for hook in _hooks)
        if not watched:
            return None
        _local.finding = True
        try:
            for finder in sys.meta_path:
                if finder is self or not hasattr(finder, "find_spec"):
                    continue
                spec = finder.find_spec(fullname, path, target)
                if spec is not None:
                    if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                        spec.loader = _HookedLoader(spec.loader)
                    return spec
        finally:
            _local.finding = False
        return None


_FINDER = _HookFinder()


def when_imported(name: str, callback: Callable[[], None], settled: Sequence[str] = ()) -> None:
    """Call `callback()` once the module `name` has been imported and no module of the packages `settled` is still
    being imported; at once if that is already the case. The callback runs once."""
    with _lock:
        _hooks.append(_Hook(name, callback, tuple(settled)))
        if _FINDER not in sys.meta_path:
            sys.meta_path.insert(0, _FINDER)
    _run_ready_hooks()


__all__ = ["is_imported", "when_imported"]
