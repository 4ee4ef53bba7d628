"""Aksis tokenizer: byte-level BPE (10,000 learned tokens + 4 special tokens) trained with `tokenizers`."""

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

SPECIAL_TOKENS = {"pad_token": "<pad>", "unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>"}

# A chat layout the small models can learn: one line per turn, "<s>role: text</s>".
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ bos_token + message['role'] + ': ' + message['content'] + eos_token + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ bos_token + 'assistant: ' }}{% endif %}"
)


class AksisTokenizer(PreTrainedTokenizerFast):
    """A `PreTrainedTokenizerFast` with the Aksis special tokens and chat template.

    Build a new one from text with [`AksisTokenizer.train_from_texts`]; load a saved one with
    `AutoTokenizer.from_pretrained(path)`.

    Example:

    ```python
    >>> tok = AksisTokenizer.train_from_texts(["To be, or not to be: that is the question."] * 10, vocab_size=304)
    >>> tok.decode(tok("to be")["input_ids"])
    'to be'
    ```
    """

    model_input_names = ["input_ids", "attention_mask"]

    # No custom __init__: transformers then loads tokenizer.json as it is (merges included). The special tokens and
    # the chat template are set by `train_from_texts` and saved in tokenizer_config.json / chat_template.jinja.

    @classmethod
    def train_from_texts(
        cls, texts: Iterable[str], vocab_size: int = 10004, min_frequency: int = 2, show_progress: bool = False
    ) -> "AksisTokenizer":
        """Train a byte-level BPE of at most `vocab_size` tokens, the 4 special tokens (ids 0-3) included, as
        `config.vocab_size` counts them: the reference 10,004 is 10,000 learned tokens + 4 special tokens. A small
        corpus can yield fewer tokens than asked: size the model with `len(tokenizer)`."""
        tokenizer = Tokenizer(models.BPE(unk_token=None))
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
        specials = list(SPECIAL_TOKENS.values())
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=specials,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=show_progress,
        )
        tokenizer.train_from_iterator(texts, trainer=trainer)
        return cls(
            tokenizer_object=tokenizer,
            chat_template=CHAT_TEMPLATE,
            clean_up_tokenization_spaces=False,
            **SPECIAL_TOKENS,
        )


__all__ = ["CHAT_TEMPLATE", "SPECIAL_TOKENS", "AksisTokenizer"]
