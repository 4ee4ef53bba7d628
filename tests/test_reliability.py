"""Reliability: a run killed with SIGKILL resumes to the same result; two CPU processes (DDP, gloo) train like one;
the server answers a burst of good and malformed requests and stays up."""

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from transformers import AutoModelForCausalLM

from .conftest import REPO_ROOT, TINY_AKSIS

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}


def write_recipe(path: Path, corpus: Path, output_dir: Path, **extra: object) -> Path:
    recipe = {
        "model_type": "aksis",
        "tokenizer_vocab_size": 200,
        "config_overrides": {**TINY_AKSIS, "hidden_dropout": 0.0, "attention_dropout": 0.0},
        "train_file": str(corpus),
        "block_size": 32,
        "output_dir": str(output_dir),
        "max_steps": 24,
        "per_device_train_batch_size": 4,
        "learning_rate": 3e-3,
        "logging_steps": 1,
        "eval_strategy": "no",
        "save_strategy": "steps",
        "save_steps": 4,
        "report_to": "none",
        "use_cpu": True,
        "disable_tqdm": True,
        "seed": 11,
        "dataloader_num_workers": 0,
    }
    recipe.update(extra)
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    return path


def losses(output_dir: Path) -> list[float]:
    history = json.loads((output_dir / "trainer_state.json").read_text())["log_history"]
    return [entry["loss"] for entry in history if "loss" in entry]


