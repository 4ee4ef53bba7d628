"""AE-LLM tokenizer: a lower-cased byte-level BPE of about 1,800 tokens (4 special tokens included), trained with
`tokenizers`. Every encoded text ends with the eos token `</s>`, so the decoder learns where an answer stops, and starts
with a space (removed again when decoding), so a word has the same tokens first in a text as inside a sentence: an
answer is then written with the very tokens it has in the question's sentence, which the copy head copies."""

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

SPECIAL_TOKENS = {"pad_token": "<pad>", "unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>"}


class AELLMTokenizer(PreTrainedTokenizerFast):
    """A `PreTrainedTokenizerFast` with the AE-LLM special tokens (pad 0, unk 1, bos 2, eos 3).

    Build a new one from text with [`AELLMTokenizer.train_from_texts`]; load a saved one with
    `AutoTokenizer.from_pretrained(path)`. Text is NFKC-normalised and lower-cased; `tokenizer(text)` appends `</s>`
    (pass `add_special_tokens=False` to leave it out).

    Example:

    ```python
    >>> tok = AELLMTokenizer.train_from_texts(["What is the capital of France? Paris."] * 10, vocab_size=300)
    >>> tok.decode(tok("Paris")["input_ids"], skip_special_tokens=True)
    'paris'
    ```
    """

    model_input_names = ["input_ids", "attention_mask"]

    # No custom __init__: transformers then loads tokenizer.json as it is (merges included). The special tokens are set
    # by `train_from_texts` and saved in tokenizer_config.json.

    @classmethod
    def train_from_texts(
        cls,
        texts: Iterable[str],
        vocab_size: int = 1800,
        min_frequency: int = 2,
        show_progress: bool = False,
        add_prefix_space: bool = True,
    ) -> "AELLMTokenizer":
        """Train a lower-cased byte-level BPE of at most `vocab_size` tokens, the 4 special tokens (ids 0-3) included.

        A small corpus can yield fewer tokens than asked: size the model with `len(tokenizer)`. With
        `add_prefix_space` (the default; a saved tokenizer keeps the setting it was trained with) every text is read
        after a space, which decoding drops again, so "Denver" has the same tokens in "Denver Broncos" as in "the
        Denver Broncos".
        """
        specials = list(SPECIAL_TOKENS.values())
        if vocab_size < len(specials) + 256:
            raise ValueError(f"vocab_size ({vocab_size}) must hold the 4 special tokens and the 256 bytes (>= 260).")
        tokenizer = Tokenizer(models.BPE(unk_token=None))
        tokenizer.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=add_prefix_space)
        tokenizer.decoder = (
            decoders.Sequence([decoders.ByteLevel(), decoders.Strip(" ", 1, 0)])  # the added space goes again
            if add_prefix_space
            else decoders.ByteLevel()
        )
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=specials,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=show_progress,
        )
        tokenizer.train_from_iterator(texts, trainer=trainer)
        eos = SPECIAL_TOKENS["eos_token"]
        tokenizer.post_processor = processors.Sequence(
            [
                processors.ByteLevel(trim_offsets=False),
                processors.TemplateProcessing(
                    single=f"$A {eos}",
                    pair=f"$A {eos} $B {eos}",
                    special_tokens=[(eos, tokenizer.token_to_id(eos))],
                ),
            ]
        )
        return cls(tokenizer_object=tokenizer, clean_up_tokenization_spaces=False, **SPECIAL_TOKENS)


__all__ = ["SPECIAL_TOKENS", "AELLMTokenizer"]
