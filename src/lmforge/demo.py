"""`lmforge demo`: a web page (Gradio) for a saved model: a prompt box, sampling settings, and the output streamed
as it is generated (`TextIteratorStreamer`). For LatentReasoner, a second text and a slider decode from a mix of the
two texts' idea vectors.

    lmforge demo --model-path outputs/aksis-shakespeare        # then open http://127.0.0.1:7860

Gradio is an optional extra (`pip install "lmforge[demo]"`). The page never reaches the internet: analytics are off
and no share link is made.
"""

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from threading import Thread
from typing import Any

from transformers import PreTrainedModel, TextIteratorStreamer

from .errors import LmforgeError
from .generation import generate_interpolated_text, generate_text, load_model_and_tokenizer

DESCRIPTIONS = {
    "aksis": "Aksis, a GPT-style decoder: it continues the text you give it.",
    "char_transformer": "CharTransformer, a character-level decoder: it continues the text you give it.",
    "ae_llm": "AE-LLM, a GRU autoencoder with a Thinking Net: it answers a short question.",
    "latent_reasoner": "LatentReasoner: it reads a text into one idea vector and writes a summary from it.",
}
PROMPT_LABELS = {"ae_llm": "Question", "latent_reasoner": "Text to summarize"}
# The longest output the page offers (a causal model is further limited by its context).
MAX_NEW_TOKENS_LIMIT = 512


