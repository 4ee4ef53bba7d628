"""Bits per character of saved causal models on the same held-out text, so that models with different tokenizers
(Aksis's byte-level BPE, CharTransformer's characters) can be compared.

The text is the start of the embedded corpus's validation plays (whole plays no run trains on), or a file. Each model
scores it with lmforge's sliding-window perplexity (windows of its own context, half a window of overlap);
bits per character = total NLL (nats) / characters / ln 2. Each model's samples for the same prompts are printed
next to it.

    python bench/bits_per_character.py outputs/quickstart outputs/char-shakespeare
    python bench/bits_per_character.py MODEL_DIR ... --input-file ../shared/data/tinyshakespeare/input.txt
"""

import argparse
import math
import sys
import time

from lmforge.data import load_embedded_corpus, read_text_file
from lmforge.evaluation import sliding_window_perplexity
from lmforge.inference import GenerationSettings, TextGenerator
from lmforge.loading import load_model_and_processor


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_paths", nargs="+", help="saved model folders")
    parser.add_argument("--input-file", default=None, help="score this text (default: the embedded validation plays)")
    parser.add_argument("--max-chars", type=int, default=100_000, help="characters scored (from the start)")
    parser.add_argument("--prompts", nargs="*", default=["ROMEO:", "To be, or not to be"])
    parser.add_argument("--sample-chars", type=int, default=200, help="length of each sample, in characters")
    args = parser.parse_args()

    if args.input_file:
        text = read_text_file(args.input_file)
    else:
        text = "".join(load_embedded_corpus()["validation"]["text"])
    text = text[: args.max_chars]
    print(f"{len(text)} characters of {'the embedded validation plays' if not args.input_file else args.input_file}")
    for path in args.model_paths:
        model, tokenizer = load_model_and_processor(path)
        generator = TextGenerator(model, tokenizer)
        start = time.perf_counter()
        result = sliding_window_perplexity(model, tokenizer, [text])
        bpc = result.mean_nll * result.num_tokens / len(text) / math.log(2)
        print(
            f"\n{path} ({model.config.model_type}): {bpc:.3f} bits per character "
            f"({result.mean_nll:.3f} nats per token, {len(text) / result.num_tokens:.2f} characters per token; "
            f"{time.perf_counter() - start:.0f} s)"
        )
        context = model.config.max_position_embeddings
        for prompt in args.prompts:
            # As many new tokens as make about `sample_chars` characters, within the context.
            chars_per_token = len(text) / result.num_tokens
            new_tokens = min(
                context - len(tokenizer(prompt)["input_ids"]) - 1, round(args.sample_chars / chars_per_token)
            )
            settings = GenerationSettings(max_new_tokens=new_tokens, do_sample=True, top_k=50, temperature=0.8, seed=0)
            sample = generator.generate(prompt, settings)
            print(f"--- {prompt!r}:\n{prompt}{sample}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
