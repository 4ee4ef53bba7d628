"""The inference layer (`lmforge.loading`, `lmforge.inference`) on the golden tiny model of each architecture
(tests/data/golden: its texts are committed, and other prompts are checked against the independent oracle), the
deprecated names it replaced, and the shape of the library around it: no import cycles among lmforge modules, and
the library never imports the command line."""

import ast
import logging
import re
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from transformers import AutoTokenizer, GenerationConfig

from lmforge import LmforgeError
from lmforge.inference import PLAIN_CHAT_TEMPLATE, GenerationSettings, TextGenerator
from lmforge.loading import load_model_and_processor
from lmforge.models import SPECS, LatentReasonerProcessor

from .conftest import REPO_ROOT
from .golden import PROMPTS, golden_text
from .models.contract import oracle_beam_search, oracle_generate
from .saved_models import LATENT_TEXT_A, LATENT_TEXT_B, load_auto, oracle_chat_text, oracle_text

ARCHITECTURES = ["aksis", "char_transformer", "ae_llm", "latent_reasoner"]
ANSWERING = ["ae_llm", "latent_reasoner"]
GREEDY = GenerationSettings(max_new_tokens=8, do_sample=False)  # the golden texts' 8 new tokens
SRC = REPO_ROOT / "src"


@pytest.fixture(scope="module")
def generators(tiny_model_dirs: dict[str, Path]) -> dict[str, TextGenerator]:
    return {model_type: TextGenerator.from_pretrained(folder) for model_type, folder in tiny_model_dirs.items()}


@pytest.fixture()
def inference_log(caplog: pytest.LogCaptureFixture):
    """The warnings of `lmforge.inference` (whose "lmforge" parent does not propagate after a training run)."""
    logger = logging.getLogger("lmforge.inference")
    logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.WARNING, logger="lmforge.inference"):
            yield caplog
    finally:
        logger.removeHandler(caplog.handler)


# --------------------------------------------------------------------------------------------------------------------
# Loading


@pytest.mark.parametrize("model_type", ARCHITECTURES)
def test_loading_gives_the_head_and_processor_of_the_spec(model_type: str, tiny_model_dirs: dict) -> None:
    model, processor = load_model_and_processor(tiny_model_dirs[model_type])
    spec = SPECS[model_type]
    assert type(model) is spec.head_class and not model.training
    assert isinstance(processor, spec.processor_class)


def test_a_latent_reasoner_folder_saved_before_the_processor_still_loads(
    tiny_model_dirs: dict, tmp_path: Path
) -> None:
    """Folders written by lmforge 0.1's `save_tokenizers` have the two tokenizers but no processor_config.json."""
    new = tiny_model_dirs["latent_reasoner"]
    old = tmp_path / "old"
    load_model_and_processor(new)[0].save_pretrained(old)
    AutoTokenizer.from_pretrained(new).save_pretrained(old)
    AutoTokenizer.from_pretrained(new, subfolder="encoder_tokenizer").save_pretrained(old / "encoder_tokenizer")
    assert not (old / "processor_config.json").exists()
    model, processor = load_model_and_processor(old)
    assert isinstance(processor, LatentReasonerProcessor)
    assert processor(LATENT_TEXT_A)["input_ids"] == load_model_and_processor(new)[1](LATENT_TEXT_A)["input_ids"]
    assert TextGenerator(model, processor).generate(LATENT_TEXT_A, GREEDY) == golden_text(
        "latent_reasoner", LATENT_TEXT_A
    )


# --------------------------------------------------------------------------------------------------------------------
# Generating


