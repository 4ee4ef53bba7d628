"""`lmforge demo`: a web page (Gradio) for a saved model: a prompt box, sampling settings, and the output streamed
as it is generated (`lmforge.inference.TextGenerator.stream`). A model whose spec has the "interpolate" mode
(LatentReasoner) also gets a second text and a slider that decode from a mix of the two texts' latent vectors.

    lmforge demo --model-path outputs/aksis-shakespeare        # then open http://127.0.0.1:7860

A "Side by side" tab is for human evaluation: one prompt, two outputs from two systems (two decoding strategies, or
the same strategy on two models with `compare_model`) shown in random order, and a button for the better one. Each
judgement is appended to a JSON-lines file (`feedback_file`, default `feedback.jsonl` in the working directory;
`lmforge.evaluation.preferences`: prompt, chosen, rejected, chosen_by, rejected_by), flushed and fsynced before the
page answers; `lmforge eval-report FILE` gives the win rates and `lmforge dpo` learns from them.

The page's title line, prompt label and fallback examples come from the model's spec. Gradio is an optional extra
(`pip install "lmforge[demo]"`). The page never reaches the internet: analytics are off and no share link is made.
"""

import json
import os
import random
import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from transformers import TextIteratorStreamer

from .errors import LmforgeError, one_line
from .inference import GenerationSettings, TextGenerator, TextStream

# The decoding strategies the side-by-side tab compares (the `GenerationSettings` options of each).
SIDE_BY_SIDE_STRATEGIES: dict[str, dict[str, Any]] = {
    "greedy": {"do_sample": False},
    "temperature 0.7": {"do_sample": True, "temperature": 0.7, "top_k": 0},
    "temperature 1.0": {"do_sample": True, "temperature": 1.0, "top_k": 0},
    "top-k 40": {"do_sample": True, "top_k": 40},
    "top-p 0.9": {"do_sample": True, "top_p": 0.9, "top_k": 0},
    "beam search 4": {"do_sample": False, "num_beams": 4},
}
DEFAULT_FEEDBACK_FILE = "feedback.jsonl"
# The longest output the page offers (the model may allow less: `TextGenerator.max_new_tokens_limit`).
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
    """Deprecated (lmforge 0.1; goes in the next release): use `TextGenerator.stream`. Runs `run(streamer)` in a
    thread and yields the text generated so far after each new piece."""
    warnings.warn(
        "lmforge.demo.stream_text is deprecated: use lmforge.inference.TextGenerator.stream",
        FutureWarning,
        stacklevel=2,
    )
    text = ""
    run_any: Any = run
    for piece in TextStream(run_any, tokenizer, threading.Event()):
        text += piece
        yield text


def _shown(gr: Any, pieces: Callable[[], TextStream], prefix: str = "") -> Iterator[str]:
    """What the output box shows as the text grows; a one-line LmforgeError becomes a message on the page."""
    text = prefix
    try:
        for piece in pieces():
            text += piece
            yield text
    except LmforgeError as err:
        raise gr.Error(str(err)) from None


def as_seed(value: float | None) -> int | None:
    """The seed field: a whole number >= 0 seeds the sampling, -1 (or empty) leaves it random."""
    return None if value is None or value < 0 else int(value)


def page_settings(
    max_new_tokens: float, do_sample: bool, temperature: float, top_k: float, top_p: float, seed: float | None
) -> GenerationSettings:
    """The `GenerationSettings` of the page's controls (top-k 0 and top-p 1 are off)."""
    if not do_sample:
        return GenerationSettings(max_new_tokens=int(max_new_tokens), do_sample=False, seed=as_seed(seed))
    return GenerationSettings(
        max_new_tokens=int(max_new_tokens),
        do_sample=True,
        temperature=float(temperature),
        # 0, not None: generate() fills an unset top-k with transformers' default (50), and the page promises "off"
        top_k=int(top_k) if top_k and top_k > 0 else 0,
        top_p=float(top_p) if top_p and top_p < 1.0 else None,
        seed=as_seed(seed),
    )


def _examples(model_path: str | Path, generator: TextGenerator) -> list[str]:
    """The run's sample prompts (or prompts in the style of its data), else the spec's examples."""
    from .hub.cards import read_model_folder, widget_texts

    try:
        examples = widget_texts(read_model_folder(model_path))
    except (LmforgeError, KeyError):  # e.g. an adapter folder: no run files to take examples from
        examples = []
    spec = generator.spec
    return examples or list(spec.example_prompts if spec is not None else ()) or [""]


