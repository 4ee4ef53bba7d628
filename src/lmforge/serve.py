"""`lmforge serve`: an OpenAI-compatible HTTP server for a saved model, on FastAPI and uvicorn.

    lmforge serve --model-path outputs/aksis-shakespeare --port 8000
    curl http://127.0.0.1:8000/v1/completions -H 'Content-Type: application/json' \\
        -d '{"prompt": "ROMEO:", "max_tokens": 60, "stop": ["\\n\\n"]}'

Endpoints: `POST /v1/completions` (a base model continues the prompt; a sequence-to-sequence model reads it as its
source), `POST /v1/chat/completions` (a decoder reads the conversation through its chat template, a
sequence-to-sequence model the last user message), both with `n`, `stop`, `seed`, `temperature`, `top_p`,
`max_tokens`, `presence_penalty` / `frequency_penalty`, log-probabilities, and `stream` (server-sent events, with
`stream_options.include_usage`); `GET /v1/models`, `GET /health`, `GET /metrics` (the batcher's counters) and
`POST /load_model`, which `transformers chat MODEL http://HOST:PORT` calls before chatting.

Why FastAPI + uvicorn: it is what `transformers serve` itself runs on, so parsing, validation against the request
models (`lmforge.serve_api`), server-sent events and error mapping come from a maintained stack. Why not
`transformers serve` itself: it looks the model class up by name in the `transformers` namespace
(`getattr(transformers, config.architectures[0])`), so a folder whose code ships with it (`trust_remote_code`) does
not load.

Every answer comes from the one generation layer (`lmforge.inference.TextGenerator`): requests are encoded there and
generated in shared batches by `lmforge.serve_batch.Batcher`.

Limits, so that a burst of requests cannot take the machine down: bodies above `max_body_bytes` get 413, `max_tokens`
is clamped to `max_tokens_limit` and to the model's context, at most `max_concurrency` rows generate in one batch and
`max_queue` more requests wait (beyond that: 503 with Retry-After), malformed JSON gets 400 and wrong fields 422, each
with an OpenAI-style `{"error": {...}}` body. A streaming client that disconnects stops its generation.
"""

import asyncio
import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.sse import EventSourceResponse, format_sse_event
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import LmforgeError
from .inference import BatchRequest, Completion, Encoded, GenerationSettings, TextGenerator, TokenLogprob
from .serve_api import ChatRequest, CompletionRequest, SamplingRequest, generation_settings
from .serve_batch import Batcher, Busy, Job

logger = logging.getLogger("lmforge.serve")


@dataclass
class ServeSettings:
    """The server's limits (see the module docstring); `batch_wait` is how long an idle batcher waits for more
    requests to share the first one's batch."""

    max_tokens_limit: int = 256
    default_max_tokens: int = 128
    max_body_bytes: int = 64 * 1024
    max_concurrency: int = 16
    max_queue: int = 16
    batch_wait: float = 0.005
    compile_decoding: bool = False


class RequestError(Exception):
    """A request the server refuses, with its HTTP status and an OpenAI-style error type."""

    def __init__(self, status: int, message: str, error_type: str = "invalid_request_error", param: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type
        self.param = param

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.error_type, "param": self.param, "code": self.status}}

    def response(self) -> JSONResponse:
        headers = {"Retry-After": "1"} if self.status == 503 else None
        return JSONResponse(self.body(), status_code=self.status, headers=headers)