def test_generation_settings() -> None:
    with pytest.raises(LmforgeError, match="must be positive, got 0"):
        GenerationSettings(max_new_tokens=0)
    greedy = GenerationSettings(max_new_tokens=5, do_sample=False, temperature=0.7, top_k=3, num_beams=2, seed=1)
    assert greedy.generation_options() == {"max_new_tokens": 5, "do_sample": False, "num_beams": 2}
    sampled = GenerationSettings(max_new_tokens=5, do_sample=True, temperature=0.7, top_p=0.9)
    assert sampled.generation_options() == {"max_new_tokens": 5, "do_sample": True, "temperature": 0.7, "top_p": 0.9}


@pytest.mark.parametrize("model_type", ARCHITECTURES)
def test_generate_writes_the_golden_text(model_type: str, generators: dict) -> None:
    for prompt in PROMPTS[model_type]:
        assert generators[model_type].generate(prompt, GREEDY) == golden_text(model_type, prompt)


@pytest.mark.parametrize("model_type", ANSWERING)
def test_a_batch_of_inputs_is_answered_as_one_at_a_time(
    model_type: str, generators: dict, tiny_model_dirs: dict
) -> None:
    """Padded batches of 3, 3 and 1 texts of different lengths: each answer is the oracle's for its text alone."""
    generator = generators[model_type]
    texts = [*PROMPTS[model_type], "who? the cat", "paris", "rain fell all day long on the mat"]
    expected = [oracle_text(model_type, tiny_model_dirs[model_type], text, 8) for text in texts]
    assert generator.generate(texts, GREEDY, batch_size=3) == expected
    assert expected[:2] == [golden_text(model_type, text) for text in PROMPTS[model_type]]


def test_a_decoder_prompt_keeps_its_end_and_leaves_room(generators: dict, inference_log) -> None:
    generator = generators["aksis"]  # context 64
    with pytest.raises(LmforgeError, match=r"max new tokens \(64\) must be below the model's context \(64\)"):
        generator.generate("All:", GenerationSettings(max_new_tokens=64))
    prompt = "First Citizen: speak, speak. " * 30
    ids = generator.processor(prompt, add_special_tokens=False)["input_ids"]
    encoded = generator.encode([prompt], 8)
    assert encoded.inputs["input_ids"][0].tolist() == ids[-56:]
    assert "Prompt longer than 56 tokens: only its last 56 tokens are used" in inference_log.text
    # An empty prompt starts from the end-of-text token that separates the training documents.
    assert generator.encode([""], 8).inputs["input_ids"].tolist() == [[generator.processor.eos_token_id]]


def test_an_encoder_prompt_keeps_its_start_and_the_answer_fits_the_decoder(generators: dict, inference_log) -> None:
    generator = generators["ae_llm"]  # context 32
    question = " ".join(["who wrote hamlet?"] * 20)
    full = generator.processor(question)["input_ids"]
    encoded = generator.encode([question], 100)
    assert encoded.max_new_tokens == 32
    assert encoded.inputs["input_ids"][0].tolist() == [*full[:31], full[-1]]  # the start, and the closing </s>
    assert "only its first 32 tokens are used" in inference_log.text
    assert "max new tokens lowered from 100" in inference_log.text
    # LatentReasoner's decoder writes within its own context (64) after the prefix embeddings (3) and start token.
    assert generators["latent_reasoner"].encode([LATENT_TEXT_A], 100).max_new_tokens == 60
    assert generators["latent_reasoner"].max_new_tokens_limit == 60


