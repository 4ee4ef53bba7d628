"""Shared fixtures: offline Hub, tiny Aksis tokenizer/model, a tiny trained model folder, the shared data folder."""

import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_DISABLED", "true")

import pytest
import torch

import lmforge  # noqa: F401  (registers the lmforge models with the Auto classes)

# Tiny test models run far faster on one thread than on two contended ones.
torch.set_num_threads(1)

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
    """Run `code` in a fresh interpreter in which `import lmforge` fails, as on a machine without lmforge."""
    blocker = "import sys; sys.modules['lmforge'] = None\n"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
    return subprocess.run(
        [sys.executable, "-c", blocker + code], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder not found at {SHARED_DATA} (tests that need real datasets are skipped)")
    return SHARED_DATA


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
def tiny_model_dirs(tmp_path_factory, trained_aksis_dir) -> dict[str, Path]:
    """A tiny saved model folder of each architecture (model_type -> folder): the trained Aksis, and CharTransformer,
    AE-LLM and LatentReasoner folders as training runs leave them (`tests/saved_models.py`)."""
    from .saved_models import save_ae_llm, save_char_transformer, save_latent_reasoner

    root = tmp_path_factory.mktemp("tiny_models")
    return {
        "aksis": trained_aksis_dir,
        "char_transformer": save_char_transformer(root / "char_transformer"),
        "ae_llm": save_ae_llm(root / "ae_llm"),
        "latent_reasoner": save_latent_reasoner(root / "latent_reasoner"),
    }
