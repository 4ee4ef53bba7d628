"""Diversity and repetition of generated texts: distinct-n, the share of repeated n-grams, mean length and self-BLEU.

The scores of a decoding strategy in `lmforge sampling-study` (and as an offline `evaluate` module:
`evaluate.load(metric_path("diversity"))`). Words are whitespace-separated pieces of text, so each value can be
checked by hand:

- distinct-n (Li et al., 2016): distinct n-grams / all n-grams, over every text of the set;
- repeated-n share (Welleck et al., 2020, "seq-rep-n"): per text, 1 - distinct n-grams / all n-grams, averaged over
  the texts that have at least one n-gram;
- mean length: words per text;
- self-BLEU (Zhu et al., 2018): the mean sentence BLEU (sacrebleu, 0-100) of each text against all the others as
  references; high when the texts resemble each other.
"""

from collections.abc import Sequence

import sacrebleu

from ..errors import LmforgeError


def _ngrams(words: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Distinct n-grams over all n-grams of `texts` (0 when they hold no n-gram)."""
    grams = [gram for text in texts for gram in _ngrams(text.split(), n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def repeated_ngram_share(texts: Sequence[str], n: int = 4) -> float:
    """Per text, the share of its n-grams that repeat an earlier one (1 - distinct / all), averaged over the texts
    with at least one n-gram (0 when none has one)."""
    shares = []
    for text in texts:
        grams = _ngrams(text.split(), n)
        if grams:
            shares.append(1.0 - len(set(grams)) / len(grams))
    return sum(shares) / len(shares) if shares else 0.0


def mean_length(texts: Sequence[str]) -> float:
    """Mean number of words per text."""
    if not texts:
        raise LmforgeError("no texts to measure")
    return sum(len(text.split()) for text in texts) / len(texts)


def self_bleu(texts: Sequence[str]) -> float:
    """Mean sacrebleu sentence BLEU (0-100) of each text against the other texts (needs at least two texts)."""
    if len(texts) < 2:
        raise LmforgeError(f"self-BLEU compares texts with each other: give at least two, got {len(texts)}")
    scores = [
        sacrebleu.sentence_bleu(text, [other for j, other in enumerate(texts) if j != i]).score
        for i, text in enumerate(texts)
    ]
    return float(sum(scores) / len(scores))


def diversity(texts: Sequence[str]) -> dict[str, float]:
    """Every score of the module docstring for one set of texts."""
    texts = list(texts)
    return {
        "distinct_1": distinct_n(texts, 1),
        "distinct_2": distinct_n(texts, 2),
        "repeated_4gram_share": repeated_ngram_share(texts, 4),
        "mean_length": mean_length(texts),
        "self_bleu": self_bleu(texts),
    }


__all__ = ["distinct_n", "diversity", "mean_length", "repeated_ngram_share", "self_bleu"]