def test_a_decoder_chat_goes_through_the_chat_template_and_keeps_the_recent_turns(
    generators: dict, tiny_model_dirs: dict
) -> None:
    generator = generators["aksis"]
    assert generator.chat_template == generator.processor.chat_template  # Aksis has its own
    assert generators["char_transformer"].chat_template == PLAIN_CHAT_TEMPLATE  # a character tokenizer has none
    short = [{"role": "user", "content": "Hello"}]
    template_ids = generator.processor.apply_chat_template(short, add_generation_prompt=True, return_dict=True)
    template_ids = list(template_ids["input_ids"])
    encoded = generator.encode_chat(short, 100)
    assert encoded.inputs["input_ids"][0].tolist() == list(template_ids)  # the whole conversation
    assert encoded.max_new_tokens == 64 - len(template_ids)  # and the room it leaves
    long = [{"role": "user" if i % 2 == 0 else "assistant", "content": "speak, speak. " * 5} for i in range(9)]
    encoded = generator.encode_chat(long, 100)
    assert encoded.max_new_tokens == 32  # at least half the context for the answer
    assert encoded.inputs["input_ids"].shape[1] == 32  # the most recent tokens of the conversation
    assert encoded.prompt_tokens > 64
    completion = generator.chat(long, GenerationSettings(max_new_tokens=100, do_sample=False))
    assert completion.completion_tokens == 32 and completion.finish_reason == "length"
    assert completion.text == oracle_chat_text("aksis", tiny_model_dirs["aksis"], long, 100)


@pytest.mark.parametrize("model_type", ANSWERING)
def test_an_encoder_decoder_chat_answers_the_last_user_message(
    model_type: str, generators: dict, tiny_model_dirs: dict
) -> None:
    generator = generators[model_type]
    question = PROMPTS[model_type][0]
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "an earlier question"},
        {"role": "assistant", "content": "an earlier answer"},
        {"role": "user", "content": question},
    ]
    many = GenerationSettings(max_new_tokens=100, do_sample=False)  # more than either decoder writes
    limit = generator.max_new_tokens_limit
    assert generator.chat(messages, many).text == oracle_text(model_type, tiny_model_dirs[model_type], question, limit)
    with pytest.raises(LmforgeError, match="answers the last user message; none was given"):
        generator.chat(messages[:1], many)


@pytest.mark.parametrize("model_type", ARCHITECTURES)
def test_stream_writes_the_golden_text_and_the_oracles_chat(
    model_type: str, generators: dict, tiny_model_dirs: dict
) -> None:
    generator, folder = generators[model_type], tiny_model_dirs[model_type]
    counts = []
    for prompt in PROMPTS[model_type]:
        stream = generator.stream(prompt, GREEDY)
        pieces = list(stream)
        assert "".join(pieces) == golden_text(model_type, prompt)
        assert stream.completion is not None and stream.completion.text == "".join(pieces)
        assert stream.completion.completion_tokens == 8 and stream.completion.finish_reason == "length"
        counts.append(len(pieces))
    assert max(counts) >= 2  # in pieces as generated (the streamer cuts at spaces and new lines), not all at the end
    prompt = PROMPTS[model_type][0]
    messages = [{"role": "user", "content": prompt}]
    chat = "".join(generator.stream(settings=GREEDY, messages=messages))
    assert chat == oracle_chat_text(model_type, folder, messages, 8)
    beams = GenerationSettings(max_new_tokens=8, do_sample=False, num_beams=2)  # beam search cannot stream
    [whole] = list(generator.stream(prompt, beams))
    if model_type in ("aksis", "char_transformer"):
        model, tokenizer, _ = load_auto(model_type, folder)
        ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        assert whole == tokenizer.decode(oracle_beam_search(model, ids, 2, 8), skip_special_tokens=True)
    else:
        assert whole == generator.generate(prompt, beams)


def test_a_cancelled_generation_stops_at_once(generators: dict) -> None:
    cancel = threading.Event()
    cancel.set()
    messages = [{"role": "user", "content": "First Citizen:"}]
    settings = GenerationSettings(max_new_tokens=20, do_sample=False)
    completion = generators["aksis"].chat(messages, settings, cancel=cancel)
    assert completion.completion_tokens == 1 and completion.finish_reason == "stop"
    stream = generators["aksis"].stream("First Citizen:", settings)
    calls = []

    def slow_after_the_first_token(module, args, output) -> None:  # a model slow enough to be left mid-generation
        calls.append(1)
        if len(calls) >= 2:
            stream.cancel.wait(30)

    handle = generators["aksis"].model.register_forward_hook(slow_after_the_first_token)
    try:
        for _ in stream:  # the golden model's first new token is a newline: a piece of its own
            break  # the reader leaves: the generation is stopped and its thread joined
    finally:
        handle.remove()
    assert stream.cancel.is_set()
    assert stream.completion is not None and stream.completion.finish_reason == "stop"
    assert stream.completion.completion_tokens <= 3


