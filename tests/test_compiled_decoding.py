"""`--compile-decoding` (`TextGenerator(compile_decoding=True)`): the decoders generate through transformers' compiled
decoding step and write what eager decoding writes (the golden texts, the oracle's chat), plain, streamed, in a batch
and from the server; one compiled graph serves every prompt and length of a batch size; the architectures that cannot
compile their step get a one-line error."""

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch._dynamo.utils import counters

from lmforge import LmforgeError
from lmforge.inference import BatchRequest, GenerationSettings, TextGenerator, compiled_decoding
from lmforge.serve import LmforgeServer, ServeSettings

from .golden import PROMPTS, golden_text
from .saved_models import oracle_chat_text, oracle_text
from .test_serve import events, running
from .test_serve import request as serve_request

DECODERS = ("aksis", "char_transformer")
GREEDY = GenerationSettings(max_new_tokens=8, do_sample=False)  # the golden texts' 8 new tokens


class CompiledSteps:
    """Counts the calls of a model's compiled decoding step (transformers' `_compiled_call`, made at the first
    compiled `generate()`; counted once `wrap` is called) and the graphs Dynamo compiled since this was made."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model, self.calls = model, 0
        self.graphs_before = counters["stats"]["unique_graphs"]

    def wrap(self) -> None:
        compiled_call = self.model._compiled_call

        def counted(*args: object, **kwargs: object) -> object:
            self.calls += 1
            return compiled_call(*args, **kwargs)

        self.model._compiled_call = counted

    @property
    def graphs(self) -> int:
        return counters["stats"]["unique_graphs"] - self.graphs_before


@pytest.fixture(scope="module")
def compiled(tiny_model_dirs: dict[str, Path]) -> Iterator[dict[str, TextGenerator]]:
    torch._dynamo.reset()
    yield {m: TextGenerator.from_pretrained(tiny_model_dirs[m], compile_decoding=True) for m in DECODERS}
    torch._dynamo.reset()


@pytest.mark.parametrize("model_type", DECODERS)
def test_compiled_decoding_writes_the_golden_texts_with_one_graph(
    model_type: str, compiled: dict, tiny_model_dirs: dict
) -> None:
    generator, folder = compiled[model_type], tiny_model_dirs[model_type]
    config = generator.generation_config(GREEDY)
    assert config.cache_implementation == "static" and config.max_cache_len == generator.context
    assert config.compile_config is not None and config.compile_config._compile_all_devices
    steps = CompiledSteps(generator.model)
    first, *others = PROMPTS[model_type]
    assert generator.generate(first, GREEDY) == golden_text(model_type, first)  # compiles
    steps.wrap()
    for prompt in others:
        assert generator.generate(prompt, GREEDY) == golden_text(model_type, prompt)
    # another length and a chat: the same graph (the static cache is the whole context every time)
    longer = GenerationSettings(max_new_tokens=12, do_sample=False)
    assert generator.generate(first, longer) == oracle_text(model_type, folder, first, 12)
    messages = [{"role": "user", "content": first}]
    assert generator.chat(messages, GREEDY).text == oracle_chat_text(model_type, folder, messages, 8)
    # streamed (generate() runs in a thread)
    assert "".join(generator.stream(first, GREEDY)) == golden_text(model_type, first)
    assert steps.calls == 7 * len(others) + 11 + 7 + 7  # every step after the eager prefill
    assert steps.graphs == 1, "another prompt, length or thread compiled another graph"
    # a batch of two (left-padded) rows: its own graph, each row what it writes alone
    texts = [first, "A longer prompt than that"]
    requests = [BatchRequest(generator.encode([text], 8)) for text in texts]
    assert [c.text for c in generator.run_batch(requests, GREEDY)] == [
        oracle_text(model_type, folder, text, 8) for text in texts
    ]
    assert steps.graphs == 2
    # past Dynamo's limit of graphs (8 by default; here the two it has) a new batch size decodes eagerly, not fails
    texts.append("First")
    requests = [BatchRequest(generator.encode([text], 8)) for text in texts]
    try:
        with torch._dynamo.config.patch(recompile_limit=2):
            answers = [c.text for c in generator.run_batch(requests, GREEDY)]
        assert steps.graphs == 2
    finally:  # the limit, once hit, stops Dynamo compiling that code for good (shared with the other model's step)
        torch._dynamo.reset()
    assert answers == [oracle_text(model_type, folder, text, 8) for text in texts]


def test_the_server_decodes_through_the_compiled_step(tiny_model_dirs: dict) -> None:
    folder, prompt = Path(tiny_model_dirs["aksis"]), PROMPTS["aksis"][0]
    body = {"model": "m", "prompt": prompt, "max_tokens": 8, "temperature": 0}
    httpd: LmforgeServer
    with running(folder, ServeSettings(max_concurrency=2, compile_decoding=True)) as httpd:
        generator = httpd.app.generator
        assert generator.compile_decoding
        plain = json.loads(serve_request(httpd, "POST", "/v1/completions", body)[2])
        streamed = serve_request(httpd, "POST", "/v1/completions", {**body, "stream": True})[2]
        assert hasattr(generator.model, "_compiled_call"), "the server did not decode through the compiled step"
    assert plain["choices"][0]["text"] == golden_text("aksis", prompt)
    chunks = events(streamed)
    assert chunks[-1] == "[DONE]"
    assert "".join(chunk["choices"][0]["text"] for chunk in chunks[:-1]) == golden_text("aksis", prompt)


@pytest.mark.parametrize("model_type", ["ae_llm", "latent_reasoner"])
def test_architectures_that_cannot_compile_their_step_get_a_one_line_error(
    model_type: str, tiny_model_dirs: dict, capsys
) -> None:
    from lmforge.cli.main import main

    folder = str(tiny_model_dirs[model_type])
    with pytest.raises(LmforgeError, match=f"this {model_type} model does not: leave out --compile-decoding"):
        TextGenerator.from_pretrained(folder, compile_decoding=True)
    assert main(["generate", "--model-path", folder, "--prompt", "hi", "--compile-decoding"]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "compiled decoding needs a decoder" in errors[0]


def test_cli_generate_with_compile_decoding(tiny_model_dirs: dict, capsys) -> None:
    from lmforge.cli.main import main

    folder, prompt = str(tiny_model_dirs["char_transformer"]), PROMPTS["char_transformer"][0]
    argv = ["generate", "--model-path", folder, "--prompt", prompt, "--max-new-tokens", "8", "--compile-decoding"]
    graphs = counters["stats"]["unique_graphs"]
    try:
        assert main(argv) == 0
    finally:
        torch._dynamo.reset()
    assert capsys.readouterr().out == prompt + golden_text("char_transformer", prompt) + "\n"
    assert counters["stats"]["unique_graphs"] > graphs, "the command decoded eagerly: Dynamo compiled no graph"


def test_compiled_decoding_keeps_the_other_settings() -> None:
    config = GenerationSettings(max_new_tokens=5, do_sample=True, top_k=3)
    from transformers import GenerationConfig

    generation = compiled_decoding(GenerationConfig(**config.generation_options()), 64)
    assert (generation.max_new_tokens, generation.do_sample, generation.top_k) == (5, True, 3)
    assert (generation.cache_implementation, generation.max_cache_len) == ("static", 64)
    assert not generation.compile_config.fullgraph and generation.compile_config.dynamic is False
