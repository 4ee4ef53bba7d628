"""`lmforge chat`: an interactive loop over the inference layer's `chat`, printing the answer as it is generated.

How a conversation becomes the model's input is `lmforge.inference`'s: a decoder reads it through its chat template
(a plain "role: text" one when the tokenizer has none), an encoder-decoder answers the last message alone.
"""

import sys
import warnings
from typing import Any

from .. import inference
from ..inference import GenerationSettings, TextGenerator

HELP = "Type a message and press Enter. /reset clears the conversation, /exit quits."
ANSWER_NOTE = "This model answers each message on its own (it reads the last message, not the conversation)."


def run_chat(generator: TextGenerator, settings: GenerationSettings, system: str | None = None) -> int:
    """Read messages from stdin until /exit or the end of input; print each answer as it is generated."""
    first: list[dict[str, str]] = [{"role": "system", "content": system}] if system else []
    history = list(first)
    interactive = sys.stdin.isatty()
    print(HELP, flush=True)
    if generator.prompt_style == "answer":
        print(ANSWER_NOTE, flush=True)
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
            history = list(first)
            print("(conversation cleared)", flush=True)
            continue
        history.append({"role": "user", "content": message})
        answer = generator.stream(settings=settings, messages=history)
        print("model> ", end="", flush=True)
        for piece in answer:
            print(piece, end="", flush=True)
        print(flush=True)
        reply = answer.completion.text.strip() if answer.completion is not None else ""
        history.append({"role": "assistant", "content": reply})
    return 0


def __getattr__(name: str) -> Any:
    if name == "PLAIN_CHAT_TEMPLATE":  # moved in lmforge 0.1; this alias goes in the next release
        warnings.warn(
            "lmforge.cli.chat.PLAIN_CHAT_TEMPLATE is deprecated: use lmforge.inference.PLAIN_CHAT_TEMPLATE",
            FutureWarning,
            stacklevel=2,
        )
        return inference.PLAIN_CHAT_TEMPLATE
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["run_chat"]
