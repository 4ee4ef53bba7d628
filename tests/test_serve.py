"""`lmforge serve`: the OpenAI-compatible API answered by a real server on 127.0.0.1 (a free port), then stopped.

The model is a copy of a golden model (tests/data/golden); every answer, plain or streamed, is checked against the
golden text or the independent oracle on the conversation's chat-template ids (tests/saved_models.py), never
against another answer of the server. The official `openai` client is the test client wherever it can be. Busy-server
and batching behaviour is driven from outside: generations held back until the test lets them go, then counted
through the server's `/metrics`."""

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch
from huggingface_hub import InferenceClient, constants
from openai import OpenAI

from lmforge.inference import BatchRequest, GenerationSettings, OpenAIPenalties, TextGenerator
from lmforge.serve import LmforgeServer, ServeSettings, create_server

from .golden import PROMPTS, golden_text, load_golden
from .saved_models import load_auto, oracle_chat_text, oracle_text

ARCHITECTURES = ["aksis", "char_transformer", "ae_llm", "latent_reasoner"]
DECODERS = ("aksis", "char_transformer")
MESSAGES = [{"role": "user", "content": "First Citizen:"}]


@contextmanager
def running(folder: Path, settings: ServeSettings) -> Iterator[LmforgeServer]:
    """`create_server` on a free port, serving from a thread until the block ends."""
    httpd = create_server(folder, host="127.0.0.1", port=0, settings=settings)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        wait_until_up(httpd.server_port)
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=30)


def wait_until_up(port: int) -> None:
    """The socket is bound before uvicorn starts: wait until /health answers (a bound, not a timing assertion)."""
    for _ in range(600):
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/health")
            if connection.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.05)
        finally:
            connection.close()
    raise AssertionError("the server never came up")


@pytest.fixture(scope="module")
def aksis_dir(tiny_model_dirs: dict) -> Path:
    return Path(tiny_model_dirs["aksis"])


@pytest.fixture(scope="module")
def server(aksis_dir: Path) -> Iterator[LmforgeServer]:
    settings = ServeSettings(max_tokens_limit=16, max_concurrency=1, max_queue=2, max_body_bytes=4096)
    with running(aksis_dir, settings) as httpd:
        yield httpd


@pytest.fixture(scope="module")
def servers(tiny_model_dirs: dict) -> Iterator[dict[str, LmforgeServer]]:
    """A server for each architecture, started when first asked for."""
    started: dict[str, LmforgeServer] = {}
    stack: list[Any] = []

    class Lazy(dict):
        def __missing__(self, model_type: str) -> LmforgeServer:
            block = running(tiny_model_dirs[model_type], ServeSettings(max_concurrency=8))
            started[model_type] = block.__enter__()
            stack.append(block)
            return started[model_type]

    yield Lazy()
    for block in reversed(stack):
        block.__exit__(None, None, None)


def client(httpd: LmforgeServer) -> OpenAI:
    return OpenAI(base_url=f"http://127.0.0.1:{httpd.server_port}/v1", api_key="unused", max_retries=0, timeout=120)


