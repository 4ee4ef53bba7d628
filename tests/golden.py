"""Golden outputs: a tiny seeded model of each architecture, committed with the greedy token ids it must produce.

`tests/data/golden/<model_type>/` holds a saved model folder (config, `model.safetensors`, generation config,
tokenizer or processor files; no code files: the tests add the current code where they need it) and `golden.json`:
for each prompt, its token ids and the `MAX_NEW_TOKENS` greedy new token ids (and their text). The weights are
committed, not rebuilt from a seed, so the golden ids do not depend on weight-initialisation code, which differs
between transformers releases; a change in lmforge, transformers, torch or tokenizers that changes what a model
writes shows up as a diff against `golden.json` (tests/test_golden.py and the end-to-end tests).

The ids come from `tests.models.contract.oracle_generate` (plain full forward passes, no cache, no `generate()`),
and every choice is at least `MIN_MARGIN` logits ahead of the runner-up, so numerical noise cannot flip a token.

To regenerate them on purpose (a deliberate change of a model's forward pass or tokenizer), from the repository root:

    python -m tests.golden                      # rebuild every folder and golden.json, then review `git diff`
    python -m tests.golden --only aksis         # one architecture
    python -m tests.golden --check              # recompute with the installed libraries and compare, writing nothing
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

GOLDEN_DIR = Path(__file__).resolve().parent / "data" / "golden"
ARCHITECTURES = ("aksis", "char_transformer", "ae_llm", "latent_reasoner")
MAX_NEW_TOKENS = 8
MIN_MARGIN = 0.01  # logits between the chosen token and the runner-up, at every step of every golden prompt
PROMPTS = {
    "aksis": ["First Citizen:", "All:\nSpeak, speak."],
    "char_transformer": ["First Citizen:", "All:\nSpeak, speak."],
    "ae_llm": ["who wrote hamlet?", "what is the capital of france?"],
    "latent_reasoner": ["the cat sat on a mat", "rain fell all day long"],
}
SAMPLE_TEXT = (
    "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
    "First Citizen:\nYou are all resolved rather to die than to famish?\n\nAll:\nResolved. resolved.\n\n"
    "First Citizen:\nFirst, you know Caius Marcius is chief enemy to the people.\n\n"
)
QA_TEXTS = ["who wrote hamlet?", "shakespeare wrote it.", "what is the capital of france?", "paris is the capital."]
WORDS = [
    "the",
    "cat",
    "sat",
    "on",
    "a",
    "mat",
    "dog",
    "ran",
    "in",
    "park",
    "sun",
    "was",
    "warm",
    "and",
    "bright",
    "rain",
    "fell",
    "all",
    "day",
    "long",
    "who",
    "wrote",
    "it",
    "saw",
    "she",
    "he",
    "we",
]


# --------------------------------------------------------------------------------------------------------------------
# Reading the committed data


def golden_folder(model_type: str) -> Path:
    return GOLDEN_DIR / model_type


def load_golden(model_type: str) -> dict[str, Any]:
    """`golden.json` of one architecture: {"max_new_tokens", "prompts": [{"text", "input_ids", "new_ids",
    "new_text"}...], ...}."""
    return dict(json.loads((golden_folder(model_type) / "golden.json").read_text(encoding="utf-8")))


def golden_text(model_type: str, prompt: str) -> str:
    """The committed greedy new text (`MAX_NEW_TOKENS` tokens) for one of the golden prompts."""
    for case in load_golden(model_type)["prompts"]:
        if case["text"] == prompt:
            return str(case["new_text"])
    raise KeyError(f"{prompt!r} is not a golden prompt of {model_type}")


def prompt_ids(model_type: str, processor: Any, text: str) -> list[int]:
    """The token ids a model reads for `text`, by lmforge's rules: a decoder reads the text without special tokens
    (it continues it), an encoder-decoder reads it with them (as in training); LatentReasoner through its
    processor, i.e. its encoder's tokenizer."""
    if model_type in ("aksis", "char_transformer"):
        return list(processor(text, add_special_tokens=False)["input_ids"])
    return list(processor(text)["input_ids"])


def decode_new(model_type: str, processor: Any, ids: list[int]) -> str:
    """The new text of `ids` as lmforge prints it (special tokens left out; an encoder-decoder's answer stripped)."""
    text = str(processor.decode(ids, skip_special_tokens=True))
    return text if model_type in ("aksis", "char_transformer") else text.strip()


# --------------------------------------------------------------------------------------------------------------------
# Building the tiny models (only when regenerating)


def _word_tokenizer(specials: list[str], pad: str, unk: str, **special_tokens: str) -> Any:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(specials + WORDS)}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token=unk))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token=pad, unk_token=unk, **special_tokens)


def build_aksis(seed: int) -> tuple[Any, Any]:
    from lmforge.models import AksisConfig, AksisForCausalLM, AksisTokenizer

    tokenizer = AksisTokenizer.train_from_texts([SAMPLE_TEXT] * 20, vocab_size=204)
    torch.manual_seed(seed)
    config = AksisConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=64,
        hidden_dropout=0.0,
        initializer_range=0.2,
    )
    return AksisForCausalLM(config).eval(), tokenizer