class BodyLimit:
    """ASGI middleware: a body over `limit` bytes gets 413, by its Content-Length or as it arrives."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = f"the request body is over {self.limit} bytes"
        length = dict(scope["headers"]).get(b"content-length", b"0")
        if length.isdigit() and int(length) > self.limit:
            await RequestError(413, too_large).response()(scope, receive, send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:  # a chunked body: the route's body reading turns this into the 413
                raise HTTPException(413, too_large)
            return message

        await self.app(scope, limited, send)


class ServeApp:
    """The model, its name, the limits and the batcher: what the endpoints share."""

    def __init__(self, generator: TextGenerator, settings: ServeSettings, model_id: str) -> None:
        self.generator = generator
        self.settings = settings
        self.model_id = model_id
        self.created = int(time.time())
        self.batcher = Batcher(generator, settings.max_concurrency, settings.max_queue, settings.batch_wait)

    def models(self) -> dict[str, Any]:
        model = {"id": self.model_id, "object": "model", "created": self.created, "owned_by": "lmforge"}
        return {"object": "list", "data": [model]}

    def settings_for(self, request: SamplingRequest) -> GenerationSettings:
        limit = self.generator.max_new_tokens_limit
        try:
            return generation_settings(
                request, self.settings.default_max_tokens, self.settings.max_tokens_limit, limit
            )
        except (ValueError, LmforgeError) as err:
            raise RequestError(422, str(err), param="max_tokens") from None

    def encode(self, make: Callable[[], Encoded], param: str) -> Encoded:
        """An encoding from the generation layer; its one-line errors become 422."""
        try:
            return make()
        except LmforgeError as err:
            raise RequestError(422, str(err), param=param) from None

    def submit(self, job: Job) -> None:
        try:
            self.batcher.submit(job)
        except Busy as err:
            raise RequestError(503, str(err), error_type="server_busy") from None


class Answer:
    """One request on its way through the batcher: its job, and the text of its rows as they come (for a stream)."""

    def __init__(self, app: ServeApp, encoded: list[Encoded], settings: GenerationSettings, n: int, **row: Any):
        self.loop = asyncio.get_running_loop()
        self.events: asyncio.Queue[tuple[int, str] | None] = asyncio.Queue()
        self.prompt_tokens = sum(item.prompt_tokens for item in encoded)
        self.job = Job(rows=[], settings=settings, notify=self._finished)
        for item in encoded:
            for _ in range(n):
                index = len(self.job.rows)
                self.job.rows.append(BatchRequest(item, cancel=self.job.cancel, on_text=self._sender(index), **row))
        app.submit(self.job)

    def _finished(self) -> None:
        if not self.loop.is_closed():  # a server stopped with requests still waiting: nobody is listening
            self.loop.call_soon_threadsafe(self.events.put_nowait, None)

    def _sender(self, index: int) -> Callable[[str], None]:
        def send(text: str) -> None:
            if not self.loop.is_closed():
                self.loop.call_soon_threadsafe(self.events.put_nowait, (index, text))

        return send

    async def completions(self) -> list[Completion]:
        try:
            return await asyncio.wrap_future(self.job.future)
        finally:
            self.job.cancel.set()  # a client that went away: its rows stop at the next token

    async def pieces(self) -> AsyncIterator[tuple[int, str]]:
        try:
            while (event := await self.events.get()) is not None:
                yield event
        finally:
            self.job.cancel.set()

    def usage(self, completions: list[Completion]) -> dict[str, int]:
        written = sum(completion.completion_tokens for completion in completions)
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": written,
            "total_tokens": self.prompt_tokens + written,
        }


def header(object_name: str, prefix: str, model_id: str) -> dict[str, Any]:
    return {
        "id": f"{prefix}-{uuid.uuid4().hex}",
        "object": object_name,
        "created": int(time.time()),
        "model": model_id,
    }


def completion_logprobs(logprobs: list[TokenLogprob] | None) -> dict[str, Any] | None:
    """The legacy completions format: parallel lists, and the offset of each token in the text."""
    if logprobs is None:
        return None
    offsets, offset = [], 0
    for item in logprobs:
        offsets.append(offset)
        offset += len(item.token)
    return {
        "tokens": [item.token for item in logprobs],
        "token_logprobs": [item.logprob for item in logprobs],
        "top_logprobs": [dict(item.top) for item in logprobs],
        "text_offset": offsets,
    }


def chat_logprobs(logprobs: list[TokenLogprob] | None) -> dict[str, Any] | None:
    if logprobs is None:
        return None

    def entry(token: str, logprob: float) -> dict[str, Any]:
        return {"token": token, "logprob": logprob, "bytes": list(token.encode("utf-8"))}

    return {
        "content": [
            {**entry(item.token, item.logprob), "top_logprobs": [entry(token, value) for token, value in item.top]}
            for item in logprobs
        ]
    }


def sse(payload: dict[str, Any] | str) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
    return format_sse_event(data_str=data)


def stream_response(
    answer: Answer, base: dict[str, Any], choice: Callable[[int, str | None, str | None], dict[str, Any]], usage: bool
) -> EventSourceResponse:
    """Server-sent events: a chunk per piece of text of each choice, a last chunk per choice with its finish reason,
    the usage (when asked), then `[DONE]`. An error after the start goes to the client as a last event."""

    async def events() -> AsyncIterator[bytes]:
        for index in range(len(answer.job.rows)):
            first = choice(index, "", None)
            if "delta" in first:  # chat: the role comes first
                yield sse({**base, "choices": [first]})
        async for index, text in answer.pieces():
            yield sse({**base, "choices": [choice(index, text, None)]})
        try:
            completions = await answer.completions()
        except Exception as err:
            logger.exception("streaming failed")
            yield sse(RequestError(500, f"generation failed: {type(err).__name__}: {err}", "server_error").body())
            return
        for index, completion in enumerate(completions):
            yield sse({**base, "choices": [choice(index, None, completion.finish_reason)]})
        if usage:
            yield sse({**base, "choices": [], "usage": answer.usage(completions)})
        yield sse("[DONE]")

    return EventSourceResponse(events(), headers={"Cache-Control": "no-cache"})


def refuse_streamed_logprobs(request: SamplingRequest, asked: bool) -> None:
    if request.stream and asked:
        raise RequestError(422, "log-probabilities are not streamed: ask for them without 'stream'", param="logprobs")


async def completions_endpoint(app: ServeApp, request: CompletionRequest) -> Any:
    refuse_streamed_logprobs(request, request.logprobs is not None)
    settings = app.settings_for(request)
    encoded = [
        app.encode(lambda prompt=prompt: app.generator.encode_completion(prompt, settings.max_new_tokens), "prompt")
        for prompt in request.prompts()
    ]
    answer = Answer(app, encoded, settings, request.n, stop=request.stop_strings(), logprobs=request.logprobs)
    base = header("text_completion", "cmpl", app.model_id)
    if request.stream:

        def choice(index: int, text: str | None, finish: str | None) -> dict[str, Any]:
            return {"index": index, "text": text or "", "logprobs": None, "finish_reason": finish}

        return stream_response(answer, base, choice, request.include_usage)
    completions = await answer.completions()
    choices = [
        {
            "index": index,
            "text": completion.text,
            "logprobs": completion_logprobs(completion.logprobs),
            "finish_reason": completion.finish_reason,
        }
        for index, completion in enumerate(completions)
    ]
    return {**base, "choices": choices, "usage": answer.usage(completions)}


async def chat_endpoint(app: ServeApp, request: ChatRequest) -> Any:
    refuse_streamed_logprobs(request, request.logprobs)
    settings = app.settings_for(request)
    conversation = request.conversation()
    encoded = app.encode(lambda: app.generator.encode_chat(conversation, settings.max_new_tokens), "messages")
    top = (request.top_logprobs or 0) if request.logprobs else None
    answer = Answer(app, [encoded], settings, request.n, stop=request.stop_strings(), logprobs=top)
    base = header("chat.completion.chunk" if request.stream else "chat.completion", "chatcmpl", app.model_id)
    if request.stream:

        def choice(index: int, text: str | None, finish: str | None) -> dict[str, Any]:
            delta = {"role": "assistant", "content": ""} if text == "" else ({"content": text} if text else {})
            return {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}

        return stream_response(answer, base, choice, request.include_usage)
    completions = await answer.completions()
    choices = [
        {
            "index": index,
            "message": {"role": "assistant", "content": completion.text},
            "logprobs": chat_logprobs(completion.logprobs),
            "finish_reason": completion.finish_reason,
        }
        for index, completion in enumerate(completions)
    ]
    return {**base, "choices": choices, "usage": answer.usage(completions)}


def is_union_tag(part: str) -> bool:
    """A part of a pydantic error location that names a branch of a union (`str`, `list[str]`), not a field."""
    return part in ("str", "int", "float", "bool", "none") or "[" in part


def validation_error(err: RequestValidationError) -> RequestError:
    """Pydantic's complaint as one line: 400 when the body is not a JSON object, else 422 naming the field (for a
    union, such as `stop`, the complaint of its last branch: the list)."""
    errors: list[dict[str, Any]] = list(err.errors()) or [{"loc": ("body",), "msg": "invalid request", "type": ""}]
    first = errors[0]
    if first["type"] == "json_invalid":
        context = first.get("ctx") or {}
        return RequestError(400, f"the request body is not valid JSON: {context.get('error', '')}")
    field = first["loc"][1:2]
    chosen = [error for error in errors if error["loc"][1:2] == field][-1]
    location = [str(part) for part in chosen["loc"][1:] if not is_union_tag(str(part))]
    if not location:
        return RequestError(400, "the request body must be a JSON object")
    name = location[0] + "".join(f"[{part}]" if part.isdigit() else f".{part}" for part in location[1:])
    return RequestError(422, f"'{name}': {chosen['msg']}", param=location[0])


def build_app(state: ServeApp) -> FastAPI:
    """The FastAPI application: routes, error mapping and the body-size bound."""
    app = FastAPI(title="lmforge", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.lmforge = state

    @app.exception_handler(RequestError)
    async def refused(request: Request, err: RequestError) -> JSONResponse:
        return err.response()

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        return validation_error(err).response()

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
        kind = "not_found" if err.status_code == 404 else "invalid_request_error"
        message = f"no such endpoint: {request.method} {request.url.path}" if err.status_code == 404 else err.detail
        return RequestError(err.status_code, str(message), kind).response()

    @app.exception_handler(Exception)
    async def failed(request: Request, err: Exception) -> JSONResponse:
        logger.exception("request failed")
        return RequestError(500, f"generation failed: {type(err).__name__}: {err}", "server_error").response()

    @app.get("/health")
    @app.get("/v1/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models")
    @app.get("/models")
    async def models() -> dict[str, Any]:
        return state.models()

    @app.get("/metrics")
    async def metrics() -> dict[str, Any]:
        return state.batcher.stats.as_dict()

    @app.post("/v1/completions")
    @app.post("/completions")
    async def completions(request: CompletionRequest) -> Any:
        return await completions_endpoint(state, request)

    @app.post("/v1/chat/completions")
    @app.post("/chat/completions")
    async def chat(request: ChatRequest) -> Any:
        return await chat_endpoint(state, request)

    @app.post("/load_model")
    async def load_model() -> EventSourceResponse:
        """What `transformers chat` asks before chatting: the model is already loaded, so it is ready."""

        async def ready() -> AsyncIterator[bytes]:
            yield sse({"status": "ready", "model": state.model_id, "cached": True})

        return EventSourceResponse(ready())

    app.add_middleware(BodyLimit, limit=state.settings.max_body_bytes)
    return app


class LmforgeServer:
    """uvicorn serving the app on a socket bound at creation (so port 0's free port is known at once), with the
    `serve_forever` / `shutdown` / `server_close` of the standard library's servers. In the main thread, Ctrl-C
    stops it gracefully (uvicorn's signal handling) and then raises KeyboardInterrupt."""

    def __init__(self, app: ServeApp, sock: socket.socket) -> None:
        self.app = app
        self.socket = sock
        config = uvicorn.Config(build_app(app), log_config=None, access_log=False, timeout_graceful_shutdown=5)
        self.server = uvicorn.Server(config)
        self._stopped = threading.Event()

    @property
    def server_port(self) -> int:
        return int(self.socket.getsockname()[1])

    @property
    def server_address(self) -> tuple[str, int]:
        host, port = self.socket.getsockname()[:2]
        return str(host), int(port)

    def serve_forever(self) -> None:
        self._stopped.clear()
        try:
            self.server.run(sockets=[self.socket])
        finally:
            self._stopped.set()

    def shutdown(self) -> None:
        """Stop serving (from another thread) and wait until `serve_forever` has returned."""
        self.server.should_exit = True
        self._stopped.wait(timeout=30)

    def server_close(self) -> None:
        self.app.batcher.close()
        self.socket.close()


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise LmforgeError(f"cannot listen on {host}:{port}: {err.strerror or err}") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def create_server(
    model_path: str | Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    settings: ServeSettings | None = None,
    model_id: str | None = None,
) -> LmforgeServer:
    """Load the model and bind the server (port 0 picks a free port: read it from `server.server_port`)."""
    settings = settings or ServeSettings()
    for name in ("max_tokens_limit", "default_max_tokens", "max_body_bytes", "max_concurrency"):
        if getattr(settings, name) < 1:
            raise LmforgeError(f"{name.replace('_', '-')} must be at least 1, got {getattr(settings, name)}")
    if settings.max_queue < 0:
        raise LmforgeError(f"max-queue must be 0 or more, got {settings.max_queue}")
    sock = bind(host, port)
    try:
        generator = TextGenerator.from_pretrained(model_path, compile_decoding=settings.compile_decoding)
    except BaseException:
        sock.close()
        raise
    return LmforgeServer(ServeApp(generator, settings, model_id or Path(model_path).resolve().name), sock)


__all__ = [
    "BodyLimit",
    "LmforgeServer",
    "RequestError",
    "ServeApp",
    "ServeSettings",
    "build_app",
    "create_server",
]
