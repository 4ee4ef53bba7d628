"""`lmforge serve`: the OpenAI-compatible API answered by a real server on 127.0.0.1 (a free port), then stopped."""

import http.client
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from huggingface_hub import InferenceClient, constants

from lmforge.inference import CancelledCriteria, GenerationSettings, TextGenerator
from lmforge.models import SPECS
from lmforge.serve import ChatModel, LmforgeHTTPServer, ServeSettings, create_server, parse_chat_request

from .saved_models import PROMPTS, reference_text, save_ae_llm

ARCHITECTURES = ["aksis", "char_transformer", "ae_llm", "latent_reasoner"]

MESSAGES = [{"role": "user", "content": "First Citizen:"}]


@pytest.fixture(scope="module")
def server(trained_aksis_dir: Path) -> Iterator:
    settings = ServeSettings(max_tokens_limit=16, max_concurrency=1, max_queue=2, max_body_bytes=4096)
    httpd = create_server(trained_aksis_dir, host="127.0.0.1", port=0, settings=settings)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=10)


def request(server, method: str, path: str, body: object = None, raw: bytes | None = None, headers=None):
    """(status, headers, body text) of one request over a fresh connection."""
    connection = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=60)
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    connection.request(method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
    response = connection.getresponse()
    text = response.read().decode("utf-8")
    connection.close()
    return response.status, dict(response.getheaders()), text


def events(text: str) -> list:
    payloads = [line[len("data: ") :] for line in text.split("\n\n") if line.startswith("data: ")]
    return [payload if payload == "[DONE]" else json.loads(payload) for payload in payloads]


def test_health_and_models(server) -> None:
    assert request(server, "GET", "/health")[::2] == (200, '{"status": "ok"}')
    status, _, text = request(server, "GET", "/v1/models")
    assert status == 200
    [model] = json.loads(text)["data"]
    assert model["id"] == server.app.chat_model.model_id and model["object"] == "model"


def test_chat_completion_and_its_stream_agree(server) -> None:
    body = {"model": "aksis", "messages": MESSAGES, "max_tokens": 8, "temperature": 0}
    status, headers, text = request(server, "POST", "/v1/chat/completions", body)
    assert status == 200 and headers["Content-Type"] == "application/json"
    completion = json.loads(text)
    assert completion["object"] == "chat.completion"
    [choice] = completion["choices"]
    assert choice["message"]["role"] == "assistant" and choice["finish_reason"] in ("stop", "length")
    usage = completion["usage"]
    assert 1 <= usage["completion_tokens"] <= 8
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]

    status, headers, text = request(server, "POST", "/v1/chat/completions", {**body, "stream": True})
    assert status == 200 and headers["Content-Type"] == "text/event-stream"
    chunks = events(text)
    assert chunks[-1] == "[DONE]"
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks[:-1])
    streamed = "".join(chunk["choices"][0]["delta"].get("content", "") for chunk in chunks[:-1])
    assert streamed == choice["message"]["content"]  # greedy: the same text, streamed
    assert chunks[-2]["choices"][0]["finish_reason"] == choice["finish_reason"]


def test_max_tokens_is_clamped_to_the_limit(server) -> None:
    body = {"messages": MESSAGES, "max_tokens": 10_000, "temperature": 0}
    status, _, text = request(server, "POST", "/v1/chat/completions", body)
    assert status == 200
    assert json.loads(text)["usage"]["completion_tokens"] <= 16  # the server's max_tokens_limit


def test_huggingface_hub_client_streams_from_it(server, monkeypatch) -> None:
    """The client `transformers chat` uses, against our server (on this machine: the offline switch is lifted)."""
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    client = InferenceClient(base_url=f"http://127.0.0.1:{server.server_port}/v1")
    pieces = [
        chunk.choices[0].delta.content or ""
        for chunk in client.chat_completion(MESSAGES, max_tokens=6, temperature=0.0, stream=True)
    ]
    answer = client.chat_completion(MESSAGES, max_tokens=6, temperature=0.0)
    assert "".join(pieces) == answer.choices[0].message.content


