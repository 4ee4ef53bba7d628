"""The sharing commands of `lmforge`: push (to the Hugging Face Hub), serve (an OpenAI-compatible API), demo (a page).

lmforge push --model-path DIR --repo-id USER/NAME [--private] [--dry-run] [--space USER/NAME]
lmforge serve --model-path DIR [--host 127.0.0.1] [--port 8000]
lmforge demo --model-path DIR [--host 127.0.0.1] [--port 7860] [--feedback-file FILE] [--compare-model DIR]
"""

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

# `--compile-decoding` of `lmforge generate`, `chat`, `serve` and `demo`
COMPILE_DECODING_HELP = (
    "Decode through transformers' compiled decoding step (static cache + torch.compile): the first generation of "
    "each batch size compiles, later ones decode about 2x faster on a CPU. Aksis and CharTransformer."
)


def port_number(text: str) -> int:
    """A TCP port, 0-65535 (argparse type)."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a port is a whole number, got {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is between 0 and 65535, got {port}")
    return port


def cmd_push(args: argparse.Namespace, extra: list[str]) -> int:
    from ..hub.push import default_staging_dir, push

    written = push(
        args.model_path,
        args.repo_id,
        private=args.private,
        dry_run=args.dry_run,
        space_id=args.space,
        output_dir=args.output_dir,
        license=args.license,
    )
    staging = Path(args.output_dir) if args.output_dir else default_staging_dir(args.model_path)
    for repo_type, files in written.items():
        repo_id = args.space if repo_type == "space" else args.repo_id
        if args.dry_run:
            print(f"Dry run, nothing sent: {staging / repo_type} holds what the {repo_type} {repo_id} would receive:")
        else:
            prefix = "spaces/" if repo_type == "space" else ""
            print(f"Pushed the {repo_type} https://huggingface.co/{prefix}{repo_id} (one commit):")
        for name in files:
            print(f"  {name}")
    return 0


def cmd_serve(args: argparse.Namespace, extra: list[str]) -> int:
    from ..serve import ServeSettings, create_server

    settings = ServeSettings(
        max_tokens_limit=args.max_tokens_limit,
        max_concurrency=args.max_concurrency,
        max_queue=args.max_queue,
        max_body_bytes=args.max_body_bytes,
        compile_decoding=args.compile_decoding,
    )
    server = create_server(args.model_path, host=args.host, port=args.port, settings=settings, model_id=args.model_id)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stderr)
    print(
        f"Serving {args.model_path} as {server.app.model_id} on http://{args.host}:{server.server_port} "
        "(POST /v1/completions, POST /v1/chat/completions, GET /v1/models, GET /health, GET /metrics); Ctrl-C stops",
        flush=True,
    )
    try:
        server.serve_forever()  # returns (or raises KeyboardInterrupt) after a graceful stop on Ctrl-C
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    print("stopped", file=sys.stderr)
    return 0


def cmd_demo(args: argparse.Namespace, extra: list[str]) -> int:
    from ..demo import launch_demo

    launch_demo(  # gradio prints the URL; Ctrl-C stops
        args.model_path,
        host=args.host,
        port=args.port,
        quiet=False,
        feedback_file=args.feedback_file,
        compare_model=args.compare_model,
        compile_decoding=args.compile_decoding,
    )
    return 0


def add_share_commands(sub: Any, positive_int: Callable[[str], int]) -> None:
    """Add push, serve and demo to the `lmforge` subcommands."""
    p = sub.add_parser(
        "push",
        help="Upload a saved model (with its model card, and optionally a Gradio Space) to the Hugging Face Hub.",
        description="Render the model card from the folder's config, trainer state and evaluation results, make sure "
        "the folder loads with trust_remote_code, and upload it as one commit. --dry-run writes the exact folder "
        "that would be uploaded instead (no token or network needed).",
    )
    p.add_argument(
        "--model-path", "--model_path", required=True, help="A saved model folder (the output_dir of a run)."
    )
    p.add_argument("--repo-id", required=True, help="The model repository, USER/NAME.")
    p.add_argument("--private", action="store_true", help="Create the repositories as private.")
    p.add_argument("--dry-run", action="store_true", help="Write what would be uploaded to a folder; send nothing.")
    p.add_argument("--space", default=None, metavar="USER/NAME", help="Also write and upload a Gradio Space for it.")
    p.add_argument("--output-dir", default=None, help="Where --dry-run writes (default: MODEL_PATH-hub).")
    p.add_argument("--license", default="mit", help="License in the card metadata (default: mit).")
    p.set_defaults(handler=cmd_push)

    p = sub.add_parser(
        "serve",
        help="Serve a saved model with an OpenAI-compatible API (/v1/completions, /v1/chat/completions).",
        description="POST /v1/completions and /v1/chat/completions (max_tokens, temperature, top_p, n, stop, seed, "
        "logprobs, presence/frequency penalties, stream), GET /v1/models, GET /health, GET /metrics. Concurrent "
        "requests share batched forward passes. Also answers `transformers chat MODEL http://HOST:PORT`.",
    )
    p.add_argument("--model-path", "--model_path", required=True, help="A saved model folder.")
    p.add_argument("--host", default="127.0.0.1", help="Address to listen on (default 127.0.0.1, this machine only).")
    p.add_argument("--port", type=port_number, default=8000, help="Port (default 8000; 0 picks a free one).")
    p.add_argument("--model-id", default=None, help="The model name the API reports (default: the folder's name).")
    p.add_argument("--max-tokens-limit", type=positive_int, default=256, help="Cap on max_tokens (default 256).")
    p.add_argument(
        "--max-concurrency", type=positive_int, default=16, help="Rows generated together in one batch (default 16)."
    )
    p.add_argument("--max-queue", type=int, default=16, help="Requests waiting beyond those; then 503 (default 16).")
    p.add_argument("--max-body-bytes", type=positive_int, default=65536, help="Largest request body (default 64 KiB).")
    p.add_argument("--compile-decoding", action="store_true", help=COMPILE_DECODING_HELP)
    p.set_defaults(handler=cmd_serve)

    p = sub.add_parser("demo", help="A web page (Gradio) to try a saved model: prompt, sampling, streamed output.")
    p.add_argument("--model-path", "--model_path", required=True, help="A saved model folder.")
    p.add_argument("--host", default="127.0.0.1", help="Address to listen on (default 127.0.0.1).")
    p.add_argument("--port", type=port_number, default=7860, help="Port (default 7860).")
    p.add_argument(
        "--feedback-file",
        default="feedback.jsonl",
        help="Where the side-by-side tab appends its judgements (JSON lines; default feedback.jsonl).",
    )
    p.add_argument(
        "--compare-model",
        default=None,
        metavar="DIR",
        help="A second saved model for the side-by-side tab (default: two sampling strategies of the same model).",
    )
    p.add_argument("--compile-decoding", action="store_true", help=COMPILE_DECODING_HELP)
    p.set_defaults(handler=cmd_demo)


__all__ = ["COMPILE_DECODING_HELP", "add_share_commands", "cmd_demo", "cmd_push", "cmd_serve"]