def request(server, method: str, path: str, body: object = None, raw: bytes | None = None, headers=None):
    """(status, headers, body text) of one request over a fresh connection."""
    connection = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=60)
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    connection.request(method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
    response = connection.getresponse()
    text = response.read().decode("utf-8")
    connection.close()
    return response.status, {key.lower(): value for key, value in response.getheaders()}, text


def metrics(httpd: LmforgeServer) -> dict[str, Any]:
    return json.loads(request(httpd, "GET", "/metrics")[2])


def events(text: str) -> list:
    payloads = [line[len("data: ") :] for line in text.split("\n\n") if line.startswith("data: ")]
    return [payload if payload == "[DONE]" else json.loads(payload) for payload in payloads]


def streamed_text(text: str) -> str:
    chunks = events(text)
    assert chunks[-1] == "[DONE]"
    return "".join(chunk["choices"][0]["delta"].get("content", "") for chunk in chunks[:-1] if chunk["choices"])


def test_health_models_and_metrics(server) -> None:
    assert request(server, "GET", "/health")[::2] == (200, '{"status":"ok"}')
    status, _, text = request(server, "GET", "/v1/models")
    assert status == 200
    [model] = json.loads(text)["data"]
    assert model["id"] == server.app.model_id and model["object"] == "model"
    assert {"admitted", "completed", "failed", "batches", "batch_sizes", "largest_batch"} <= set(metrics(server))


# --- The API surface, through the official openai client, on every architecture ---------------------------------


@pytest.mark.parametrize("model_type", ARCHITECTURES)
def test_completions_are_the_golden_text(model_type: str, servers) -> None:
    """Greedy completions of the golden prompts (a seq2seq model reads the prompt as its source), plain and streamed,
    one prompt or a list of them, with the usage counted."""
    api = client(servers[model_type])
    for prompt in PROMPTS[model_type]:
        answer = api.completions.create(model="m", prompt=prompt, max_tokens=8, temperature=0)
        [choice] = answer.choices
        assert choice.text == golden_text(model_type, prompt)
        assert choice.finish_reason == "length" and answer.usage.completion_tokens == 8
        pieces = api.completions.create(
            model="m", prompt=prompt, max_tokens=8, temperature=0, stream=True, stream_options={"include_usage": True}
        )
        chunks = list(pieces)
        assert "".join(chunk.choices[0].text for chunk in chunks if chunk.choices) == golden_text(model_type, prompt)
        assert chunks[-1].usage.completion_tokens == 8 and not chunks[-1].choices
        assert [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices][-1] == "length"
    both = api.completions.create(model="m", prompt=PROMPTS[model_type], max_tokens=8, temperature=0)
    assert [choice.text for choice in both.choices] == [golden_text(model_type, p) for p in PROMPTS[model_type]]


@pytest.mark.parametrize("model_type", ARCHITECTURES)
def test_chat_plain_and_streamed_is_the_oracles_answer(model_type: str, servers, tiny_model_dirs: dict) -> None:
    prompt = PROMPTS[model_type][0]
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": prompt}]
    expected = oracle_chat_text(model_type, tiny_model_dirs[model_type], messages, 8)
    if model_type not in DECODERS:  # it reads the last user message, as in training
        assert expected == golden_text(model_type, prompt)
    api = client(servers[model_type])
    answer = api.chat.completions.create(model="m", messages=messages, max_tokens=8, temperature=0)
    assert answer.choices[0].message.content == expected and answer.choices[0].message.role == "assistant"
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens
    stream = api.chat.completions.create(
        model="m", messages=messages, max_tokens=8, temperature=0, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices) == expected
    assert chunks[-1].usage.completion_tokens == answer.usage.completion_tokens


@pytest.mark.parametrize("model_type", ARCHITECTURES)
def test_stop_cuts_the_text_before_the_stop_string(model_type: str, servers) -> None:
    """A stop string from the middle of the golden text: the answer is the text before it, with finish_reason
    "stop", plain and streamed (held-back text never leaks a stop string's start)."""
    prompt = PROMPTS[model_type][0]
    full = golden_text(model_type, prompt)
    cut = len(full) // 2
    stop = full[cut : cut + 2]
    expected = full[: full.index(stop)].strip() if model_type not in DECODERS else full[: full.index(stop)]
    api = client(servers[model_type])
    for stops in (stop, ["never-written", stop]):
        [choice] = api.completions.create(model="m", prompt=prompt, max_tokens=8, temperature=0, stop=stops).choices
        assert (choice.text, choice.finish_reason) == (expected, "stop")
    chunks = list(
        api.completions.create(model="m", prompt=prompt, max_tokens=8, temperature=0, stop=stop, stream=True)
    )
    assert "".join(chunk.choices[0].text for chunk in chunks) == expected
    assert chunks[-1].choices[0].finish_reason == "stop"


@pytest.mark.parametrize("model_type", ARCHITECTURES)
def test_n_returns_n_choices(model_type: str, servers) -> None:
    api = client(servers[model_type])
    prompt = PROMPTS[model_type][1]
    answer = api.completions.create(model="m", prompt=prompt, max_tokens=8, temperature=0, n=3)
    assert [choice.index for choice in answer.choices] == [0, 1, 2]
    assert [choice.text for choice in answer.choices] == [golden_text(model_type, prompt)] * 3
    assert answer.usage.completion_tokens == 24
    chat = api.chat.completions.create(
        model="m", messages=[{"role": "user", "content": prompt}], max_tokens=4, n=2, temperature=0.9, seed=7
    )
    contents = [choice.message.content for choice in chat.choices]
    assert len(contents) == 2 and contents[0] != contents[1]  # each choice is its own sample


def forward_logprobs(model_type: str, folder: Path, prompt_ids: list[int], new_ids: list[int]) -> list[float]:
    """The log-softmax of one plain forward pass at each new token: the decoder over prompt + new tokens, or the
    encoder-decoder over the prompt and the decoder start token + new tokens."""
    model, _, _ = load_auto(model_type, folder)
    with torch.no_grad():
        if model_type in DECODERS:
            logits = model(input_ids=torch.tensor([prompt_ids + new_ids])).logits[0, len(prompt_ids) - 1 : -1]
        else:
            start = model.generation_config.decoder_start_token_id
            decoder = torch.tensor([[start, *new_ids[:-1]]])
            logits = model(input_ids=torch.tensor([prompt_ids]), decoder_input_ids=decoder).logits[0]
    scores = torch.log_softmax(logits.float(), dim=-1)
    return [float(scores[step, token]) for step, token in enumerate(new_ids)]


@pytest.mark.parametrize("model_type", ["aksis", "char_transformer", "ae_llm"])
def test_logprobs_are_a_forward_passs_log_softmax(model_type: str, servers, tiny_model_dirs: dict) -> None:
    """Greedy tokens: each returned log-probability is the log-softmax of a plain forward pass at that token, the best
    of its top list, and <= 0 (completions' integer `logprobs`, chat's `logprobs` + `top_logprobs`)."""
    case = load_golden(model_type)["prompts"][0]
    expected = forward_logprobs(model_type, tiny_model_dirs[model_type], case["input_ids"], case["new_ids"])
    api = client(servers[model_type])
    answer = api.completions.create(model="m", prompt=case["text"], max_tokens=8, temperature=0, logprobs=3)
    logprobs = answer.choices[0].logprobs
    assert len(logprobs.token_logprobs) == len(expected) == 8
    assert logprobs.token_logprobs == pytest.approx(expected, abs=1e-4)
    for chosen, token, top in zip(logprobs.token_logprobs, logprobs.tokens, logprobs.top_logprobs, strict=True):
        assert chosen <= 0 and len(top) <= 3 and max(top.values()) == pytest.approx(chosen, abs=1e-6)
        assert token in top
    chat = api.chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": case["text"]}],
        max_tokens=4,
        temperature=0,
        logprobs=True,
        top_logprobs=2,
    )
    content = chat.choices[0].logprobs.content
    assert content and all(item.logprob <= 0 and len(item.top_logprobs) == 2 for item in content)
    assert all(item.top_logprobs[0].logprob == pytest.approx(item.logprob, abs=1e-6) for item in content)


