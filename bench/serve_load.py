"""`lmforge serve` under load: the same 16 requests (64 new tokens each, greedy, streamed) sent one at a time, then by
4, 8 and 16 concurrent clients, against a real server process on 127.0.0.1.

The model is Aksis at the quickstart's former size (`common.QUICK`: width 256, 4 layers, 4 heads, context 256,
10,004 tokens), randomly initialised, with a BPE tokenizer trained on a few of the embedded plays: what is measured is
the server, not the weights. Every request asks for exactly 64 tokens; the tokens counted are the server's
`usage.completion_tokens`.

Per round, each setting runs once, in an order that rotates from round to round (sequential first, then last, ...);
the ratios to sequential are medians of the per-round ratios, as in the other bench scripts. Reported: aggregate new
tokens/s, p50/p95 latency of a request (sent to its last event) and time to first token (sent to its first text
event), and the batch sizes the server ran (its `/metrics`).

    python bench/serve_load.py                # 3 rounds
    python bench/serve_load.py --repeats 5
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from queue import Empty, Queue

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from common import QUICK, build, machine

from lmforge.data import load_plays
from lmforge.models import SPECS

PROMPTS = [
    "ROMEO:",
    "JULIET:",
    "First Citizen:\nBefore we proceed any further, hear me speak.",
    "All:\nSpeak, speak.",
    "KING RICHARD III:\nNow is the winter of our discontent",
    "HAMLET:\nTo be, or not to be",
    "MENENIUS:\nWhy, masters, my good friends, mine honest neighbours,",
    "LADY MACBETH:",
    "Second Citizen:\nWould you proceed especially against Caius Marcius?",
    "DUKE VINCENTIO:\nOf government the properties to unfold,",
    "PETRUCHIO:",
    "GLOUCESTER:\nNow is the winter",
    "CORIOLANUS:\nWhat's the matter, you dissentious rogues,",
    "BRUTUS:",
    "PROSPERO:\nOur revels now are ended.",
    "First Senator:",
]


def save_model(folder: Path) -> None:
    """Aksis at the quickstart's former size (`common.QUICK`), random weights, and a 10,004-token BPE tokenizer
    trained on four plays."""
    texts = [text for _, text in load_plays(max_plays=4)]
    spec = SPECS["aksis"]
    assert spec.train_tokenizer is not None
    tokenizer = spec.train_tokenizer(iter(texts), QUICK.vocab_size)
    model = build("aksis", QUICK).eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def start_server(folder: Path) -> tuple[subprocess.Popen, int]:
    command = [sys.executable, "-m", "lmforge", "serve", "--model-path", str(folder), "--port", "0"]
    command += ["--max-concurrency", "16", "--max-queue", "64", "--max-tokens-limit", "64"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert process.stdout is not None
    line = process.stdout.readline()
    port = int(line.split("http://127.0.0.1:")[1].split()[0])
    for _ in range(600):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200:
                return process, port
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError("the server never came up")


def one_request(client: httpx.Client, prompt: str, tokens: int) -> dict[str, float]:
    """One streamed completion: seconds to the first text event and to the end, and the tokens written."""
    body = {"prompt": prompt, "max_tokens": tokens, "temperature": 0, "stream": True}
    body["stream_options"] = {"include_usage": True}
    start = time.perf_counter()
    first = None
    written = 0
    with client.stream("POST", "/v1/completions", json=body) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[len("data: ") :])
            if first is None and event["choices"] and event["choices"][0]["text"]:
                first = time.perf_counter() - start
            if event.get("usage"):
                written = event["usage"]["completion_tokens"]
    latency = time.perf_counter() - start
    return {"ttft": first if first is not None else latency, "latency": latency, "tokens": written}


def run_setting(port: int, clients: int, tokens: int) -> dict[str, float]:
    """All PROMPTS, by `clients` threads taking them from one queue; aggregate tokens/s and the latencies."""
    work: Queue[str] = Queue()
    for prompt in PROMPTS:
        work.put(prompt)
    results: list[dict[str, float]] = []
    lock = threading.Lock()

    def worker() -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600) as client:
            while True:
                try:
                    prompt = work.get_nowait()
                except Empty:
                    return
                result = one_request(client, prompt, tokens)
                with lock:
                    results.append(result)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    assert len(results) == len(PROMPTS) and all(r["tokens"] == tokens for r in results), results
    latencies = sorted(r["latency"] for r in results)
    ttfts = sorted(r["ttft"] for r in results)
    return {
        "tokens_per_s": sum(r["tokens"] for r in results) / wall,
        "p50": statistics.median(latencies),
        "p95": latencies[min(len(latencies) - 1, round(0.95 * (len(latencies) - 1)))],
        "ttft_p50": statistics.median(ttfts),
        "ttft_p95": ttfts[min(len(ttfts) - 1, round(0.95 * (len(ttfts) - 1)))],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--concurrency", default="4,8,16", help="comma-separated numbers of concurrent clients")
    args = parser.parse_args()
    settings = [1, *(int(c) for c in args.concurrency.split(","))]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "aksis-quickstart-size"
        save_model(folder)
        process, port = start_server(folder)
        try:
            run_setting(port, 16, 8)  # warm-up: first-call costs out of the measurements
            rounds: dict[int, list[dict[str, float]]] = {c: [] for c in settings}
            for round_index in range(args.repeats):
                shift = round_index % len(settings)
                for clients in settings[shift:] + settings[:shift]:
                    rounds[clients].append(run_setting(port, clients, args.new_tokens))
            stats = httpx.get(f"http://127.0.0.1:{port}/metrics").json()
        finally:
            process.terminate()
            process.wait(timeout=60)
    print(f"# {machine()}; Aksis 4 x 256, {len(PROMPTS)} requests x {args.new_tokens} new tokens, greedy")
    print(f"# {args.repeats} rounds; medians over rounds; ratio = median of per-round ratios to sequential")
    print("| clients | tokens/s | ratio vs sequential | p50 latency s | p95 latency s | TTFT p50 s | TTFT p95 s |")
    print("|---|---|---|---|---|---|---|")
    for clients in settings:
        ratios = [r["tokens_per_s"] / s["tokens_per_s"] for r, s in zip(rounds[clients], rounds[1], strict=True)]
        row = {key: statistics.median(r[key] for r in rounds[clients]) for key in rounds[clients][0]}
        name = "1 (sequential)" if clients == 1 else str(clients)
        print(
            f"| {name} | {row['tokens_per_s']:.0f} | {statistics.median(ratios):.2f}x | {row['p50']:.2f} | "
            f"{row['p95']:.2f} | {row['ttft_p50']:.3f} | {row['ttft_p95']:.3f} |"
        )
    print(
        f"# server batches: {stats['batches']}, rows by batch size: {stats['batch_sizes']}, failed: {stats['failed']}"
    )


if __name__ == "__main__":
    main()