@pytest.mark.parametrize(
    ("raw", "status", "words"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b"[1, 2]", 400, "JSON object"),
        (json.dumps({"max_tokens": 4}).encode(), 422, "'messages'"),
        (json.dumps({"messages": [{"role": "robot", "content": "hi"}]}).encode(), 422, "role"),
        (json.dumps({"messages": MESSAGES, "max_tokens": 0}).encode(), 422, "max_tokens"),
        (json.dumps({"messages": MESSAGES, "max_tokens": "8"}).encode(), 422, "max_tokens"),
        (json.dumps({"messages": MESSAGES, "temperature": 3}).encode(), 422, "temperature"),
        (json.dumps({"messages": MESSAGES, "top_p": 0}).encode(), 422, "top_p"),
        (json.dumps({"messages": MESSAGES, "stream": "yes"}).encode(), 422, "stream"),
        (json.dumps({"messages": MESSAGES, "n": 2}).encode(), 422, "'n'"),
        (b"x" * 5000, 413, "over 4096 bytes"),
        (b"[" * 2000 + b"]" * 2000, 400, "JSON"),  # deep nesting: a 400 whether or not the decoder recurses that deep
        (
            json.dumps({"messages": MESSAGES, "generation_config": '{"temperature": "hot"}'}).encode(),
            422,
            "temperature",
        ),
    ],
)
def test_bad_requests_get_openai_style_errors(server, raw: bytes, status: int, words: str) -> None:
    got, _, text = request(server, "POST", "/v1/chat/completions", raw=raw)
    assert got == status
    error = json.loads(text)["error"]
    assert words in error["message"] and error["code"] == status


def test_unknown_paths_and_missing_length(server) -> None:
    assert request(server, "GET", "/nowhere")[0] == 404
    assert request(server, "POST", "/v1/completions", {"prompt": "x"})[0] == 404
    connection = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=30)
    connection.putrequest("POST", "/v1/chat/completions")
    connection.endheaders()  # no body and no Content-Length
    assert connection.getresponse().status == 411
    connection.close()


def test_busy_server_answers_503(server) -> None:
    app = server.app
    held = 0
    while app.admitted.acquire(blocking=False):  # take every slot, running and queued
        held += 1
    try:
        assert held == 3  # max_concurrency 1 + max_queue 2
        status, headers, text = request(server, "POST", "/v1/chat/completions", {"messages": MESSAGES})
        assert status == 503 and headers["Retry-After"] == "1"
        assert json.loads(text)["error"]["type"] == "server_busy"
        assert request(server, "GET", "/health")[0] == 200  # cheap endpoints still answer
    finally:
        for _ in range(held):
            app.admitted.release()
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


def test_parse_reads_transformers_chat_generation_config() -> None:
    settings = ServeSettings(max_tokens_limit=50)
    body = {"messages": MESSAGES, "generation_config": json.dumps({"max_new_tokens": 40, "do_sample": False})}
    parsed = parse_chat_request(body, settings)
    assert parsed.max_tokens == 40 and parsed.sampling == {"do_sample": False}
    parsed = parse_chat_request({"messages": MESSAGES, "temperature": 0.7, "top_p": 0.9, "max_tokens": 99}, settings)
    assert parsed.max_tokens == 50 and parsed.sampling == {"temperature": 0.7, "top_p": 0.9, "do_sample": True}


def test_cancelled_criteria_stops_generation() -> None:
    event = threading.Event()
    criteria = CancelledCriteria(event)
    ids = torch.zeros((2, 3), dtype=torch.long)
    assert not criteria(ids, torch.zeros(2, 5)).any()
    event.set()
    assert criteria(ids, torch.zeros(2, 5)).all()


