"""What a LatentReasoner's idea vector adds: its summaries of the held-out dialogues of its training run, written
from each dialogue's own idea vector and from another dialogue's (the next one in `predictions.jsonl`), scored by
the same ROUGE code as the training run's evaluation.

A model whose decoder reads the dialogue in its prompt (`decoder_prompt`) keeps reading the right dialogue; only the
idea vector, the prefix the decoder reads first, is swapped. When the scores barely move, the summaries come from the
prompt and the trained prefix's style, not from what the idea vector carries.

    python bench/idea_vector_ablation.py outputs/latent-reasoner-dialogsum
"""

import argparse
import json
import sys
import time
from pathlib import Path

from lmforge.inference import Encoded, GenerationSettings, TextGenerator
from lmforge.loading import load_model_and_processor
from lmforge.training.summarization import hold_decoder_in, score_summaries


def summaries(generator: TextGenerator, dialogues: list[str], max_new_tokens: int, shift: int) -> list[str]:
    """Each dialogue's summary, its idea vector read from dialogue `(i + shift) % n` (0: its own)."""
    settings = GenerationSettings(max_new_tokens=max_new_tokens)
    texts = []
    for index, dialogue in enumerate(dialogues):
        encoded = generator.encode([dialogue], max_new_tokens)
        other = generator.encode([dialogues[(index + shift) % len(dialogues)]], max_new_tokens)
        inputs = {**encoded.inputs, "input_ids": other.inputs["input_ids"]}
        inputs["attention_mask"] = other.inputs["attention_mask"]
        texts.append(generator.run(Encoded(inputs, encoded.max_new_tokens, encoded.prompt_tokens), settings)[0].text)
    return texts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_path", type=Path, help="a LatentReasoner training run's output folder")
    parser.add_argument("--max-new-tokens", type=int, default=64, help="the run's max_target_length")
    parser.add_argument("--limit", type=int, default=None, help="score the first N dialogues only")
    parser.add_argument("--decoder-dtype", default="bfloat16", help="hold the frozen decoder in this dtype")
    args = parser.parse_args()

    predictions = args.model_path / "predictions.jsonl"
    if not predictions.is_file():
        print(f"error: {predictions} not found (the evaluation of a LatentReasoner training run writes it)")
        return 1
    rows = [json.loads(line) for line in predictions.read_text(encoding="utf-8").splitlines()][: args.limit]
    if not rows:
        print(f"error: {predictions} holds no dialogue")
        return 1
    model, processor = load_model_and_processor(args.model_path)
    hold_decoder_in(model, args.decoder_dtype)
    # the encoder reads what the training run read (its saved max_source_length), without a warning per dialogue
    generator = TextGenerator(model, processor, max_input_tokens=processor.encoder_tokenizer.model_max_length)
    dialogues = [row["dialogue"] for row in rows]
    references = [row["reference"] for row in rows]
    print(
        f"{len(rows)} held-out dialogues of {args.model_path}; decoder prompt: {getattr(processor, 'decoder_prompt', None)!r}"
    )
    own: list[str] = []
    for name, shift in (("own idea vector", 0), ("the next dialogue's idea vector", 1)):
        started = time.monotonic()
        texts = summaries(generator, dialogues, args.max_new_tokens, shift)
        scores = score_summaries(texts, references)
        shown = " ".join(f"{key} {value:.2f}" for key, value in scores.items())
        print(f"{name:<32} {shown} ({time.monotonic() - started:.0f} s)")
        if shift == 0:
            own = texts
            same = sum(text == row["summary"] for text, row in zip(texts, rows, strict=True))
            print(f"summaries equal to the training run's predictions.jsonl: {same} of {len(texts)}")
        else:
            print(
                f"summaries unchanged by the swap: {sum(a == b for a, b in zip(own, texts, strict=True))} of {len(texts)}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
