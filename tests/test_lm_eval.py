"""lm-evaluation-harness on a saved Aksis (`--model hf` with trust_remote_code), with the shipped local WikiText-2
task (recipes/lm_eval/wikitext2_local), offline."""

import importlib.util
import math
from pathlib import Path

import pytest

from .conftest import REPO_ROOT


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("lm_eval") is None, reason='lm-eval is not installed (pip install -e ".[dev]")'
)
def test_lm_eval_scores_a_saved_aksis_on_local_wikitext2(
    trained_aksis_dir: Path, shared_data: Path, monkeypatch
) -> None:
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    monkeypatch.chdir(REPO_ROOT)  # the task's data_files are relative to the repository root
    results = simple_evaluate(
        model="hf",
        model_args=f"pretrained={trained_aksis_dir},trust_remote_code=True",
        tasks=["wikitext2_local"],
        task_manager=TaskManager(include_path=str(REPO_ROOT / "recipes" / "lm_eval")),
        limit=1,
        batch_size=1,
        device="cpu",
    )
    scores = results["results"]["wikitext2_local"]
    # a tiny model trained on a few Shakespeare lines: poor but finite scores, consistent with each other
    assert math.isfinite(scores["word_perplexity,none"]) and scores["word_perplexity,none"] > 1
    assert 0 < scores["bits_per_byte,none"] < 16
    assert math.isclose(scores["byte_perplexity,none"], 2 ** scores["bits_per_byte,none"], rel_tol=1e-6)