def build_char_transformer(seed: int) -> tuple[Any, Any]:
    from lmforge.models import CharTransformerConfig, CharTransformerForCausalLM, CharTransformerTokenizer

    tokenizer = CharTransformerTokenizer.from_text(SAMPLE_TEXT)
    torch.manual_seed(seed)
    config = CharTransformerConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=64,
        hidden_dropout=0.0,
        attention_dropout=0.0,
        initializer_range=0.2,
    )
    return CharTransformerForCausalLM(config).eval(), tokenizer


def build_ae_llm(seed: int) -> tuple[Any, Any]:
    from lmforge.models import AELLMConfig, AELLMForConditionalGeneration, AELLMTokenizer

    tokenizer = AELLMTokenizer.train_from_texts(QA_TEXTS * 10, vocab_size=300)
    torch.manual_seed(seed)
    config = AELLMConfig(
        vocab_size=len(tokenizer),
        embedding_size=16,
        hidden_size=24,
        latent_size=20,
        intermediate_size=32,
        max_position_embeddings=32,
        memory_slots=8,
        hyper_adapter_size=16,
        dropout=0.0,
    )
    return AELLMForConditionalGeneration(config).eval(), tokenizer


def build_latent_reasoner(seed: int) -> tuple[Any, Any]:
    from transformers import BertConfig, GPT2Config

    from lmforge.models import LatentReasonerConfig, LatentReasonerForConditionalGeneration
    from lmforge.models.latent_reasoner import LatentReasonerProcessor

    encoder_tokenizer = _word_tokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]"], "[PAD]", "[UNK]")
    decoder_tokenizer = _word_tokenizer(
        ["<pad>", "<s>", "</s>", "<unk>"], "<pad>", "<unk>", bos_token="<s>", eos_token="</s>"
    )
    encoder = BertConfig(
        vocab_size=len(encoder_tokenizer),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        pad_token_id=0,
    )
    decoder = GPT2Config(
        vocab_size=len(decoder_tokenizer),
        n_embd=48,
        n_layer=1,
        n_head=2,
        n_positions=64,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
        initializer_range=0.3,
    )
    config = LatentReasonerConfig(
        encoder=encoder,
        decoder=decoder,
        idea_size=16,
        compression_hidden_size=24,
        middle_hidden_size=20,
        num_prefix_tokens=3,
        dropout=0.0,
        initializer_range=0.3,
    )
    torch.manual_seed(seed)
    model = LatentReasonerForConditionalGeneration(config).eval()
    return model, LatentReasonerProcessor(decoder_tokenizer, encoder_tokenizer)


def training_batch(model_type: str, processor: Any) -> dict[str, torch.Tensor]:
    """What the tiny model learns a little of before it is committed, so that it writes text rather than random bytes
    and its greedy choices are clear: blocks of the sample text (decoders), the questions and answers (AE-LLM), each
    text summarised by its first three words (LatentReasoner)."""
    if model_type in ("aksis", "char_transformer"):
        ids = processor(SAMPLE_TEXT * 3, add_special_tokens=False)["input_ids"]
        blocks = torch.tensor([ids[i : i + 32] for i in range(0, len(ids) - 32, 16)])
        return {"input_ids": blocks, "labels": blocks}
    if model_type == "ae_llm":
        questions, answers = QA_TEXTS[0::2], QA_TEXTS[1::2]
        inputs = processor(questions, padding=True, return_tensors="pt")
        labels = processor(answers, padding=True, add_special_tokens=False, return_tensors="pt")["input_ids"]
        labels[labels == processor.pad_token_id] = -100
        return {"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"], "labels": labels}
    texts = [" ".join(WORDS[i : i + 6]) for i in range(0, len(WORDS) - 6, 3)] + PROMPTS["latent_reasoner"]
    inputs = processor.encoder_tokenizer(texts, padding=True, return_tensors="pt")
    labels = processor.tokenizer([" ".join(text.split()[:3]) + " </s>" for text in texts], padding=True)["input_ids"]
    labels = torch.tensor(labels)
    labels[labels == processor.tokenizer.pad_token_id] = -100
    return {"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"], "labels": labels}


TRAINING_STEPS = {"aksis": 40, "char_transformer": 40, "ae_llm": 200, "latent_reasoner": 40}


def train_briefly(model_type: str, model: Any, processor: Any) -> Any:
    batch = training_batch(model_type, processor)
    steps = TRAINING_STEPS[model_type]
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-2)
    model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        model(**batch).loss.backward()
        optimizer.step()
    return model.eval()


BUILDERS: dict[str, Callable[[int], tuple[Any, Any]]] = {
    "aksis": build_aksis,
    "char_transformer": build_char_transformer,
    "ae_llm": build_ae_llm,
    "latent_reasoner": build_latent_reasoner,
}