def import_gradio() -> Any:
    """gradio, with analytics switched off before it is imported; a one-line error when it is not installed."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    try:
        import gradio
    except ImportError:
        raise LmforgeError('the web demo needs gradio: pip install "lmforge[demo]"') from None
    return gradio


def stream_text(run: Callable[[TextIteratorStreamer], Any], tokenizer: Any) -> Iterator[str]:
    """Run `run(streamer)` in a thread and yield the text generated so far after each new piece."""
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=600)
    errors: list[BaseException] = []

    def target() -> None:
        try:
            run(streamer)
        except BaseException as err:  # shown on the page instead of dying in the thread
            errors.append(err)
            streamer.end()

    thread = Thread(target=target, daemon=True)
    thread.start()
    text = ""
    for piece in streamer:
        text += piece
        yield text
    thread.join()
    if errors:
        raise errors[0]


def _shown(gr: Any, texts: Iterator[str], prefix: str = "") -> Iterator[str]:
    """What the output box shows as the text grows; a one-line LmforgeError becomes a message on the page."""
    try:
        for text in texts:
            yield prefix + text
    except LmforgeError as err:
        raise gr.Error(str(err)) from None


def as_seed(value: float | None) -> int | None:
    """The seed field: a whole number >= 0 seeds the sampling, -1 (or empty) leaves it random."""
    return None if value is None or value < 0 else int(value)


def sampling_kwargs(do_sample: bool, temperature: float, top_k: float, top_p: float) -> dict[str, Any]:
    if not do_sample:
        return {"do_sample": False}
    return {
        "do_sample": True,
        "temperature": float(temperature),
        "top_k": int(top_k) if top_k and top_k > 0 else None,
        "top_p": float(top_p) if top_p and top_p < 1.0 else None,
    }


def _examples(model_path: str | Path, model_type: str) -> list[str]:
    from .hub.cards import DEFAULT_WIDGETS, read_model_folder, widget_texts

    try:
        return widget_texts(read_model_folder(model_path))
    except LmforgeError:  # e.g. an adapter folder: no run files to take examples from
        return list(DEFAULT_WIDGETS.get(model_type, ("",)))


def build_demo(model_path: str | Path, model: PreTrainedModel | None = None, tokenizer: Any = None) -> Any:
    """The Gradio Blocks of the demo (not launched); the model is loaded from `model_path` unless given."""
    gr = import_gradio()
    if model is None or tokenizer is None:
        model, tokenizer = load_model_and_tokenizer(model_path)
    config: Any = model.config
    model_type = str(config.model_type)
    causal = not config.is_encoder_decoder
    context = getattr(config, "max_position_embeddings", None)
    limit = min(MAX_NEW_TOKENS_LIMIT, context - 1) if causal and context else MAX_NEW_TOKENS_LIMIT
    examples = _examples(model_path, model_type)
    name = Path(str(model_path)).resolve().name

    def generate(
        prompt: str,
        max_new_tokens: float,
        do_sample: bool,
        temperature: float,
        top_k: float,
        top_p: float,
        seed: float | None,
    ) -> Iterator[str]:
        def run(streamer: TextIteratorStreamer) -> None:
            generate_text(
                model,
                tokenizer,
                prompt,
                max_new_tokens=int(max_new_tokens),
                seed=as_seed(seed),
                streamer=streamer,
                **sampling_kwargs(do_sample, temperature, top_k, top_p),
            )

        yield from _shown(gr, stream_text(run, tokenizer), prompt if causal else "")

    with gr.Blocks(title=f"{name} - lmforge demo", analytics_enabled=False) as demo:
        gr.Markdown(f"# {name}\n{DESCRIPTIONS.get(model_type, '')}")
        with gr.Row():
            with gr.Column(scale=3):
                prompt = gr.Textbox(
                    label=PROMPT_LABELS.get(model_type, "Prompt"), lines=4, value=examples[0], elem_id="prompt"
                )
                run_button = gr.Button("Generate", variant="primary", elem_id="generate")
                output = gr.Textbox(label="Output", lines=10, elem_id="output", interactive=False)
            with gr.Column(scale=2):
                max_new_tokens = gr.Slider(
                    1, limit, value=min(100, max(1, limit // 2)), step=1, label="Max new tokens"
                )
                do_sample = gr.Checkbox(value=causal, label="Sample (off: greedy decoding)")
                temperature = gr.Slider(0.05, 2.0, value=0.8, step=0.05, label="Temperature")
                top_k = gr.Slider(0, 200, value=50, step=1, label="Top-k (0: off)")
                top_p = gr.Slider(0.05, 1.0, value=1.0, step=0.05, label="Top-p (1: off)")
                seed = gr.Number(value=-1, precision=0, label="Seed (-1: a new one each time)", elem_id="seed")
        gr.Examples(examples=[[text] for text in examples], inputs=[prompt])
        settings = [max_new_tokens, do_sample, temperature, top_k, top_p, seed]
        run_button.click(generate, inputs=[prompt, *settings], outputs=output)
        prompt.submit(generate, inputs=[prompt, *settings], outputs=output)

        if hasattr(model, "interpolate_and_generate"):  # LatentReasoner

            def interpolate(
                text_a: str,
                text_b: str,
                alpha: float,
                max_new_tokens: float,
                do_sample: bool,
                temperature: float,
                top_k: float,
                top_p: float,
                seed: float | None,
            ) -> Iterator[str]:
                if not text_a.strip() or not text_b.strip():
                    raise gr.Error("Give both texts: the prompt above and text B.")

                def run(streamer: TextIteratorStreamer) -> None:
                    generate_interpolated_text(
                        model,
                        tokenizer,
                        text_a,
                        text_b,
                        float(alpha),
                        max_new_tokens=int(max_new_tokens),
                        seed=as_seed(seed),
                        streamer=streamer,
                        **sampling_kwargs(do_sample, temperature, top_k, top_p),
                    )

                yield from _shown(gr, stream_text(run, tokenizer))

            with gr.Accordion("Interpolate between two texts", open=True):
                text_b = gr.Textbox(label="Text B", lines=3, elem_id="text_b")
                alpha = gr.Slider(0.0, 1.0, value=0.5, step=0.05, label="alpha (0: the prompt alone, 1: text B alone)")
                interpolate_button = gr.Button("Interpolate", elem_id="interpolate")
                mixed = gr.Textbox(label="Output from the mixed idea vector", lines=6, elem_id="mixed")
            interpolate_button.click(interpolate, inputs=[prompt, text_b, alpha, *settings], outputs=mixed)
    return demo


def launch_demo(
    model_path: str | Path,
    host: str | None = None,
    port: int | None = None,
    prevent_thread_lock: bool = False,
    quiet: bool = True,
) -> Any:
    """Build and serve the demo (never with a share link); returns the Blocks (useful with `prevent_thread_lock`).

    `host`/`port` default to gradio's (127.0.0.1:7860, or GRADIO_SERVER_NAME / GRADIO_SERVER_PORT, as on a Space).
    """
    demo = build_demo(model_path)
    demo.queue(default_concurrency_limit=1, max_size=32)
    demo.launch(
        server_name=host,
        server_port=port,
        share=False,
        prevent_thread_lock=prevent_thread_lock,
        show_error=True,
        ssr_mode=False,
        footer_links=[],
        quiet=quiet,  # not quiet: gradio prints the address once it listens
    )
    return demo


__all__ = ["build_demo", "import_gradio", "launch_demo", "stream_text"]