@pytest.mark.slow
def test_sigkill_after_a_checkpoint_then_resume_gives_the_same_model(tmp_path, tiny_text_file):
    reference = tmp_path / "reference"
    recipe = write_recipe(tmp_path / "ref.yaml", tiny_text_file, reference)
    subprocess.run(
        [sys.executable, "-m", "lmforge", "train", str(recipe)], env=ENV, check=True, capture_output=True, timeout=600
    )

    killed = tmp_path / "killed"
    recipe = write_recipe(tmp_path / "kill.yaml", tiny_text_file, killed)
    process = subprocess.Popen(
        [sys.executable, "-m", "lmforge", "train", str(recipe)],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not (killed / "checkpoint-8" / "trainer_state.json").is_file():
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    assert not (killed / "model.safetensors").exists(), "the run finished before it could be killed"

    result = subprocess.run(
        [sys.executable, "-m", "lmforge", "train", str(recipe), "--resume"],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert re.search(r"Resuming from .*checkpoint-\d+", result.stdout + result.stderr)
    a = AutoModelForCausalLM.from_pretrained(reference).state_dict()
    b = AutoModelForCausalLM.from_pretrained(killed).state_dict()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-5, msg=name)
    assert losses(killed)[-1] == pytest.approx(losses(reference)[-1], rel=1e-4)


def test_ctrl_c_saves_the_model_so_far_in_interrupted(tmp_path, tiny_text_file):
    """Ctrl-C (SIGINT) during `lmforge train`: the run stops with one line saying where the model so far is, and
    `output_dir/interrupted` holds it, loadable; the run does not pretend to have finished."""
    out = tmp_path / "run"
    recipe = write_recipe(tmp_path / "run.yaml", tiny_text_file, out, max_steps=5000, logging_steps=50)
    process = subprocess.Popen(
        [sys.executable, "-m", "lmforge", "train", str(recipe)],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not (out / "checkpoint-4" / "trainer_state.json").is_file():
            assert process.poll() is None, "the run ended before it could be interrupted"
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 1, err[-3000:]
    last = err.strip().splitlines()[-1]
    match = re.fullmatch(r"error: training interrupted at step (\d+); the model so far is in (\S+), and "
                         r"resume_from_checkpoint: auto continues from the last checkpoint", last)  # fmt: skip
    assert match, err[-3000:]
    assert int(match[1]) >= 4 and Path(match[2]) == out / "interrupted"
    model = AutoModelForCausalLM.from_pretrained(out / "interrupted")
    assert model.config.model_type == "aksis" and (out / "interrupted" / "tokenizer.json").is_file()
    assert not (out / "model.safetensors").exists()  # no final model: the run did not finish


@pytest.mark.slow
@pytest.mark.parametrize("config", ["ddp_cpu", "fsdp_cpu"])
def test_two_cpu_processes_match_one_process_with_the_same_global_batch(tmp_path, tiny_text_file, config):
    """Data parallel (DDP) and fully sharded data parallel (FSDP), each on two CPU processes over gloo, through
    `accelerate launch` with the shipped config: the same loss curve as one process with the same global batch, and
    FSDP's model saves whole and loads back."""
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    common = {"max_steps": 10, "save_strategy": "no"}
    write_recipe(tmp_path / "single.yaml", tiny_text_file, single, per_device_train_batch_size=8, **common)
    write_recipe(tmp_path / "ddp.yaml", tiny_text_file, ddp, per_device_train_batch_size=4, **common)
    subprocess.run(
        [sys.executable, str(REPO_ROOT / "recipes" / "train.py"), str(tmp_path / "single.yaml")],
        env=ENV,
        check=True,
        capture_output=True,
        timeout=600,
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--config_file",
            str(REPO_ROOT / "recipes" / "accelerate_configs" / f"{config}.yaml"),
            "--num_processes",
            "2",
            "--main_process_port",
            "29631",
            str(REPO_ROOT / "recipes" / "train.py"),
            str(tmp_path / "ddp.yaml"),
        ],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    one, two = losses(single), losses(ddp)
    assert len(one) == len(two) == 10
    assert two[-1] < two[0] - 0.3  # it trains
    # Same global batch of 8; the distributed sampler orders the blocks differently, so the curves agree closely
    # but not bit for bit.
    assert two[-1] == pytest.approx(one[-1], rel=0.03)
    assert sum(two) / 10 == pytest.approx(sum(one) / 10, rel=0.03)
    model = AutoModelForCausalLM.from_pretrained(ddp)  # the whole model, in one safetensors file
    assert sum(p.numel() for p in model.parameters()) == sum(
        p.numel() for p in AutoModelForCausalLM.from_pretrained(single).parameters()
    )
    assert not (ddp / "pytorch_model.bin").exists() and (ddp / "model.safetensors").is_file()


# --- The server under load: 200 requests, 8 at a time, a quarter malformed ---

LOAD_SETTINGS = {"max_tokens_limit": 8, "max_concurrency": 2, "max_queue": 16, "max_body_bytes": 4096}
MESSAGES = [{"role": "user", "content": "First Citizen:"}]
MALFORMED: list[tuple[bytes, int]] = [
    (b'{"messages": [{"role": "user", "content": "hi"}', 400),  # bad JSON (cut short)
    (json.dumps({"messages": MESSAGES, "max_tokens": "four"}).encode(), 422),  # wrong type
    (json.dumps({"messages": "First Citizen:"}).encode(), 422),  # wrong type
    (json.dumps({"max_tokens": 4}).encode(), 422),  # missing messages
    (json.dumps({"messages": MESSAGES, "max_tokens": -5}).encode(), 422),  # not a positive integer
    (json.dumps({"messages": [{"role": "user", "content": "x" * 8000}]}).encode(), 413),  # body over 4096 bytes
]


def post(port: int, raw: bytes) -> tuple[int, dict]:
    """One request over its own connection, with a timeout on connect and on every read."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("POST", "/v1/chat/completions", body=raw, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


@pytest.mark.slow
def test_server_under_load_answers_every_request_and_stays_up(trained_aksis_dir, monkeypatch):
    import threading
    from concurrent.futures import ThreadPoolExecutor, wait

    from lmforge.serve import ServeSettings, create_server

    from .test_serve import count_statuses_at_capacity

    httpd = create_server(trained_aksis_dir, host="127.0.0.1", port=0, settings=ServeSettings(**LOAD_SETTINGS))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    port = httpd.server_port
    # 150 valid requests (every tenth asks for far more than max_tokens_limit: clamped, still answered) and 50
    # malformed ones, interleaved.
    requests: list[tuple[bytes, int | None]] = []
    for i in range(200):
        if i % 4 == 3:
            requests.append(MALFORMED[(i // 4) % len(MALFORMED)])
        else:
            body = {"messages": MESSAGES, "max_tokens": 10_000 if i % 10 == 0 else 4, "temperature": 0.8}
            requests.append((json.dumps(body).encode(), None))
    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            futures = [pool.submit(post, port, raw) for raw, _ in requests]
            _, not_done = wait(futures, timeout=90)  # a bound (each request also times out after 30 s)
            assert not not_done, f"{len(not_done)} requests never finished"
        for (raw, expected), future in zip(requests, futures, strict=True):
            status, body = future.result()
            if expected is None:  # valid: a completion, within the limit
                assert status == 200, body
                [choice] = body["choices"]
                assert isinstance(choice["message"]["content"], str)
                asked = min(json.loads(raw)["max_tokens"], LOAD_SETTINGS["max_tokens_limit"])  # clamped to 8
                written = body["usage"]["completion_tokens"]
                assert written == asked or (choice["finish_reason"] == "stop" and 1 <= written < asked), body
            else:  # malformed: the documented 4xx with an OpenAI-style error naming the problem
                assert status == expected, body
                assert body["error"]["code"] == expected and body["error"]["message"]
        assert sum(expected is not None for _, expected in requests) == 50
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request("GET", "/health")
        assert connection.getresponse().status == 200  # still up
        connection.close()
        assert post(port, json.dumps({"messages": MESSAGES, "max_tokens": 2}).encode())[0] == 200
        # Every slot is given back: with every generation held back, exactly the 18 slots are admitted again (2
        # running, 16 queued) and the 19th request is turned away. (A handler releases its slot just after its
        # response is sent, so the last ones may need a moment: a slot that leaked never comes back.)
        slots = LOAD_SETTINGS["max_concurrency"] + LOAD_SETTINGS["max_queue"]
        for _ in range(10):
            statuses = count_statuses_at_capacity(httpd, slots, monkeypatch)
            if statuses == [200] * slots + [503]:
                break
            time.sleep(0.5)
        assert statuses == [200] * slots + [503]
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)
