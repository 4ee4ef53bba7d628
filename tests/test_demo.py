"""`lmforge demo`: the Gradio page in headless Chromium (Debian's, never a downloaded one), and its handlers, on
copies of the golden models (tests/data/golden). What the page writes is checked against the golden text or the
independent oracles of tests/models/contract.py (greedy and seeded sampling), never against another `generate()`.

The browser test needs gradio, playwright (the Python package) and /usr/bin/chromium (`apt-get install chromium`,
which .ci/run does); without them it is skipped, saying which is missing, and CI fails on that skip (LMFORGE_NO_SKIPS,
tests/conftest.py).
"""

import importlib.util
import shutil
import socket
import tempfile
from pathlib import Path

import pytest
import torch
from torch._dynamo.utils import counters

from lmforge.models import SPECS

from .golden import PROMPTS, golden_text
from .models.contract import oracle_sample
from .saved_models import load_auto

ARCHITECTURES = ["aksis", "char_transformer", "ae_llm", "latent_reasoner"]

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
requires_gradio = pytest.mark.skipif(
    importlib.util.find_spec("gradio") is None, reason='gradio is not installed (pip install -e ".[dev]")'
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def sampled_text(folder: Path, prompt: str, new_tokens: int, seed: int, **options: float | int | None) -> str:
    """The seeded sample of the sampling oracle, decoded as the page shows it (the prompt, then the new text)."""
    model, tokenizer, _ = load_auto("aksis", folder)
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    new = oracle_sample(model, ids, new_tokens, seed, eos_token_id=tokenizer.eos_token_id, **options)  # type: ignore[arg-type]
    return prompt + str(tokenizer.decode(new, skip_special_tokens=True))


def test_lmforge_demo_passes_the_feedback_file_and_the_compared_model(tmp_path, monkeypatch) -> None:
    """`lmforge demo --feedback-file F --compare-model DIR` reaches the page's side-by-side tab (defaults otherwise)."""
    import lmforge.demo
    from lmforge.cli.main import main

    calls: list[dict] = []
    monkeypatch.setattr(lmforge.demo, "launch_demo", lambda model_path, **kwargs: calls.append(kwargs))
    feedback = tmp_path / "judgements.jsonl"
    assert main(["demo", "--model-path", "a", "--feedback-file", str(feedback), "--compare-model", "b"]) == 0
    assert main(["demo", "--model-path", "a"]) == 0
    assert (calls[0]["feedback_file"], calls[0]["compare_model"]) == (str(feedback), "b")
    assert (calls[1]["feedback_file"], calls[1]["compare_model"]) == (lmforge.demo.DEFAULT_FEEDBACK_FILE, None)
    assert main(["demo", "--model-path", "a", "--compile-decoding"]) == 0
    assert [call["compile_decoding"] for call in calls] == [False, False, True]


@requires_gradio
def test_demo_with_compile_decoding_writes_the_golden_text(tiny_model_dirs: dict) -> None:
    from lmforge.demo import build_demo

    torch._dynamo.reset()
    graphs = counters["stats"]["unique_graphs"]
    try:
        generate = _handler(build_demo(Path(tiny_model_dirs["aksis"]), compile_decoding=True), "generate")
        for prompt in PROMPTS["aksis"]:
            shown = list(generate(prompt, *GREEDY.values()))[-1]
            assert shown == prompt + golden_text("aksis", prompt)
    finally:
        torch._dynamo.reset()
    assert counters["stats"]["unique_graphs"] > graphs, "the demo decoded eagerly: Dynamo compiled no graph"


@requires_gradio
@pytest.mark.skipif(importlib.util.find_spec("playwright") is None, reason="the playwright package is not installed")
@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium browser (Debian: apt-get install -y chromium)")
def test_demo_page_generates_text_in_a_browser(tiny_model_dirs: dict, tmp_path: Path) -> None:
    """The page as a user sees it: type a prompt and a seed, press Generate; the output box ends with the seeded
    sample the sampling oracle draws with the page's default settings (sampling on, temperature 0.8, top-k 50, half
    of the context's new tokens)."""
    from playwright.sync_api import sync_playwright

    from lmforge.demo import launch_demo

    folder = Path(tiny_model_dirs["aksis"])
    expected = sampled_text(folder, "First Citizen:", 31, seed=3, temperature=0.8, top_k=50)
    port = free_port()
    demo = launch_demo(folder, host="127.0.0.1", port=port, prevent_thread_lock=True)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch_persistent_context(
                tempfile.mkdtemp(dir=tmp_path),  # a fresh profile
                executable_path=CHROMIUM,
                args=CHROMIUM_FLAGS,
                headless=True,
                viewport={"width": 1200, "height": 820},
            )
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}/", wait_until="networkidle")
            page.fill("#prompt textarea", "First Citizen:")
            page.fill("#seed input", "3")
            page.click("#generate")
            try:
                page.wait_for_function(
                    "expected => document.querySelector('#output textarea').value === expected",
                    arg=expected,
                    timeout=120_000,
                )
            finally:
                output = page.input_value("#output textarea")
                page.screenshot(path=str(tmp_path / "demo.png"), full_page=True)
                browser.close()
    finally:
        demo.close()
    assert output == expected
    assert (tmp_path / "demo.png").stat().st_size > 10_000


def _handler(demo, name: str):
    """The Python function behind an event of the page (the button's click and the prompt's submit share one)."""
    return next(fn.fn for fn in demo.fns.values() if fn.name == name)


GREEDY = {"max_new_tokens": 8, "do_sample": False, "temperature": 1.0, "top_k": 0, "top_p": 1.0, "seed": -1}


