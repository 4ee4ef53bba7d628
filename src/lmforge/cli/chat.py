"""`lmforge chat`: an interactive loop over the tokenizer's chat template, streaming tokens with `TextStreamer`."""

import argparse
import sys
from typing import Any

import torch
from transformers import TextStreamer

from ..generation import build_generation_config, load_model_and_tokenizer

# Used when a tokenizer has no chat template of its own (e.g. a character-level one).
PLAIN_CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] + ': ' + message['content'] + '\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'assistant: ' }}{% endif %}"
)
HELP = "Type a message and press Enter. /reset clears the conversation, /exit quits."


def run_chat(args: argparse.Namespace) -> int:
    from .main import _generation_kwargs

    model, tokenizer = load_model_and_tokenizer(args.model_path)
    template = tokenizer.chat_template or PLAIN_CHAT_TEMPLATE
    context = int(getattr(model.config, "max_position_embeddings", 1 << 30))
    generation_config = build_generation_config(model, max_new_tokens=args.max_new_tokens, **_generation_kwargs(args))
    if generation_config.pad_token_id is None:
        generation_config.pad_token_id = tokenizer.pad_token_id or tokenizer.eos_token_id
    system = [{"role": "system", "content": args.system}] if args.system else []
    history: list[dict[str, str]] = list(system)
    streamer = TextStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    interactive = sys.stdin.isatty()
    print(HELP, flush=True)
    while True:
        if interactive:
            print("you> ", end="", flush=True)
        line = sys.stdin.readline()
        if not line:  # end of input
            break
        message = line.strip()
        if not message:
            continue
        if message == "/exit":
            break
        if message == "/reset":
            history = list(system)
            print("(conversation cleared)", flush=True)
            continue
        history.append({"role": "user", "content": message})
        encoded: Any = tokenizer.apply_chat_template(
            history, chat_template=template, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        input_ids = encoded["input_ids"]
        # Keep the most recent turns that fit in the context with room for the answer.
        room = max(1, context - args.max_new_tokens)
        input_ids = input_ids[:, -room:].to(model.device)
        if args.seed is not None:
            torch.manual_seed(args.seed)
        print("model> ", end="", flush=True)
        generate: Any = model.generate
        with torch.no_grad():
            output = generate(
                input_ids=input_ids,
                attention_mask=torch.ones_like(input_ids),
                generation_config=generation_config,
                streamer=streamer,
            )
        reply = str(tokenizer.decode(output[0, input_ids.shape[1] :], skip_special_tokens=True)).strip()
        history.append({"role": "assistant", "content": reply})
    return 0


__all__ = ["PLAIN_CHAT_TEMPLATE", "run_chat"]