def side_by_side_systems(
    name: str, generator: TextGenerator, compare: tuple[str, TextGenerator] | None = None
) -> dict[str, tuple[TextGenerator, dict[str, Any]]]:
    """What the side-by-side tab can compare: label -> (generator, settings options). With one model, its decoding
    strategies; with a second one (`compare`), each strategy of each model ("name / strategy")."""
    models = [(name, generator)] + ([compare] if compare is not None else [])
    if len(models) == 1:
        return {label: (generator, options) for label, options in SIDE_BY_SIDE_STRATEGIES.items()}
    return {
        f"{model_name} / {label}": (model_generator, options)
        for model_name, model_generator in models
        for label, options in SIDE_BY_SIDE_STRATEGIES.items()
    }


def build_demo(
    model_path: str | Path,
    model: Any = None,
    tokenizer: Any = None,
    feedback_file: str | Path = DEFAULT_FEEDBACK_FILE,
    compare_model: str | Path | None = None,
    compile_decoding: bool = False,
) -> Any:
    """The Gradio Blocks of the demo (not launched); the model is loaded from `model_path` unless given. The
    side-by-side tab appends its judgements to `feedback_file` and compares with `compare_model` when given.
    `compile_decoding`: the models decode through transformers' compiled decoding step (`lmforge.inference`)."""
    gr = import_gradio()
    from .evaluation.preferences import append_judgement

    if model is None or tokenizer is None:
        generator = TextGenerator.from_pretrained(model_path, compile_decoding=compile_decoding)
    else:
        generator = TextGenerator(model, tokenizer, compile_decoding=compile_decoding)
    spec = generator.spec
    continues = generator.prompt_style == "continue"
    model_limit = generator.max_new_tokens_limit
    limit = min(MAX_NEW_TOKENS_LIMIT, model_limit) if model_limit else MAX_NEW_TOKENS_LIMIT
    examples = _examples(model_path, generator)
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
        settings = page_settings(max_new_tokens, do_sample, temperature, top_k, top_p, seed)
        yield from _shown(gr, lambda: generator.stream(prompt, settings), prompt if continues else "")

    compare = None
    if compare_model is not None:
        other = Path(str(compare_model)).resolve().name
        compared = TextGenerator.from_pretrained(compare_model, compile_decoding=compile_decoding)
        compare = (other if other != name else f"{other} (B)", compared)
    systems = side_by_side_systems(name, generator, compare)
    labels = list(systems)
    feedback_path = Path(feedback_file)

    def generate_pair(prompt: str, system_a: str, system_b: str, max_new_tokens: float) -> tuple[str, str, str, str]:
        if system_a not in systems or system_b not in systems:
            raise gr.Error(f"Choose two systems among: {', '.join(labels)}")
        if system_a == system_b:
            raise gr.Error("Choose two different systems to compare.")
        seed = random.randrange(2**31)
        outputs = []
        for label in (system_a, system_b):
            system_generator, options = systems[label]
            settings = GenerationSettings(max_new_tokens=int(max_new_tokens), seed=seed, **options)
            try:
                outputs.append({"text": system_generator.generate(prompt, settings), "by": label})
            except LmforgeError as err:
                raise gr.Error(str(err)) from None
        random.shuffle(outputs)  # blind: the page does not say which system wrote which side
        state = {"prompt": prompt, "left": outputs[0], "right": outputs[1], "seed": seed}
        return outputs[0]["text"], outputs[1]["text"], json.dumps(state), "Which output is better?"

    def judge(better: str, pair: str | None) -> tuple[str, str]:
        if not pair:
            raise gr.Error("Generate two outputs first.")
        state = json.loads(pair)
        worse = "right" if better == "left" else "left"
        record = append_judgement(
            feedback_path,
            {
                "prompt": state["prompt"],
                "chosen": state[better]["text"],
                "rejected": state[worse]["text"],
                "chosen_by": state[better]["by"],
                "rejected_by": state[worse]["by"],
                "seed": state["seed"],
            },
        )
        return "", f"Recorded: {record['chosen_by']} preferred to {record['rejected_by']} (in {feedback_path})."

    with gr.Blocks(title=f"{name} - lmforge demo", analytics_enabled=False) as demo:
        gr.Markdown(f"# {name}\n{spec.description if spec is not None else ''}")
        with gr.Tab("Generate"):
            with gr.Row():
                with gr.Column(scale=3):
                    label = spec.prompt_label if spec is not None else "Prompt"
                    prompt = gr.Textbox(label=label, lines=4, value=examples[0], elem_id="prompt")
                    run_button = gr.Button("Generate", variant="primary", elem_id="generate")
                    output = gr.Textbox(label="Output", lines=10, elem_id="output", interactive=False)
                with gr.Column(scale=2):
                    max_new_tokens = gr.Slider(
                        1, limit, value=min(100, max(1, limit // 2)), step=1, label="Max new tokens"
                    )
                    do_sample = gr.Checkbox(value=continues, label="Sample (off: greedy decoding)")
                    temperature = gr.Slider(0.05, 2.0, value=0.8, step=0.05, label="Temperature")
                    top_k = gr.Slider(0, 200, value=50, step=1, label="Top-k (0: off)")
                    top_p = gr.Slider(0.05, 1.0, value=1.0, step=0.05, label="Top-p (1: off)")
                    seed = gr.Number(value=-1, precision=0, label="Seed (-1: a new one each time)", elem_id="seed")
            gr.Examples(examples=[[text] for text in examples], inputs=[prompt])
            settings = [max_new_tokens, do_sample, temperature, top_k, top_p, seed]
            run_button.click(generate, inputs=[prompt, *settings], outputs=output)
            prompt.submit(generate, inputs=[prompt, *settings], outputs=output)

            if "interpolate" in generator.modes:

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
                    settings = page_settings(max_new_tokens, do_sample, temperature, top_k, top_p, seed)
                    yield from _shown(
                        gr, lambda: generator.stream(text_a, settings, interpolate_with=text_b, alpha=float(alpha))
                    )

                with gr.Accordion("Interpolate between two texts", open=True):
                    text_b = gr.Textbox(label="Text B", lines=3, elem_id="text_b")
                    alpha = gr.Slider(
                        0.0, 1.0, value=0.5, step=0.05, label="alpha (0: the prompt alone, 1: text B alone)"
                    )
                    interpolate_button = gr.Button("Interpolate", elem_id="interpolate")
                    mixed = gr.Textbox(label="Output from the mixed latent vector", lines=6, elem_id="mixed")
                interpolate_button.click(interpolate, inputs=[prompt, text_b, alpha, *settings], outputs=mixed)

        with gr.Tab("Side by side"):
            gr.Markdown(
                "Two outputs for one prompt, in random order: pick the better one. Each judgement is added to "
                f"`{feedback_path}` (see `lmforge eval-report`)."
            )
            with gr.Row():
                system_a = gr.Dropdown(labels, value=labels[0], label="System A", elem_id="sbs_a")
                system_b = gr.Dropdown(labels, value=labels[-2], label="System B", elem_id="sbs_b")
                pair_tokens = gr.Slider(1, limit, value=min(60, limit), step=1, label="Max new tokens")
            pair_prompt = gr.Textbox(label=label, lines=3, value=examples[0], elem_id="sbs_prompt")
            pair_button = gr.Button("Generate both", variant="primary", elem_id="sbs_generate")
            with gr.Row():
                left = gr.Textbox(label="Left", lines=8, interactive=False, elem_id="sbs_left")
                right = gr.Textbox(label="Right", lines=8, interactive=False, elem_id="sbs_right")
            with gr.Row():
                prefer_left = gr.Button("Left is better", elem_id="prefer_left")
                prefer_right = gr.Button("Right is better", elem_id="prefer_right")
            status = gr.Markdown("", elem_id="sbs_status")
            # the pair being judged, as JSON in a hidden box (a gr.State would keep the page's network busy)
            pair = gr.Textbox(value="", visible=False, elem_id="sbs_pair")
            pair_button.click(
                generate_pair,
                inputs=[pair_prompt, system_a, system_b, pair_tokens],
                outputs=[left, right, pair, status],
            )
            prefer_left.click(lambda state: judge("left", state), inputs=[pair], outputs=[pair, status])
            prefer_right.click(lambda state: judge("right", state), inputs=[pair], outputs=[pair, status])
    return demo


def launch_demo(
    model_path: str | Path,
    host: str | None = None,
    port: int | None = None,
    prevent_thread_lock: bool = False,
    quiet: bool = True,
    feedback_file: str | Path = DEFAULT_FEEDBACK_FILE,
    compare_model: str | Path | None = None,
    compile_decoding: bool = False,
) -> Any:
    """Build and serve the demo (never with a share link); returns the Blocks (useful with `prevent_thread_lock`).

    The side-by-side tab writes its judgements to `feedback_file` and compares with `compare_model` when given;
    `compile_decoding` as in `build_demo`.
    `host`/`port` default to gradio's (127.0.0.1:7860, or GRADIO_SERVER_NAME / GRADIO_SERVER_PORT, as on a Space).
    """
    demo = build_demo(
        model_path, feedback_file=feedback_file, compare_model=compare_model, compile_decoding=compile_decoding
    )
    demo.queue(default_concurrency_limit=1, max_size=32)
    try:
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
    except OSError as err:  # gradio: "Cannot find empty port in range: ..." when the port is taken
        where = f"{host or '127.0.0.1'}:{port or 7860}"
        raise LmforgeError(f"cannot listen on {where} ({one_line(err)}); pass another --port") from None
    return demo


__all__ = [
    "SIDE_BY_SIDE_STRATEGIES",
    "build_demo",
    "import_gradio",
    "launch_demo",
    "page_settings",
    "side_by_side_systems",
    "stream_text",
]
