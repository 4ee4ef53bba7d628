"""Shared fixtures (offline Hub, tiny Aksis tokenizer/model, a tiny trained model folder, the golden model folders,
the shared data folder), the broken-cache switch and the skip policy of CI.

- `LMFORGE_TEST_BREAK_CACHE=1` plants a broken cache for the whole session (tests/break_cache.py): the experiment
  that shows which tests catch a regression in cached generation.
- `LMFORGE_NO_SKIPS=1` (.ci/run sets it) fails the run when a test is skipped for a reason that is not on the
  allow-list, `ALLOWED_SKIPS` in tests/skip_policy.py (registered here as a plugin).
"""

import logging
import os
import subprocess
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_DISABLED", "true")

import pytest
import torch

import lmforge  # noqa: F401  (registers the lmforge models with the Auto classes)

from . import skip_policy
from .break_cache import plant_if_asked
from .remote_worker import run_script

# Tiny test models run far faster on one thread than on two contended ones.
torch.set_num_threads(1)
CACHE_BROKEN = plant_if_asked()

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
SAMPLE_TEXT = (
    "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
    "First Citizen:\nYou are all resolved rather to die than to famish?\n\nAll:\nResolved. resolved.\n\n"
    "First Citizen:\nFirst, you know Caius Marcius is chief enemy to the people.\n\n"
)
TINY_AKSIS = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "max_position_embeddings": 64,
}
TINY_CHAR = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "max_position_embeddings": 64,
    "hidden_dropout": 0.0,
    "attention_dropout": 0.0,
}


def python_without_lmforge(code: str, cwd: Path, timeout: int = 240) -> subprocess.CompletedProcess[str]:
    """Run `code` where `import lmforge` fails, as on a machine without lmforge: in the session's one remote-code
    worker (tests/remote_worker.py), as `python -c code` would run it in `cwd`."""
    return run_script(code, cwd, timeout=timeout)


@pytest.fixture(autouse=True)
def lmforge_logger_as_it_was():
    """A training run inside a test sets up the "lmforge" logger once per process: a handler on the stdout of that
    moment (a test's capture, closed when the test ends), no propagation. Put the logger back after each test, so
    a later test neither writes its logs into a closed stream nor loses them to that handler."""
    logger = logging.getLogger("lmforge")
    state = (list(logger.handlers), logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.level, logger.propagate = state


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder not found at {SHARED_DATA} (tests that need real datasets are skipped)")
    return SHARED_DATA


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(skip_policy, "lmforge-skip-policy")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if CACHE_BROKEN:
        terminalreporter.section("broken cache", sep="-", yellow=True)
        terminalreporter.line("LMFORGE_TEST_BREAK_CACHE=1: every cache forgets what it holds (tests/break_cache.py)")


@pytest.fixture(scope="session")
def aksis_tokenizer():
    from lmforge.models import AksisTokenizer

    return AksisTokenizer.train_from_texts([SAMPLE_TEXT] * 20, vocab_size=204)


@pytest.fixture()
def tiny_aksis(aksis_tokenizer):
    from lmforge.models import AksisConfig, AksisForCausalLM

    torch.manual_seed(0)
    config = AksisConfig(vocab_size=len(aksis_tokenizer), **TINY_AKSIS)
    return AksisForCausalLM(config).eval()


@pytest.fixture(scope="session")
def tiny_text_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "tiny.txt"
    path.write_text(SAMPLE_TEXT * 30, encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def trained_aksis_dir(tmp_path_factory, tiny_text_file) -> Path:
    """A tiny Aksis trained for a few steps by the real training path and saved; shared by several tests."""
    from lmforge.training import parse_recipe, run_training

    out = tmp_path_factory.mktemp("trained") / "aksis"
    recipe = {
        "model_type": "aksis",
        "tokenizer_vocab_size": 200,
        "config_overrides": dict(TINY_AKSIS),
        "train_file": str(tiny_text_file),
        "block_size": 32,
        "output_dir": str(out),
        "max_steps": 30,
        "per_device_train_batch_size": 8,
        "learning_rate": 3e-3,
        "logging_steps": 10,
        "eval_strategy": "no",
        "save_strategy": "no",
        "report_to": "none",
        "use_cpu": True,
        "disable_tqdm": True,
    }
    run_training(*parse_recipe(recipe))
    return out


@pytest.fixture(scope="session")
def trained_char_dir(tmp_path_factory, tiny_text_file) -> Path:
    """A tiny CharTransformer trained for a few steps by the real training path and saved; shared by several tests."""
    from lmforge.training import parse_recipe, run_training

    out = tmp_path_factory.mktemp("trained") / "char_transformer"
    recipe = {
        "model_type": "char_transformer",
        "config_overrides": dict(TINY_CHAR),
        "train_file": str(tiny_text_file),
        "block_size": 32,
        "output_dir": str(out),
        "max_steps": 30,
        "per_device_train_batch_size": 16,
        "learning_rate": 1e-2,
        "logging_steps": 10,
        "eval_strategy": "no",
        "save_strategy": "no",
        "report_to": "none",
        "use_cpu": True,
        "disable_tqdm": True,
    }
    run_training(*parse_recipe(recipe))
    return out


@pytest.fixture(scope="session")
def tiny_model_dirs(tmp_path_factory) -> dict[str, Path]:
    """A tiny saved model folder of each architecture (model_type -> folder): a copy of its golden folder
    (tests/data/golden, whose greedy ids are committed in golden.json) as a training run leaves it, with its code,
    recipe and eval results (`tests/saved_models.py`)."""
    from .golden import ARCHITECTURES
    from .saved_models import golden_copy

    root = tmp_path_factory.mktemp("tiny_models")
    return {model_type: golden_copy(model_type, root / model_type) for model_type in ARCHITECTURES}