@requires_gradio
def test_latent_reasoner_demo_interpolates(tiny_model_dirs: dict) -> None:
    """alpha 0 decodes from the prompt's idea vector alone, alpha 1 from text B's: their golden texts, streamed."""
    from lmforge.demo import build_demo

    demo = build_demo(tiny_model_dirs["latent_reasoner"])
    text_a, text_b = PROMPTS["latent_reasoner"]
    for alpha, text in ((0.0, text_a), (1.0, text_b)):
        texts = list(_handler(demo, "interpolate")(text_a, text_b, alpha, *GREEDY.values()))
        assert texts[-1] == golden_text("latent_reasoner", text)
        assert texts == sorted(texts, key=len)  # streamed: each update extends the previous one
    summaries = list(_handler(demo, "generate")(text_a, *GREEDY.values()))
    assert summaries[-1] == golden_text("latent_reasoner", text_a)


@requires_gradio
def test_demo_sampling_draws_the_seeded_sample(tiny_model_dirs: dict) -> None:
    from lmforge.demo import build_demo

    folder = Path(tiny_model_dirs["aksis"])
    generate = _handler(build_demo(folder), "generate")
    sampled = {"max_new_tokens": 12, "do_sample": True, "temperature": 1.5, "top_k": 0, "top_p": 1.0}
    samples = {seed: list(generate("First Citizen:", *sampled.values(), seed))[-1] for seed in (3, 4)}
    for seed, text in samples.items():  # top-k 0 and top-p 1 are off: the whole vocabulary, at temperature 1.5
        assert text == sampled_text(folder, "First Citizen:", 12, seed=seed, temperature=1.5)
    assert samples[3] != samples[4]
    assert samples[3] != "First Citizen:" + golden_text("aksis", "First Citizen:")[:12]


@requires_gradio
@pytest.mark.parametrize("model_type", ARCHITECTURES)
def test_lmforge_demo_on_each_architecture(model_type: str, tiny_model_dirs: dict, monkeypatch) -> None:
    """`lmforge demo` as run from the command line, on a tiny saved model of each architecture: the page it would
    launch, built from the spec, and its Generate button."""
    import gradio

    from lmforge.cli.main import main

    folder, prompt = tiny_model_dirs[model_type], PROMPTS[model_type][0]
    spec = SPECS[model_type]
    page: dict = {}

    def launch(self, **kwargs) -> None:  # instead of serving: what the page shows and does
        page["share"] = kwargs.get("share")
        page["labels"] = {block.elem_id: getattr(block, "label", None) for block in self.blocks.values()}
        page["markdown"] = " ".join(str(getattr(block, "value", "")) for block in self.blocks.values())
        page["handlers"] = {fn.name for fn in self.fns.values()}
        page["texts"] = list(_handler(self, "generate")(prompt, *GREEDY.values()))

    monkeypatch.setattr(gradio.Blocks, "launch", launch)
    assert main(["demo", "--model-path", str(folder)]) == 0
    assert page["share"] is False
    assert page["labels"]["prompt"] == spec.prompt_label and spec.description in page["markdown"]
    assert ("interpolate" in page["handlers"]) == ("interpolate" in spec.modes)
    expected = golden_text(model_type, prompt)
    texts = page["texts"]
    assert texts[-1] == (prompt + expected if spec.prompt_style == "continue" else expected)
    assert texts == sorted(texts, key=len)  # streamed: each update extends the previous one


@requires_gradio
@pytest.mark.skipif(importlib.util.find_spec("playwright") is None, reason="the playwright package is not installed")
@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium browser (Debian: apt-get install -y chromium)")
def test_side_by_side_judgement_lands_in_the_feedback_file(tiny_model_dirs: dict, tmp_path: Path) -> None:
    """Human evaluation as a user does it: open the "Side by side" tab, type a prompt, generate both outputs, press
    "Right is better"; the feedback file then holds that judgement, with the texts the page showed."""
    import json

    from playwright.sync_api import sync_playwright

    from lmforge.demo import launch_demo

    folder = Path(tiny_model_dirs["aksis"])
    feedback = tmp_path / "feedback.jsonl"
    port = free_port()
    demo = launch_demo(folder, host="127.0.0.1", port=port, prevent_thread_lock=True, feedback_file=feedback)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch_persistent_context(
                tempfile.mkdtemp(dir=tmp_path),
                executable_path=CHROMIUM,
                args=CHROMIUM_FLAGS,
                headless=True,
                viewport={"width": 1200, "height": 900},
            )
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}/", wait_until="networkidle")
            page.get_by_role("tab", name="Side by side").click()
            page.fill("#sbs_prompt textarea", "All:")
            page.click("#sbs_generate")
            try:
                page.wait_for_function(
                    "() => document.querySelector('#sbs_status').innerText.includes('Which output is better?')",
                    timeout=120_000,
                )
                left, right = page.input_value("#sbs_left textarea"), page.input_value("#sbs_right textarea")
                page.click("#prefer_right")
                page.wait_for_function(
                    "() => document.querySelector('#sbs_status').innerText.includes('Recorded')", timeout=60_000
                )
                status = page.inner_text("#sbs_status")
            finally:
                page.screenshot(path=str(tmp_path / "side_by_side.png"), full_page=True)
                browser.close()
    finally:
        demo.close()
    records = [json.loads(line) for line in feedback.read_text(encoding="utf-8").splitlines()]
    assert len(records) == 1
    record = records[0]
    assert (record["prompt"], record["chosen"], record["rejected"]) == ("All:", right, left)
    assert {record["chosen_by"], record["rejected_by"]} == {"greedy", "top-p 0.9"}  # the tab's two default systems
    assert f"Recorded: {record['chosen_by']} preferred to {record['rejected_by']}" in status