def test_seed_makes_sampling_reproducible(servers) -> None:
    api = client(servers["aksis"])
    ask = {"model": "m", "prompt": "First Citizen:", "max_tokens": 12, "temperature": 1.0, "n": 2}
    first = [choice.text for choice in api.completions.create(**ask, seed=1234).choices]
    again = [choice.text for choice in api.completions.create(**ask, seed=1234).choices]
    other = [choice.text for choice in api.completions.create(**ask, seed=99).choices]
    assert first == again and first != other


def test_penalties_lower_the_logits_of_generated_tokens() -> None:
    """OpenAI's rule on the new tokens only: logit - frequency * count - presence * (count > 0)."""
    ids = torch.tensor([[5, 6, 1, 1, 2], [5, 6, 3, 3, 3]])  # two prompt tokens, then the new ones
    scores = torch.zeros(2, 8)
    out = OpenAIPenalties(presence=0.5, frequency=0.25, start=2)(ids, scores)
    assert out[0].tolist() == [0, -1.0, -0.75, 0, 0, 0, 0, 0]
    assert out[1].tolist() == [0, 0, 0, -1.25, 0, 0, 0, 0]


def test_penalties_reach_generation(servers) -> None:
    """A strong frequency penalty changes a greedy text that repeats itself; zero penalties leave the golden one."""
    api = client(servers["char_transformer"])
    prompt = PROMPTS["char_transformer"][1]
    plain = api.completions.create(model="m", prompt=prompt, max_tokens=8, temperature=0, frequency_penalty=0.0)
    assert plain.choices[0].text == golden_text("char_transformer", prompt)  # "\n\n\nFirst": newlines repeat
    penalised = api.completions.create(model="m", prompt=prompt, max_tokens=8, temperature=0, frequency_penalty=2.0)
    assert penalised.choices[0].text != plain.choices[0].text


