"""Document grouping and scoring for the `wikitext2_local` lm-evaluation-harness task.

The `text` dataset builder yields one row per line of a `wiki.*.tokens` file; `articles` joins the lines of each
article (an article starts at a top-level heading line ` = Title = `). `detokenize` and `process_results` follow the
harness's own `wikitext` task: words and bytes are counted on the original (tokenized) text.
"""

import re

from datasets import Dataset

TOP_LEVEL_HEADING = re.compile(r"^ = [^=].* = $")


def articles(dataset: Dataset) -> Dataset:
    """One row per article, with the article's text (its lines joined back as in the file) in `page`."""
    pages: list[list[str]] = []
    for line in dataset["text"]:
        stripped = line.rstrip("\n")
        if TOP_LEVEL_HEADING.match(stripped) or not pages:
            pages.append([])
        pages[-1].append(stripped)
    texts = ["\n".join(lines).strip("\n") for lines in pages]
    return Dataset.from_dict({"page": [text for text in texts if text.strip()]})


def detokenize(doc: dict[str, str]) -> str:
    """Undo the WikiText tokenization (`@-@` markers, spaces before punctuation...)."""
    text = doc["page"]
    text = text.replace("s '", "s'")
    text = re.sub(r"/' [0-9]/", r"/'[0-9]/", text)
    text = text.replace(" @-@ ", "-").replace(" @,@ ", ",").replace(" @.@ ", ".")
    for mark in (":", ";", ".", "!", "?", ","):
        text = text.replace(f" {mark} ", f"{mark} ")
    text = re.sub(r"\(\s*([^\)]*?)\s*\)", r"(\1)", text)
    text = re.sub(r"\[\s*([^\]]*?)\s*\]", r"[\1]", text)
    text = re.sub(r"{\s*([^}]*?)\s*}", r"{\1}", text)
    text = re.sub(r"\"\s*([^\"]*?)\s*\"", r'"\1"', text)
    text = re.sub(r"'\s*([^']*?)\s*'", r"'\1'", text)
    text = text.replace("= = = =", "====").replace("= = =", "===").replace("= =", "==")
    text = text.replace(" " + chr(176) + " ", chr(176))
    text = text.replace(" \n", "\n").replace("\n ", "\n")
    text = text.replace(" N ", " 1 ").replace(" 's", "'s")
    return text


def process_results(doc: dict[str, str], results: list[float]) -> dict[str, tuple[float, int]]:
    (loglikelihood,) = results
    words = len(re.split(r"\s+", doc["page"]))
    size = len(doc["page"].encode("utf-8"))
    return {
        "word_perplexity": (loglikelihood, words),
        "byte_perplexity": (loglikelihood, size),
        "bits_per_byte": (loglikelihood, size),
    }