@torch.no_grad()
def oracle_interpolation(folder: Path, text_a: str, text_b: str, alpha: float, max_new_tokens: int) -> str:
    """The oracle's greedy text from (1 - alpha) * latent(text_a) + alpha * latent(text_b): each latent vector from a
    forward pass of the saved LatentReasoner (transformers' Auto class), the mix computed here."""
    model, reader, writer = load_auto("latent_reasoner", folder)
    latents = []
    for text in (text_a, text_b):
        ids = torch.tensor([reader(text)["input_ids"]])
        latents.append(model.get_latent_vector(ids, attention_mask=torch.ones_like(ids)))
    mix = (1 - alpha) * latents[0] + alpha * latents[1]
    eos = model.generation_config.eos_token_id
    new = oracle_generate(model, ids, max_new_tokens, eos_token_id=eos, idea_vectors=mix)  # the ids are not read
    return str(writer.decode(new, skip_special_tokens=True)).strip()


def test_interpolate_decodes_from_the_mix_of_two_latent_vectors(generators: dict, tiny_model_dirs: dict) -> None:
    generator = generators["latent_reasoner"]
    assert "interpolate" in generator.modes
    assert generator.interpolate(LATENT_TEXT_A, LATENT_TEXT_B, 0.0, GREEDY) == golden_text(
        "latent_reasoner", LATENT_TEXT_A
    )
    assert generator.interpolate(LATENT_TEXT_A, LATENT_TEXT_B, 1.0, GREEDY) == golden_text(
        "latent_reasoner", LATENT_TEXT_B
    )
    streamed = "".join(generator.stream(LATENT_TEXT_A, GREEDY, interpolate_with=LATENT_TEXT_B, alpha=0.5))
    halfway = generator.interpolate(LATENT_TEXT_A, LATENT_TEXT_B, 0.5, GREEDY)
    assert streamed == halfway
    # alpha 0.5 decodes from exactly the linear mix of the two latent vectors, as the oracle decodes it
    folder = tiny_model_dirs["latent_reasoner"]
    alone = oracle_interpolation(folder, LATENT_TEXT_A, LATENT_TEXT_B, 0.0, 8)
    assert alone == golden_text("latent_reasoner", LATENT_TEXT_A)  # the oracle reads the model as lmforge does
    assert halfway == oracle_interpolation(folder, LATENT_TEXT_A, LATENT_TEXT_B, 0.5, 8)
    with pytest.raises(LmforgeError, match=r"a aksis model has no latent space .* needs a latent_reasoner model"):
        generators["aksis"].interpolate("a", "b", 0.5, GREEDY)


def test_the_pad_token_falls_back_to_the_end_of_sequence_token() -> None:
    def generator(pad: int | None) -> TextGenerator:
        config = SimpleNamespace(model_type="x", is_encoder_decoder=False, max_position_embeddings=16)
        model = SimpleNamespace(config=config, generation_config=GenerationConfig())
        return TextGenerator(model, SimpleNamespace(pad_token_id=pad, eos_token_id=7, chat_template=None))

    assert generator(None).generation_config(GREEDY).pad_token_id == 7
    assert generator(0).generation_config(GREEDY).pad_token_id == 0  # a pad id of 0 is a pad id


