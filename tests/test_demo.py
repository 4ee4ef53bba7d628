"""`lmforge demo`: the Gradio page in headless Chromium (Debian's, never a downloaded one), and its handlers.

The browser test needs gradio, playwright (the Python package) and /usr/bin/chromium (`apt-get install chromium`);
it is skipped, saying which is missing, without them.
"""

import importlib.util
import shutil
import socket
import tempfile
from pathlib import Path

import pytest
import torch

from lmforge.models import SPECS

from .saved_models import LATENT_TEXT_A, LATENT_TEXT_B, PROMPTS, reference_text, save_latent_reasoner

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


@requires_gradio
@pytest.mark.skipif(importlib.util.find_spec("playwright") is None, reason="the playwright package is not installed")
@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium browser (Debian: apt-get install -y chromium)")
def test_demo_page_generates_text_in_a_browser(trained_aksis_dir: Path, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    from lmforge.demo import launch_demo

    port = free_port()
    demo = launch_demo(trained_aksis_dir, host="127.0.0.1", port=port, prevent_thread_lock=True)
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
            page.click("#generate")
            page.wait_for_function(
                "() => document.querySelector('#output textarea').value.length > 'First Citizen:'.length",
                timeout=120_000,
            )
            page.wait_for_timeout(1500)  # let the stream finish for the screenshot
            output = page.input_value("#output textarea")
            page.screenshot(path=str(tmp_path / "demo.png"), full_page=True)
            browser.close()
    finally:
        demo.close()
    assert output.startswith("First Citizen:") and len(output) > len("First Citizen:")
    assert (tmp_path / "demo.png").stat().st_size > 10_000


def _handler(demo, name: str):
    """The Python function behind an event of the page (the button's click and the prompt's submit share one)."""
    return next(fn.fn for fn in demo.fns.values() if fn.name == name)


@requires_gradio
def test_latent_reasoner_demo_interpolates(tmp_path: Path) -> None:
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    from lmforge.demo import build_demo

    folder = save_latent_reasoner(tmp_path / "latent_reasoner")
    demo = build_demo(folder)
    greedy = {"max_new_tokens": 5, "do_sample": False, "temperature": 1.0, "top_k": 0, "top_p": 1.0, "seed": -1}
    model = AutoModelForSeq2SeqLM.from_pretrained(folder).eval()
    encoder_tokenizer = AutoTokenizer.from_pretrained(folder, subfolder="encoder_tokenizer")
    decoder_tokenizer = AutoTokenizer.from_pretrained(folder)

    texts = list(_handler(demo, "interpolate")(LATENT_TEXT_A, LATENT_TEXT_B, 1.0, *greedy.values()))
    with torch.no_grad():
        ids = model.interpolate_and_generate(
            LATENT_TEXT_A, LATENT_TEXT_B, 1.0, tokenizer=encoder_tokenizer, max_new_tokens=5, do_sample=False
        )
    assert texts[-1].strip() == decoder_tokenizer.decode(ids[0], skip_special_tokens=True).strip()
    assert texts == sorted(texts, key=len)  # streamed: each update extends the previous one

    summaries = list(_handler(demo, "generate")(LATENT_TEXT_A, *greedy.values()))
    assert summaries and summaries[-1].strip()


@requires_gradio
def test_demo_sampling_follows_the_seed(trained_aksis_dir: Path) -> None:
    from lmforge.demo import build_demo

    generate = _handler(build_demo(trained_aksis_dir), "generate")
    sampled = {"max_new_tokens": 12, "do_sample": True, "temperature": 1.5, "top_k": 0, "top_p": 1.0}
    first, again = (list(generate("First Citizen:", *sampled.values(), 3))[-1] for _ in range(2))
    assert first == again and first.startswith("First Citizen:")
    others = {list(generate("First Citizen:", *sampled.values(), seed))[-1] for seed in (4, 5, 6)}
    assert len(others | {first}) > 1  # other seeds, other samples


@requires_gradio
@pytest.mark.parametrize("model_type", ARCHITECTURES)
def test_lmforge_demo_on_each_architecture(model_type: str, tiny_model_dirs: dict, monkeypatch) -> None:
    """`lmforge demo` as run from the command line, on a tiny saved model of each architecture: the page it would
    launch, built from the spec, and its Generate button."""
    import gradio

    from lmforge.cli.main import main

    folder, prompt = tiny_model_dirs[model_type], PROMPTS[model_type]
    spec = SPECS[model_type]
    page: dict = {}

    def launch(self, **kwargs) -> None:  # instead of serving: what the page shows and does
        page["share"] = kwargs.get("share")
        page["labels"] = {block.elem_id: getattr(block, "label", None) for block in self.blocks.values()}
        page["markdown"] = " ".join(str(getattr(block, "value", "")) for block in self.blocks.values())
        page["handlers"] = {fn.name for fn in self.fns.values()}
        greedy = {"max_new_tokens": 6, "do_sample": False, "temperature": 1.0, "top_k": 0, "top_p": 1.0, "seed": -1}
        page["texts"] = list(_handler(self, "generate")(prompt, *greedy.values()))

    monkeypatch.setattr(gradio.Blocks, "launch", launch)
    assert main(["demo", "--model-path", str(folder)]) == 0
    assert page["share"] is False
    assert page["labels"]["prompt"] == spec.prompt_label and spec.description in page["markdown"]
    assert ("interpolate" in page["handlers"]) == ("interpolate" in spec.modes)
    expected = reference_text(model_type, folder, prompt, 6)
    texts = page["texts"]
    assert texts[-1] == (prompt + expected if spec.prompt_style == "continue" else expected)
    assert texts == sorted(texts, key=len)  # streamed: each update extends the previous one