def test_seq2seq_model_answers_the_last_user_message(tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    folder = save_ae_llm(tmp_path / "ae_llm")
    chat_model = ChatModel(folder)
    settings = ServeSettings()
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "who wrote hamlet?"}]
    completion = chat_model.complete(
        parse_chat_request({"messages": messages, "temperature": 0, "max_tokens": 6}, settings)
    )
    expected = chat_model.model.answer_question("who wrote hamlet?", AutoTokenizer.from_pretrained(folder), 6)
    assert completion.text.strip() == expected
    with pytest.raises(Exception, match="last user message"):
        chat_model.check(parse_chat_request({"messages": messages[:1]}, settings))


def test_cli_serves_on_a_free_port(trained_aksis_dir: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "lmforge", "serve", "--model-path", str(trained_aksis_dir), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = process.stdout.readline()  # "Serving ... on http://127.0.0.1:PORT (...)"
        assert "on http://127.0.0.1:" in line, line + process.stderr.read()
        port = int(line.split("http://127.0.0.1:")[1].split()[0])
        deadline = time.monotonic() + 60
        while True:
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                connection.request("GET", "/health")
                assert connection.getresponse().status == 200
                break
            except ConnectionRefusedError:
                assert time.monotonic() < deadline
                time.sleep(0.2)
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert process.returncode is not None


def test_cli_serve_reports_its_address_and_stops_on_ctrl_c(trained_aksis_dir: Path, monkeypatch, capsys) -> None:
    from lmforge.cli.main import main
    from lmforge.serve import LmforgeHTTPServer

    def interrupted(self, poll_interval: float = 0.5) -> None:
        raise KeyboardInterrupt  # as Ctrl-C does

    monkeypatch.setattr(LmforgeHTTPServer, "serve_forever", interrupted)
    assert main(["serve", "--model-path", str(trained_aksis_dir), "--port", "0", "--max-tokens-limit", "8"]) == 0
    captured = capsys.readouterr()
    assert "on http://127.0.0.1:" in captured.out and "stopped" in captured.err


def test_cli_serve_and_demo_errors_are_one_line(trained_aksis_dir: Path, server, tmp_path: Path, capsys) -> None:
    from lmforge.cli.main import main

    cases = [
        (["serve", "--model-path", str(trained_aksis_dir), "--max-queue", "-1"], "max-queue must be 0 or more"),
        (["serve", "--model-path", str(trained_aksis_dir), "--port", str(server.server_port)], "cannot listen"),
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

    folder, prompt = tiny_model_dirs[model_type], PROMPTS[model_type]
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": prompt}]
    body = {"messages": messages, "max_tokens": 6, "temperature": 0}
    answers: dict[str, str] = {}
    serve_forever = LmforgeHTTPServer.serve_forever

    def answer_two_requests_then_ctrl_c(self: LmforgeHTTPServer, poll_interval: float = 0.5) -> None:
        thread = threading.Thread(target=serve_forever, args=(self, 0.05), daemon=True)
        thread.start()
        try:
            answers["plain"] = request(self, "POST", "/v1/chat/completions", body)[2]
            answers["stream"] = request(self, "POST", "/v1/chat/completions", {**body, "stream": True})[2]
        finally:
            self.shutdown()
            thread.join(timeout=30)
        raise KeyboardInterrupt

    monkeypatch.setattr(LmforgeHTTPServer, "serve_forever", answer_two_requests_then_ctrl_c)
    assert main(["serve", "--model-path", str(folder), "--port", "0"]) == 0
    assert "on http://127.0.0.1:" in capsys.readouterr().out
    content = json.loads(answers["plain"])["choices"][0]["message"]["content"]
    if SPECS[model_type].prompt_style == "answer":  # the last user message, read as in training
        assert content == reference_text(model_type, folder, prompt, 6)
    else:  # the conversation, through the chat template
        generator = TextGenerator.from_pretrained(folder)
        assert content == generator.chat(messages, GenerationSettings(max_new_tokens=6, do_sample=False)).text
    chunks = events(answers["stream"])
    assert chunks[-1] == "[DONE]"
    assert "".join(chunk["choices"][0]["delta"].get("content", "") for chunk in chunks[:-1]) == content