def test_the_readme_examples_of_the_inference_layer_run(tiny_model_dirs: dict, capsys) -> None:
    """The README's Python examples of `lmforge.loading` / `lmforge.inference`, as written, on the tiny models."""
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    blocks = [
        block for block in re.findall(r"```python\n(.*?)```", readme, flags=re.S) if "lmforge.inference" in block
    ]
    assert len(blocks) == 2
    folders = {"outputs/quickstart": "aksis", "outputs/latent-reasoner-dialogsum": "latent_reasoner"}
    for block in blocks:
        for path, model_type in folders.items():
            block = block.replace(f'"{path}"', repr(str(tiny_model_dirs[model_type])))
        assert "outputs/" not in block
        exec(compile(block, "README.md", "exec"), {})
    assert len(capsys.readouterr().out.strip()) > 0


# --------------------------------------------------------------------------------------------------------------------
# The names lmforge 0.1 had, kept for one release


def test_deprecated_generation_functions_still_work(generators: dict, tiny_model_dirs: dict) -> None:
    from lmforge import generation

    folder = tiny_model_dirs["aksis"]
    with pytest.warns(FutureWarning, match="load_model_and_tokenizer is deprecated"):
        model, tokenizer = generation.load_model_and_tokenizer(folder)
    with pytest.warns(FutureWarning, match="generate_text is deprecated"):
        text = generation.generate_text(model, tokenizer, "First Citizen:", max_new_tokens=8, do_sample=False)
    assert text == golden_text("aksis", "First Citizen:")
    with pytest.warns(FutureWarning, match="read_model_type is deprecated"):
        assert generation.read_model_type(folder) == "aksis"
    with pytest.warns(FutureWarning, match="build_generation_config is deprecated"):
        config = generation.build_generation_config(model, max_new_tokens=3, do_sample=False, temperature=0.5)
    assert config.max_new_tokens == 3 and config.do_sample is False
    reasoner = generators["latent_reasoner"]
    with pytest.warns(FutureWarning, match="generate_interpolated_text is deprecated"):
        mixed = generation.generate_interpolated_text(
            reasoner.model, reasoner.processor, LATENT_TEXT_A, LATENT_TEXT_B, 1.0, max_new_tokens=8, do_sample=False
        )
    assert mixed == golden_text("latent_reasoner", LATENT_TEXT_B)


def test_deprecated_tokenizer_pair_is_the_processor(tiny_model_dirs: dict, tmp_path: Path) -> None:
    from lmforge.tokenizer_pair import TokenizerPair

    folder = tiny_model_dirs["latent_reasoner"]
    with pytest.warns(FutureWarning, match="TokenizerPair is deprecated"):
        loaded = TokenizerPair.from_pretrained(folder)
    assert type(loaded) is LatentReasonerProcessor
    with pytest.warns(FutureWarning, match="TokenizerPair is deprecated"):
        pair = TokenizerPair(loaded.encoder_tokenizer, loaded.tokenizer)  # the old order: encoder, decoder
    assert isinstance(pair, LatentReasonerProcessor)
    assert pair.encoder_tokenizer is loaded.encoder_tokenizer and pair.decoder_tokenizer is loaded.tokenizer
    assert pair(LATENT_TEXT_A)["input_ids"] == loaded(LATENT_TEXT_A)["input_ids"]
    assert TokenizerPair.is_saved_in(folder)
    pair.save_pretrained(tmp_path)
    assert '"processor_class": "LatentReasonerProcessor"' in (tmp_path / "processor_config.json").read_text()
    assert type(load_model_and_processor(folder)[1]) is LatentReasonerProcessor