def special_ids(processor: Any) -> set[int]:
    tokenizer = getattr(processor, "tokenizer", processor)  # a processor writes with its (decoder) tokenizer
    return set(tokenizer.all_special_ids)


def compute_cases(model_type: str, model: Any, processor: Any) -> list[dict[str, Any]]:
    """The golden record of every prompt: ids, oracle new ids and text, and the smallest margin on the way."""
    cases = []
    for text in PROMPTS[model_type]:
        ids = prompt_ids(model_type, processor, text)
        margins: list[float] = []
        new = oracle_new_ids(model, ids, margins)
        cases.append(
            {
                "text": text,
                "input_ids": ids,
                "new_ids": new,
                "new_text": decode_new(model_type, processor, new),
                "min_margin": round(min(margins), 4),
            }
        )
    return cases


def oracle_new_ids(model: Any, ids: list[int], margins: list[float] | None = None) -> list[int]:
    from tests.models.contract import oracle_generate

    return oracle_generate(model, ids, MAX_NEW_TOKENS, margins=margins)


def acceptable(cases: list[dict[str, Any]], specials: set[int]) -> bool:
    """A model worth committing: clear choices, no special token (so generation never stops early and every token
    shows in the text), varied tokens, and a different continuation for each prompt."""
    for case in cases:
        new = case["new_ids"]
        text = case["new_text"]
        if case["min_margin"] < MIN_MARGIN or specials & set(new) or len(set(new)) < 3 or not text.strip():
            return False
        if not all(character.isprintable() or character in "\n " for character in text):
            return False  # no stray bytes: a streamed text must add up to the whole
    return len({tuple(case["new_ids"]) for case in cases}) == len(cases)


def save_folder(model: Any, processor: Any, folder: Path) -> None:
    """The model and processor, without code files or the `auto_map` entries that point at them."""
    if folder.exists():
        shutil.rmtree(folder)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    for path in list(folder.rglob("*.py")):
        path.unlink()
    for path in folder.rglob("*.json"):
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict) and ({"auto_map", "custom_pipelines"} & set(data)):
            data.pop("auto_map", None)
            data.pop("custom_pipelines", None)
            path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def dump_record(record: dict[str, Any]) -> str:
    """golden.json: the header fields, then one line per prompt (short diffs when a golden id changes)."""
    header = {key: value for key, value in record.items() if key != "prompts"}
    prompts = ",\n".join("  " + json.dumps(case, ensure_ascii=False) for case in record["prompts"])
    return json.dumps(header, indent=1)[:-2] + ',\n "prompts": [\n' + prompts + "\n ]\n}\n"


def versions() -> dict[str, str]:
    import tokenizers
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__, "tokenizers": tokenizers.__version__}


def regenerate(model_type: str, seeds: range = range(200)) -> dict[str, Any]:
    """Search the first seed whose tiny model is `acceptable`, save it and its golden.json."""
    for seed in seeds:
        model, processor = BUILDERS[model_type](seed)
        train_briefly(model_type, model, processor)
        cases = compute_cases(model_type, model, processor)
        if acceptable(cases, special_ids(processor)):
            folder = golden_folder(model_type)
            save_folder(model, processor, folder)
            record = {
                "model_type": model_type,
                "seed": seed,
                "max_new_tokens": MAX_NEW_TOKENS,
                "created_with": versions(),
                "prompts": cases,
            }
            (folder / "golden.json").write_text(dump_record(record), encoding="utf-8")
            return record
    raise SystemExit(f"no acceptable {model_type} model in seeds {seeds.start}-{seeds.stop - 1}")


def check(model_type: str) -> list[str]:
    """Recompute the golden ids from the committed folder with the installed libraries; the differences."""
    from lmforge.loading import load_model_and_processor

    model, processor = load_model_and_processor(golden_folder(model_type))
    differences = []
    for want, got in zip(load_golden(model_type)["prompts"], compute_cases(model_type, model, processor), strict=True):
        for key in ("input_ids", "new_ids", "new_text"):
            if want[key] != got[key]:
                differences.append(f"{model_type} {want['text']!r} {key}: committed {want[key]!r}, now {got[key]!r}")
    return differences


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.golden", description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=ARCHITECTURES, action="append", help="Only this architecture (repeatable).")
    parser.add_argument("--check", action="store_true", help="Recompute and compare; write nothing.")
    args = parser.parse_args(argv)
    import lmforge  # noqa: F401  (registers the Auto classes)

    torch.set_num_threads(1)
    names = args.only or list(ARCHITECTURES)
    if args.check:
        differences = [line for name in names for line in check(name)]
        print("\n".join(differences) or f"golden ids unchanged ({', '.join(names)}; {versions()})")
        return 1 if differences else 0
    for name in names:
        record = regenerate(name)
        margins = min(case["min_margin"] for case in record["prompts"])
        print(f"{name}: seed {record['seed']}, smallest margin {margins}, written to {golden_folder(name)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
