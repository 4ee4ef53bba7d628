"""A deliberately broken cache, to show which tests catch a regression in cached generation.

`plant()` makes every cache forget what it holds, the way a regression inside transformers' cache or generation
code would: `Cache.update` (through which every key/value cache of transformers and lmforge goes, remote-code
copies included) returns zeros in place of every position cached before the current step, so a decoding step
attends to nothing it saw before; AE-LLM's recurrent cache stores zero states, so each step starts from nothing.
Shapes stay right, nothing raises: only the tokens change. A forward pass without a cache is untouched, and so is
the first step of a generation, which is exactly why comparing one `generate()` with another cannot see it.

With `LMFORGE_TEST_BREAK_CACHE=1`, tests/conftest.py plants it for the whole test session (and the remote-code
worker plants it too). To run the experiment and list the tests that catch it:

    python tests/break_cache.py                  # the whole suite, with the break, in a subprocess
    python tests/break_cache.py tests/test_cli.py -k generate      # any pytest arguments

The script exits 0 when at least five tests fail with the break (what the suite promises), 1 otherwise.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ENV_VAR = "LMFORGE_TEST_BREAK_CACHE"
REPO_ROOT = Path(__file__).resolve().parent.parent


def plant() -> Callable[[], None]:
    """Break the caches (see the module docstring); returns a function that repairs them."""
    import torch
    from transformers.cache_utils import Cache

    original_update = Cache.update

    def forgetful_update(
        self: Any, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        keys, values = original_update(self, key_states, value_states, layer_idx, *args, **kwargs)
        new = key_states.shape[-2]
        if keys.shape[-2] <= new:  # nothing cached before this step
            return keys, values
        forgotten_keys, forgotten_values = torch.zeros_like(keys), torch.zeros_like(values)
        forgotten_keys[..., -new:, :] = keys[..., -new:, :]
        forgotten_values[..., -new:, :] = values[..., -new:, :]
        return forgotten_keys, forgotten_values

    Cache.update = forgetful_update  # type: ignore[method-assign]
    repairs: list[Callable[[], None]] = [lambda: setattr(Cache, "update", original_update)]

    recurrent = _ae_llm_recurrent_cache()
    if recurrent is not None:
        original_states = recurrent.update_states

        def forgetful_states(self: Any, states: torch.Tensor) -> None:
            original_states(self, torch.zeros_like(states))

        recurrent.update_states = forgetful_states
        repairs.append(lambda: setattr(recurrent, "update_states", original_states))

    def repair() -> None:
        for undo in reversed(repairs):
            undo()

    return repair


def _ae_llm_recurrent_cache() -> Any:
    """AE-LLM's GRU-state cache class, where lmforge is importable (not in the remote-code worker)."""
    try:
        from lmforge.models.ae_llm import modeling_ae_llm
    except ImportError:
        return None
    cache = getattr(modeling_ae_llm, "AELLMRecurrentCache", None)
    return cache if cache is not None and hasattr(cache, "update_states") else None


def plant_if_asked() -> bool:
    """Plant the break when `LMFORGE_TEST_BREAK_CACHE=1` (tests/conftest.py and the remote-code worker call this)."""
    if os.environ.get(ENV_VAR) != "1":
        return False
    plant()
    return True


def main(argv: list[str]) -> int:
    env = {**os.environ, ENV_VAR: "1"}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfE", *argv]
    print("$", f"{ENV_VAR}=1", " ".join(command[1:]), flush=True)
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    failed = sorted(set(re.findall(r"^(?:FAILED|ERROR) (\S+)", result.stdout, flags=re.M)))
    summary = [line for line in result.stdout.splitlines() if re.match(r"^=+ .*(passed|failed|error)", line)]
    print(f"{len(failed)} tests catch the broken cache:")
    print("\n".join(f"  {name}" for name in failed))
    print(summary[-1] if summary else result.stdout[-2000:])
    return 0 if len(failed) >= 5 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
