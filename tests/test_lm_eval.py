"""lm-evaluation-harness on a saved Aksis (`--model hf` with trust_remote_code), with the shipped local WikiText-2
task (recipes/lm_eval/wikitext2_local), offline; its scores checked against a log-likelihood computed by hand."""

import importlib.util
import math
import re
from pathlib import Path

import pytest
import torch
from datasets import load_dataset

from .conftest import REPO_ROOT
from .saved_models import load_auto

TASK_DIR = REPO_ROOT / "recipes" / "lm_eval" / "wikitext2_local"


@torch.no_grad()
def rolling_log_likelihood(folder: Path, text: str, window: int) -> float:
    """The harness's rolling log-likelihood, by hand: every token of the text is predicted once, in windows of
    `window` predictions; a window reads at most `window` tokens, ending just before its last prediction (the first
    one starts from the tokenizer's beginning-of-text token)."""
    model, tokenizer, _ = load_auto("aksis", folder)
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    sequence = [tokenizer.bos_token_id, *ids]  # sequence[i] is the token before ids[i]
    total = 0.0
    for start in range(0, len(ids), window):
        end = min(start + window, len(ids))
        inputs = sequence[max(0, end - window) : end]
        log_probs = torch.log_softmax(model(input_ids=torch.tensor([inputs])).logits[0].float(), dim=-1)
        predicted = end - start
        positions = torch.arange(len(inputs) - predicted, len(inputs))
        total += float(log_probs[positions, torch.tensor(ids[start:end])].sum())
    return total


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("lm_eval") is None, reason='lm-eval is not installed (pip install -e ".[dev]")'
)
def test_lm_eval_scores_a_saved_aksis_on_local_wikitext2(
    tiny_model_dirs: dict, shared_data: Path, monkeypatch
) -> None:
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    folder = tiny_model_dirs["aksis"]
    monkeypatch.chdir(REPO_ROOT)  # the task's data_files are relative to the repository root
    results = simple_evaluate(
        model="hf",
        model_args=f"pretrained={folder},trust_remote_code=True",
        tasks=["wikitext2_local"],
        task_manager=TaskManager(include_path=str(REPO_ROOT / "recipes" / "lm_eval")),
        limit=1,
        batch_size=1,
        device="cpu",
    )
    scores = results["results"]["wikitext2_local"]

    # The first test article, as the task reads it (its own functions), scored by hand over the context (64).
    spec = importlib.util.spec_from_file_location("wikitext2_local_utils", TASK_DIR / "utils.py")
    assert spec is not None and spec.loader is not None
    task_utils = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(task_utils)
    rows = load_dataset("text", data_files={"test": str(shared_data / "wikitext-2" / "wiki.test.tokens")},
                        keep_linebreaks=True)["test"]  # fmt: skip
    article = task_utils.articles(rows)[0]
    log_likelihood = rolling_log_likelihood(folder, task_utils.detokenize(article), window=64)
    words = len(re.split(r"\s+", article["page"]))  # counted on the original text, as the task does
    size = len(article["page"].encode("utf-8"))
    assert scores["word_perplexity,none"] == pytest.approx(math.exp(-log_likelihood / words), rel=1e-4)
    assert scores["byte_perplexity,none"] == pytest.approx(math.exp(-log_likelihood / size), rel=1e-4)
    assert scores["bits_per_byte,none"] == pytest.approx(-log_likelihood / size / math.log(2), rel=1e-4)