def test_other_moved_names_warn(tmp_path: Path) -> None:
    import lmforge.adapters
    import lmforge.cli.chat
    import lmforge.demo
    import lmforge.inference

    with pytest.warns(FutureWarning, match="use lmforge.inference.PLAIN_CHAT_TEMPLATE"):
        assert lmforge.cli.chat.PLAIN_CHAT_TEMPLATE == lmforge.inference.PLAIN_CHAT_TEMPLATE
    with pytest.warns(FutureWarning, match="lmforge.loading"):
        load_adapter_model = lmforge.adapters.load_adapter_model
    with pytest.raises(LmforgeError, match=r"adapter_config\.json is not valid JSON"):
        (tmp_path / "adapter_config.json").write_text("{not json")
        load_adapter_model(tmp_path)

    def run(streamer) -> None:
        streamer.put(torch.tensor([[0]]))  # the prompt, skipped
        streamer.put(torch.tensor([7]))
        streamer.end()

    tokenizer = SimpleNamespace(decode=lambda ids, **kwargs: "".join(f"<{i}>" for i in ids))
    with pytest.warns(FutureWarning, match="stream_text is deprecated"):
        texts = list(lmforge.demo.stream_text(run, tokenizer))
    assert texts == ["<7>"]


# --------------------------------------------------------------------------------------------------------------------
# The shape of the library: no import cycles, and the command line on top, never underneath


def module_name(path: Path, src: Path) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(src: Path, package: str) -> dict[str, set[str]]:
    """module -> the modules of `package` it imports, anywhere in its code (inside functions too): `import a.b`,
    `from a import b` (the submodule b, else the module a) and relative imports, resolved."""
    modules = {module_name(path, src): path for path in sorted((src / package).rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        here = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = here.split(".")[: len(here.split(".")) - node.level + 1]
                    module = ".".join([*base, *([node.module] if node.module else [])])
                else:
                    module = node.module or ""
                for alias in node.names:
                    submodule = f"{module}.{alias.name}"
                    targets.add(submodule if submodule in modules else module)
        graph[name] = {target for target in targets if target in modules and target != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan): each is an import cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def is_cli(module: str) -> bool:
    return module == "lmforge.__main__" or module == "lmforge.cli" or module.startswith("lmforge.cli.")


def test_the_import_checks_find_what_they_look_for(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "cli").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "cli" / "__init__.py").write_text("")
    (package / "a.py").write_text("from . import b\n")
    (package / "b.py").write_text("def f():\n    from .c import g\n")
    (package / "c.py").write_text("from pkg.a import x\nfrom .cli import main\n")
    graph = import_graph(tmp_path, "pkg")
    assert cycles(graph) == [["pkg.a", "pkg.b", "pkg.c"]]
    assert graph["pkg.c"] == {"pkg.a", "pkg.cli"}


def test_no_import_cycles_among_lmforge_modules() -> None:
    assert cycles(import_graph(SRC, "lmforge")) == []


def test_the_library_never_imports_the_command_line() -> None:
    graph = import_graph(SRC, "lmforge")
    library = sorted(module for module in graph if not is_cli(module))
    assert {"lmforge.inference", "lmforge.loading", "lmforge.serve", "lmforge.demo"} <= set(library)
    assert {
        module: sorted(filter(is_cli, graph[module])) for module in library if any(map(is_cli, graph[module]))
    } == {}
    # And at run time: every library module imported in a fresh interpreter leaves lmforge.cli unimported. (The
    # `evaluate` metric scripts in evaluation/metrics/ are loaded by `evaluate.load`, not imported.)
    importable = [module for module in library if ".metrics." not in module]
    script = (
        "import importlib, sys\n"
        f"for name in {importable!r}:\n"
        "    importlib.import_module(name)\n"
        "print(sorted(name for name in sys.modules if name.startswith('lmforge.cli')))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_the_inference_path_never_branches_on_a_model_type() -> None:
    """Per-model facts come from the specs: the inference path never names a model type."""
    files = ["inference.py", "loading.py", "serve.py", "demo.py", "cli/chat.py", "evaluation/perplexity.py"]
    hits = [
        f"{name}:{node.lineno}: {node.value!r}"
        for name in files
        for node in ast.walk(ast.parse((SRC / "lmforge" / name).read_text(encoding="utf-8")))
        if isinstance(node, ast.Constant) and node.value in SPECS
    ]
    assert hits == []