# --- Batching: concurrent requests share forward passes ------------------------------------------------------------


@contextmanager
def held_back(httpd: LmforgeServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """Every batch waits until the yielded event is set (a generation that takes as long as the test wants)."""
    release = threading.Event()
    generator = httpd.app.generator
    run_batch = generator.run_batch

    def held(requests: list[BatchRequest], settings: GenerationSettings) -> Any:
        release.wait(120)
        return run_batch(requests, settings)

    monkeypatch.setattr(generator, "run_batch", held)
    try:
        yield release
    finally:
        release.set()
        monkeypatch.undo()


def wait_for(condition: Any) -> None:
    for _ in range(1200):
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError("the server never got there")


def test_concurrent_requests_share_forward_passes(aksis_dir: Path, monkeypatch) -> None:
    """One request holds the worker; six others with different prompts and lengths arrive meanwhile and must run as
    ONE batch of six rows (seen in /metrics), each with its own oracle answer; nothing is lost."""
    asks = [("First Citizen:", 8), ("All:\nSpeak, speak.", 8), ("ROMEO:", 5), ("First", 3), ("Speak", 6), ("All:", 7)]
    answers: dict[int, Any] = {}
    with running(aksis_dir, ServeSettings(max_concurrency=8, max_queue=8)) as httpd:
        api = client(httpd)

        def send(index: int, prompt: str, tokens: int) -> None:
            answers[index] = api.completions.create(model="m", prompt=prompt, max_tokens=tokens, temperature=0)

        with held_back(httpd, monkeypatch) as release:
            blocker = threading.Thread(target=send, args=(-1, "First Citizen:", 4))
            blocker.start()
            wait_for(lambda: metrics(httpd)["batches"] == 1)  # the first batch is running (held)
            threads = [threading.Thread(target=send, args=(i, *ask)) for i, ask in enumerate(asks)]
            for thread in threads:
                thread.start()
            wait_for(lambda: metrics(httpd)["waiting"] == len(asks))
            release.set()
            for thread in [blocker, *threads]:
                thread.join(timeout=120)
        stats = metrics(httpd)
    assert stats["batch_sizes"] == {"1": 1, "6": 1} and stats["largest_batch"] == 6
    assert stats["admitted"] == stats["completed"] == 7 and stats["failed"] == 0
    for index, (prompt, tokens) in enumerate(asks):
        [choice] = answers[index].choices
        assert choice.text == oracle_text("aksis", aksis_dir, prompt, tokens), prompt
        assert answers[index].usage.completion_tokens == tokens


def test_different_settings_and_seeds_run_in_their_own_batches(aksis_dir: Path, monkeypatch) -> None:
    bodies = [
        {"prompt": "First", "max_tokens": 3, "temperature": 0},
        {"prompt": "All:", "max_tokens": 3, "temperature": 0},
        {"prompt": "First", "max_tokens": 3, "temperature": 0.7},
        {"prompt": "First", "max_tokens": 3, "temperature": 0.7, "seed": 1},
        {"prompt": "First", "max_tokens": 3, "temperature": 0.7, "seed": 1},
    ]
    statuses: list[int] = []
    with running(aksis_dir, ServeSettings(max_concurrency=8, max_queue=8)) as httpd:
        with held_back(httpd, monkeypatch) as release:
            blocker = threading.Thread(
                target=lambda: statuses.append(request(httpd, "POST", "/v1/completions", bodies[0])[0])
            )
            blocker.start()
            wait_for(lambda: metrics(httpd)["batches"] == 1)
            threads = [
                threading.Thread(target=lambda b=b: statuses.append(request(httpd, "POST", "/v1/completions", b)[0]))
                for b in bodies
            ]
            for thread in threads:
                thread.start()
            wait_for(lambda: metrics(httpd)["waiting"] == len(bodies))
            release.set()
            for thread in [blocker, *threads]:
                thread.join(timeout=120)
        stats = metrics(httpd)
    assert statuses == [200] * 6
    # greedy pair together; the unseeded sampled one alone; each seeded one alone
    assert stats["batch_sizes"] == {"1": 4, "2": 1} and stats["batches"] == 5


def count_statuses_at_capacity(httpd: LmforgeServer, slots: int, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Send `slots + 1` requests while every generation is held back: the server admits `slots` of them (running
    or queued) and must turn the last one away with 503 at once; then let the generations go. The statuses, sorted.
    A slot that a finished request did not give back shows as a second 503."""
    answers: list[tuple[int, dict, str]] = []
    body = {"messages": MESSAGES, "max_tokens": 2, "temperature": 0}

    def send() -> None:
        answers.append(request(httpd, "POST", "/v1/chat/completions", body))

    threads = [threading.Thread(target=send) for _ in range(slots + 1)]
    with held_back(httpd, monkeypatch):
        for thread in threads:
            thread.start()
        wait_for(lambda: bool(answers))  # only a 503 can come back before the release
        wait_for(lambda: metrics(httpd)["admitted"] - metrics(httpd)["completed"] == slots)
        assert len(answers) == 1, answers
        for status, headers, text in list(answers):
            assert status == 503 and headers["retry-after"] == "1", (status, text)
            assert json.loads(text)["error"]["type"] == "server_busy"
        assert request(httpd, "GET", "/health")[0] == 200  # cheap endpoints still answer
    for thread in threads:
        thread.join(timeout=120)
    return sorted(status for status, _, _ in answers)


def test_busy_server_answers_503_and_gives_every_slot_back(server, monkeypatch) -> None:
    """max_concurrency 1 + max_queue 2: three requests are admitted (one runs, two wait), the fourth gets 503; twice,
    so the slots of the first round were all given back."""
    for _ in range(2):
        assert count_statuses_at_capacity(server, 3, monkeypatch) == [200, 200, 200, 503]
    assert request(server, "POST", "/v1/chat/completions", {"messages": MESSAGES, "max_tokens": 2})[0] == 200


def test_concurrent_requests_with_malformed_ones(server) -> None:
    """A small burst, 4 at a time, a quarter malformed: every request gets a well-formed answer."""
    bodies = [
        b"{oops" if i % 4 == 0 else json.dumps({"messages": MESSAGES, "max_tokens": 2}).encode() for i in range(12)
    ]
    statuses: list[int] = []
    lock = threading.Lock()

    def worker(chunk: list[bytes]) -> None:
        for raw in chunk:
            status, _, text = request(server, "POST", "/v1/chat/completions", raw=raw)
            json.loads(text)
            with lock:
                statuses.append(status)

    threads = [threading.Thread(target=worker, args=(bodies[i::4],)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sorted(statuses).count(400) == 3
    assert all(status in (200, 503) for status in statuses if status != 400)
    assert statuses.count(200) >= 3


def test_a_client_that_goes_away_stops_its_generation(aksis_dir: Path) -> None:
    """A streaming client reads one piece and closes the connection: its row ends as cancelled ("stop") long before
    the 60 tokens it asked for, and the server goes on answering."""
    written: list[int] = []
    with running(aksis_dir, ServeSettings()) as httpd:
        run_batch = httpd.app.generator.run_batch

        def counted(requests: list[BatchRequest], settings: GenerationSettings) -> Any:
            completions = run_batch(requests, settings)
            written.extend(completion.completion_tokens for completion in completions)
            return completions

        httpd.app.generator.run_batch = counted  # type: ignore[method-assign]
        connection = http.client.HTTPConnection("127.0.0.1", httpd.server_port, timeout=60)
        body = {"prompt": "First Citizen:", "max_tokens": 60, "temperature": 0, "stream": True}
        connection.request(
            "POST", "/v1/completions", body=json.dumps(body), headers={"Content-Type": "application/json"}
        )
        response = connection.getresponse()
        assert response.status == 200 and response.read(6) == b"data: "  # the first event has come
        connection.sock.shutdown(2)
        connection.close()
        wait_for(lambda: metrics(httpd)["completed"] == 1)
        assert request(httpd, "GET", "/health")[0] == 200
    assert len(written) == 1 and written[0] < 60


# --- Today's guarantees: bounds, the bad-input table, the clients, the command line --------------------------------


def test_max_tokens_is_clamped_to_the_limit(server, aksis_dir: Path) -> None:
    body = {"messages": MESSAGES, "max_tokens": 10_000, "temperature": 0}
    status, _, text = request(server, "POST", "/v1/chat/completions", body)
    assert status == 200
    completion = json.loads(text)
    assert completion["usage"]["completion_tokens"] == 16  # the server's max_tokens_limit, all of it written
    assert completion["choices"][0]["message"]["content"] == oracle_chat_text("aksis", aksis_dir, MESSAGES, 16)
    body = {"prompt": "First Citizen:", "max_tokens": 10_000, "temperature": 0}
    assert json.loads(request(server, "POST", "/v1/completions", body)[2])["usage"]["completion_tokens"] == 16


def test_max_tokens_is_clamped_to_the_context_and_a_long_prompt_keeps_its_end(aksis_dir: Path) -> None:
    """With the default limit (256), the answer gets the room the prompt leaves in the model's context (64); a
    prompt longer than the context keeps its last tokens and leaves half the context to the answer."""
    short = [{"role": "user", "content": "hi"}]
    long = [{"role": "user", "content": "Speak, speak. " * 10}]
    with running(aksis_dir, ServeSettings()) as httpd:
        for messages in (short, long):
            body = {"messages": messages, "max_tokens": 200, "temperature": 0}
            status, _, text = request(httpd, "POST", "/v1/chat/completions", body)
            assert status == 200, text
            completion = json.loads(text)
            usage = completion["usage"]
            room = 64 - usage["prompt_tokens"]
            assert usage["completion_tokens"] == (room if messages is short else 32), usage
            assert (messages is short) == (room >= 32)  # the long one really is longer than the context
            assert completion["choices"][0]["message"]["content"] == oracle_chat_text(
                "aksis", aksis_dir, messages, 200
            )
        prompt = "Speak, speak. " * 10
        answer = client(httpd).completions.create(model="m", prompt=prompt, max_tokens=200, temperature=0)
        assert answer.usage.prompt_tokens > 64 and answer.usage.completion_tokens == 32
        generator = TextGenerator.from_pretrained(aksis_dir)
        kept = generator.encode_completion(prompt, 200)
        assert kept.inputs["input_ids"].shape[1] == 32  # the prompt's last 32 tokens
        assert answer.choices[0].text == generator.generate(
            generator.processor.decode(kept.inputs["input_ids"][0]), GenerationSettings(32, do_sample=False)
        )


def test_huggingface_hub_client_streams_from_it(server, aksis_dir: Path, monkeypatch) -> None:
    """The client `transformers chat` uses, against our server (on this machine: the offline switch is lifted)."""
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    hub = InferenceClient(base_url=f"http://127.0.0.1:{server.server_port}/v1")
    pieces = [
        chunk.choices[0].delta.content or ""
        for chunk in hub.chat_completion(MESSAGES, max_tokens=6, temperature=0.0, stream=True)
        if chunk.choices
    ]
    answer = hub.chat_completion(MESSAGES, max_tokens=6, temperature=0.0)
    expected = oracle_chat_text("aksis", aksis_dir, MESSAGES, 6)
    assert "".join(pieces) == expected and answer.choices[0].message.content == expected
    status, headers, text = request(server, "POST", "/load_model", {"model": "x"})
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    assert events(text) == [{"status": "ready", "model": server.app.model_id, "cached": True}]


def test_transformers_chat_generation_config_is_read(server, aksis_dir: Path) -> None:
    body = {"messages": MESSAGES, "generation_config": json.dumps({"max_new_tokens": 5, "do_sample": False})}
    completion = json.loads(request(server, "POST", "/v1/chat/completions", body)[2])
    assert completion["usage"]["completion_tokens"] == 5
    assert completion["choices"][0]["message"]["content"] == oracle_chat_text("aksis", aksis_dir, MESSAGES, 5)


CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"


@pytest.mark.parametrize(
    ("path", "raw", "status", "words"),
    [
        (CHAT, b"{not json", 400, "not valid JSON"),
        (CHAT, b"[1, 2]", 400, "JSON object"),
        (CHAT, b"", 400, "JSON object"),
        (CHAT, json.dumps({"max_tokens": 4}).encode(), 422, "'messages'"),
        (CHAT, json.dumps({"messages": []}).encode(), 422, "'messages'"),
        (CHAT, json.dumps({"messages": [{"role": "robot", "content": "hi"}]}).encode(), 422, "messages[0].role"),
        (CHAT, json.dumps({"messages": [{"role": "user", "content": [{"type": "image"}]}]}).encode(), 422, "content"),
        (CHAT, json.dumps({"messages": MESSAGES, "max_tokens": 0}).encode(), 422, "max_tokens"),
        (CHAT, json.dumps({"messages": MESSAGES, "max_tokens": "8"}).encode(), 422, "max_tokens"),
        (CHAT, json.dumps({"messages": MESSAGES, "temperature": 3}).encode(), 422, "temperature"),
        (CHAT, json.dumps({"messages": MESSAGES, "top_p": 0}).encode(), 422, "top_p"),
        (CHAT, json.dumps({"messages": MESSAGES, "stream": "yes"}).encode(), 422, "stream"),
        (CHAT, json.dumps({"messages": MESSAGES, "n": 0}).encode(), 422, "'n'"),
        (CHAT, json.dumps({"messages": MESSAGES, "n": 99}).encode(), 422, "'n'"),
        (CHAT, json.dumps({"messages": MESSAGES, "stop": ["a", "b", "c", "d", "e"]}).encode(), 422, "'stop'"),
        (CHAT, json.dumps({"messages": MESSAGES, "presence_penalty": 5}).encode(), 422, "presence_penalty"),
        (CHAT, json.dumps({"messages": MESSAGES, "tools": [{"type": "function"}]}).encode(), 422, "'tools'"),
        (CHAT, json.dumps({"messages": MESSAGES, "logprobs": True, "stream": True}).encode(), 422, "not streamed"),
        (CHAT, b"x" * 5000, 413, "over 4096 bytes"),
        (CHAT, b"[" * 2000 + b"]" * 2000, 400, "body"),  # deep nesting: a 400, whether or not the decoder recurses
        (
            CHAT,
            json.dumps({"messages": MESSAGES, "generation_config": '{"temperature": "hot"}'}).encode(),
            422,
            "temperature",
        ),
        (COMPLETIONS, json.dumps({"max_tokens": 4}).encode(), 422, "'prompt'"),
        (COMPLETIONS, json.dumps({"prompt": "x", "logprobs": 9}).encode(), 422, "'logprobs'"),
        (COMPLETIONS, json.dumps({"prompt": "x", "echo": True}).encode(), 422, "'echo'"),
        (COMPLETIONS, json.dumps({"prompt": "x", "seed": "one"}).encode(), 422, "'seed'"),
    ],
)
def test_bad_requests_get_openai_style_errors(server, path: str, raw: bytes, status: int, words: str) -> None:
    got, _, text = request(server, "POST", path, raw=raw)
    assert got == status, text
    error = json.loads(text)["error"]
    assert words in error["message"] and error["code"] == status and error["type"] == "invalid_request_error"
    assert "\n" not in error["message"]


def test_unknown_paths_and_a_chunked_body_over_the_limit(server) -> None:
    status, _, text = request(server, "GET", "/nowhere")
    assert status == 404 and json.loads(text)["error"]["message"] == "no such endpoint: GET /nowhere"
    connection = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=30)
    connection.request("POST", CHAT, body=iter([b"[" + b" " * 3000, b" " * 3000 + b"]"]), encode_chunked=True)
    response = connection.getresponse()  # no Content-Length: counted as it arrives
    assert response.status == 413 and "over 4096 bytes" in json.loads(response.read())["error"]["message"]
    connection.close()


def test_seq2seq_model_answers_the_last_user_message(servers) -> None:
    question = PROMPTS["ae_llm"][1]
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": PROMPTS["ae_llm"][0]},
        {"role": "assistant", "content": "an earlier answer"},
        {"role": "user", "content": question},
    ]
    httpd = servers["ae_llm"]
    body = {"messages": messages, "temperature": 0, "max_tokens": 8}
    status, _, text = request(httpd, "POST", CHAT, body)
    assert status == 200, text
    assert json.loads(text)["choices"][0]["message"]["content"] == golden_text("ae_llm", question)
    status, _, text = request(httpd, "POST", CHAT, {**body, "messages": messages[:1]})
    assert status == 422 and "last user message" in json.loads(text)["error"]["message"]


def test_cli_serves_on_a_free_port_and_stops_on_ctrl_c(aksis_dir: Path) -> None:
    """`lmforge serve` as a process: it prints its address (127.0.0.1 by default), answers with the oracle's text, and
    Ctrl-C (SIGINT) stops it cleanly (exit code 0, "stopped")."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "lmforge", "serve", "--model-path", str(aksis_dir), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None and process.stderr is not None
        line = process.stdout.readline()  # "Serving ... on http://127.0.0.1:PORT (...)"
        assert "on http://127.0.0.1:" in line, line + process.stderr.read()
        port = int(line.split("http://127.0.0.1:")[1].split()[0])
        wait_until_up(port)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        body = json.dumps({"messages": MESSAGES, "max_tokens": 6, "temperature": 0})
        connection.request("POST", CHAT, body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        assert response.status == 200
        content = json.loads(response.read())["choices"][0]["message"]["content"]
        assert content == oracle_chat_text("aksis", aksis_dir, MESSAGES, 6)
        connection.close()
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err[-3000:]
    assert err.strip().splitlines()[-1] == "stopped"


def test_cli_serve_and_demo_errors_are_one_line(aksis_dir: Path, server, tmp_path: Path, capsys) -> None:
    from lmforge.cli.main import main

    cases = [
        (["serve", "--model-path", str(aksis_dir), "--max-queue", "-1"], "max-queue must be 0 or more"),
        (["serve", "--model-path", str(aksis_dir), "--port", str(server.server_port)], "cannot listen"),
        (["demo", "--model-path", str(tmp_path / "missing")], "model folder not found"),
    ]
    for argv, words in cases:
        assert main(argv) == 1
        errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and words in errors[0], (argv, errors)


@pytest.mark.parametrize("model_type", ARCHITECTURES)
def test_lmforge_serve_on_each_architecture(model_type: str, tiny_model_dirs: dict, monkeypatch, capsys) -> None:
    """`lmforge serve` as run from the command line, on a tiny saved model of each architecture: one plain and one
    streamed chat completion, then Ctrl-C."""
    from lmforge.cli.main import main

    folder, prompt = tiny_model_dirs[model_type], PROMPTS[model_type][0]
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": prompt}]
    body = {"messages": messages, "max_tokens": 8, "temperature": 0}
    answers: dict[str, str] = {}
    serve_forever = LmforgeServer.serve_forever

    def answer_two_requests_then_ctrl_c(self: LmforgeServer) -> None:
        thread = threading.Thread(target=serve_forever, args=(self,), daemon=True)
        thread.start()
        try:
            wait_until_up(self.server_port)
            answers["plain"] = request(self, "POST", CHAT, body)[2]
            answers["stream"] = request(self, "POST", CHAT, {**body, "stream": True})[2]
        finally:
            self.shutdown()
            thread.join(timeout=30)
        raise KeyboardInterrupt

    monkeypatch.setattr(LmforgeServer, "serve_forever", answer_two_requests_then_ctrl_c)
    assert main(["serve", "--model-path", str(folder), "--port", "0"]) == 0
    assert "on http://127.0.0.1:" in capsys.readouterr().out
    expected = oracle_chat_text(model_type, folder, messages, 8)
    assert json.loads(answers["plain"])["choices"][0]["message"]["content"] == expected
    assert streamed_text(answers["stream"]) == expected
