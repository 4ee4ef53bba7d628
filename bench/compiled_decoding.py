"""`--compile-decoding` through lmforge's inference layer, against its eager decoding, on a saved model: what
`lmforge generate` / `chat` / `serve` gain from transformers' compiled decoding step.

Two `TextGenerator`s on the same folder, one with `compile_decoding=True`. The compiled one's first generation
compiles (timed alone); then both generate the same greedy text in paired rounds (order alternating), first at the
prompt given, then at a prompt of another length (the same compiled graph: its static cache is the whole context).
Prints tokens/s, the median of the paired ratios, and whether the texts are equal.

    lmforge quickstart && python bench/compiled_decoding.py --model-path outputs/quickstart
"""

import argparse
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, median_ratio, paired, timed

from lmforge.inference import GenerationSettings, TextGenerator


def runner(
    generator: TextGenerator, prompt: str, settings: GenerationSettings, texts: dict[str, str], name: str
) -> Callable[[], None]:
    """One greedy generation of `prompt`, its text kept in `texts[name]`."""

    def run() -> None:
        texts[name] = generator.generate(prompt, settings)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-path", required=True, help="A saved Aksis or CharTransformer folder.")
    parser.add_argument("--prompt", default="ROMEO:")
    parser.add_argument("--other-prompt", default="JULIET:\nO Romeo, Romeo! wherefore art thou Romeo?")
    parser.add_argument("--max-new-tokens", type=int, default=None, help="Default: half the context.")
    parser.add_argument("--repeats", type=int, default=6)
    args = parser.parse_args()

    eager = TextGenerator.from_pretrained(args.model_path)
    compiled = TextGenerator.from_pretrained(args.model_path, compile_decoding=True)
    limit = eager.max_new_tokens_limit or 256
    new_tokens = min(args.max_new_tokens or (limit + 1) // 2, limit)  # room for the prompts
    print(f"# Compiled decoding through the inference layer, {machine()}")
    print(f"model: {args.model_path} ({eager.model_type}, context {eager.context}), {new_tokens} new tokens, greedy\n")

    print("| prompt | eager tok/s | compiled tok/s | compiled / eager (median of paired rounds) | same text |")
    print("| --- | ---: | ---: | ---: | --- |")
    first_call = None
    for prompt in (args.prompt, args.other_prompt):
        encoded = eager.encode([prompt], new_tokens)
        settings = GenerationSettings(max_new_tokens=encoded.max_new_tokens, do_sample=False)
        texts: dict[str, str] = {}
        run_compiled = runner(compiled, prompt, settings, texts, "compiled")
        run_eager = runner(eager, prompt, settings, texts, "eager")
        if first_call is None:
            first_call = timed(run_compiled)  # compiles
        run_eager()
        compiled_t, eager_t = paired(run_compiled, run_eager, args.repeats)
        tokens = encoded.max_new_tokens
        print(
            f"| {prompt[:24]!r} ({encoded.prompt_tokens} tokens) | {tokens / statistics.median(eager_t):,.0f} | "
            f"{tokens / statistics.median(compiled_t):,.0f} | {median_ratio(eager_t, compiled_t):.2f}x | "
            f"{'yes' if texts['compiled'] == texts['eager'] else 'no'} |"
        )
    print(f"\nfirst compiled generation (compiles the step): {first_call:.1f} s")


if __name__ == "__main__":
    main()
