"""`lmforge serve`: an OpenAI-compatible HTTP server for a saved model, on the standard library's HTTP server.

    lmforge serve --model-path outputs/aksis-shakespeare --port 8000
    curl http://127.0.0.1:8000/v1/chat/completions -H 'Content-Type: application/json' \\
        -d '{"messages": [{"role": "user", "content": "ROMEO:"}], "max_tokens": 60}'

Endpoints: `POST /v1/chat/completions` (`messages`, `max_tokens` / `max_completion_tokens`, `temperature`, `top_p`,
`stream` with OpenAI's server-sent event chunks), `GET /v1/models`, `GET /health`, and `POST /load_model`, which
`transformers chat MODEL http://HOST:PORT` calls before chatting (the model is loaded at start-up, so it only answers
"ready"). Answers come from the inference layer (`lmforge.inference`), as in `lmforge chat`: a causal model (Aksis,
CharTransformer) reads the conversation through its tokenizer's chat template (a plain `role: content` template when
it has none); a sequence-to-sequence model (AE-LLM, LatentReasoner) reads the last user message.

Why not `transformers serve`: in transformers 5.23 it looks the model class up by name in the `transformers`
namespace (`getattr(transformers, config.architectures[0])`), so a model whose code ships with it
(`trust_remote_code`) fails with "module transformers has no attribute AksisForCausalLM". Why the standard library:
generation is a blocking call that runs in a thread either way, and `ThreadingHTTPServer` gives a thread per request
with no extra dependency, so the server works wherever lmforge is installed.

Limits, so that a burst of requests cannot take the machine down: request bodies above `max_body_bytes` get 413,
`max_tokens` is clamped to `max_tokens_limit` (and to the model's context), at most `max_concurrency` generations run
at once with up to `max_queue` more waiting (beyond that: 503 with Retry-After), malformed JSON gets 400 and wrong
fields 422, each with an OpenAI-style `{"error": {...}}` body. A streaming client that disconnects stops its
generation.
"""

import json
import logging
import threading
import time
import uuid
from collections.abc import Generator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from .errors import LmforgeError
from .inference import CancelledCriteria, Completion, GenerationSettings, TextGenerator

logger = logging.getLogger("lmforge.serve")

ROLES = {"system", "user", "assistant"}
# OpenAI fields a client may send that this server cannot honour: refused rather than silently ignored.
UNSUPPORTED_FIELDS = {"n": 1, "stop": None, "tools": None, "tool_choice": None, "logprobs": False, "audio": None}
# Generation settings that `transformers chat` sends in its `generation_config` field (a JSON string).
GENERATION_CONFIG_KEYS = {"max_new_tokens", "do_sample", "temperature", "top_p", "top_k", "repetition_penalty"}


@dataclass
class ServeSettings:
    """The server's limits (see the module docstring)."""

    max_tokens_limit: int = 256
    default_max_tokens: int = 128
    max_body_bytes: int = 64 * 1024
    max_concurrency: int = 2
    max_queue: int = 16
    queue_timeout: float = 300.0
    socket_timeout: float = 30.0


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


@dataclass
class ChatRequest:
    """A validated chat completion request."""

    messages: list[dict[str, str]]
    max_tokens: int
    stream: bool = False
    include_usage: bool = False
    sampling: dict[str, Any] = field(default_factory=dict)


def _number(body: dict[str, Any], key: str, low: float, high: float, low_open: bool = False) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RequestError(422, f"'{key}' must be a number, got {type(value).__name__}", param=key)
    if value < low or value > high or (low_open and value == low):
        bounds = f"{'(' if low_open else '['}{low}, {high}]"
        raise RequestError(422, f"'{key}' must be in {bounds}, got {value}", param=key)
    return float(value)


def _content(message: dict[str, Any], index: int) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI content parts: only text parts are understood
        texts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise RequestError(422, f"messages[{index}].content: only text parts are supported", param="messages")
            texts.append(part["text"])
        return "".join(texts)
    raise RequestError(422, f"messages[{index}].content must be a string", param="messages")


def parse_chat_request(body: Any, settings: ServeSettings) -> ChatRequest:
    """Validate a decoded JSON body; RequestError (422) names the first wrong field."""
    if not isinstance(body, dict):
        raise RequestError(400, "the request body must be a JSON object")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError(422, "'messages' must be a non-empty list of {role, content} objects", param="messages")
    parsed = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise RequestError(
                422, f"messages[{index}] must be an object with a role in {sorted(ROLES)}", param="messages"
            )
        parsed.append({"role": str(message["role"]), "content": _content(message, index)})
    for key, allowed in UNSUPPORTED_FIELDS.items():
        if key in body and body[key] != allowed and body[key] is not None:
            raise RequestError(422, f"'{key}' is not supported by this server", param=key)
    if "model" in body and not isinstance(body["model"], str):
        raise RequestError(422, "'model' must be a string", param="model")

    sampling: dict[str, Any] = {}
    generation_config = body.get("generation_config")
    if generation_config is not None:  # sent by `transformers chat`
        try:
            extra = json.loads(generation_config) if isinstance(generation_config, str) else generation_config
        except json.JSONDecodeError:
            raise RequestError(422, "'generation_config' must be a JSON object", param="generation_config") from None
        if not isinstance(extra, dict):
            raise RequestError(422, "'generation_config' must be a JSON object", param="generation_config")
        for key, value in extra.items():
            if key not in GENERATION_CONFIG_KEYS or value is None:
                continue
            valid = isinstance(value, bool) if key == "do_sample" else isinstance(value, int | float)
            if not valid or (key != "do_sample" and isinstance(value, bool)):
                raise RequestError(422, f"generation_config.{key} has the wrong type", param="generation_config")
            sampling[key] = value
    requested = sampling.pop("max_new_tokens", None)

    for key in ("max_tokens", "max_completion_tokens"):
        value = body.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise RequestError(422, f"'{key}' must be a positive integer, got {value!r}", param=key)
        requested = value
    if (
        isinstance(requested, bool)
        or not isinstance(requested, int | None)
        or (requested is not None and requested < 1)
    ):
        raise RequestError(422, f"max new tokens must be a positive integer, got {requested!r}", param="max_tokens")
    max_tokens = min(requested or settings.default_max_tokens, settings.max_tokens_limit)

    temperature = _number(body, "temperature", 0.0, 2.0)
    top_p = _number(body, "top_p", 0.0, 1.0, low_open=True)
    if temperature is not None:
        sampling["temperature"] = temperature
    if top_p is not None:
        sampling["top_p"] = top_p
    if sampling.get("temperature") == 0.0:  # OpenAI's temperature 0: greedy decoding
        sampling = {"do_sample": False}
    else:
        sampling.setdefault("do_sample", True)

    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise RequestError(422, "'stream' must be true or false", param="stream")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise RequestError(422, "'stream_options' must be an object", param="stream_options")
    return ChatRequest(
        messages=parsed,
        max_tokens=max_tokens,
        stream=stream,
        include_usage=bool(options.get("include_usage")),
        sampling=sampling,
    )


class ChatModel:
    """A loaded model answering chat messages through the inference layer (`lmforge.inference.TextGenerator.chat`),
    as `lmforge chat` does."""

    def __init__(self, model_path: str | Path, model_id: str | None = None) -> None:
        self.generator = TextGenerator.from_pretrained(model_path)
        self.model_id = model_id or Path(model_path).resolve().name
        self.created = int(time.time())

    @property
    def model(self) -> Any:
        return self.generator.model

    def check(self, request: ChatRequest) -> None:
        """Refuse, before anything is sent, a request this model cannot answer."""
        try:
            self.generator.check_chat(request.messages)
        except LmforgeError as err:
            raise RequestError(422, str(err), param="messages") from None

    @staticmethod
    def settings(request: ChatRequest) -> GenerationSettings:
        return GenerationSettings(max_new_tokens=request.max_tokens, **request.sampling)

    def complete(self, request: ChatRequest) -> Completion:
        self.check(request)
        return self.generator.chat(request.messages, self.settings(request))

    def stream(self, request: ChatRequest, cancel: threading.Event) -> Generator[str | Completion, None, None]:
        """Yield the text as it comes, then the finished `Completion`; `cancel` stops the generation."""
        self.check(request)
        pieces = self.generator.stream(settings=self.settings(request), messages=request.messages, cancel=cancel)
        yield from pieces
        yield pieces.completion


class ServeApp:
    """The model, the limits and the two semaphores shared by the request threads."""

    def __init__(self, chat_model: ChatModel, settings: ServeSettings) -> None:
        self.chat_model = chat_model
        self.settings = settings
        self.admitted = threading.BoundedSemaphore(settings.max_concurrency + settings.max_queue)
        self.running = threading.BoundedSemaphore(settings.max_concurrency)

    def models(self) -> dict[str, Any]:
        model = {"id": self.chat_model.model_id, "object": "model", "created": self.chat_model.created}
        return {"object": "list", "data": [{**model, "owned_by": "lmforge"}]}

    def admit(self) -> None:
        if not self.admitted.acquire(blocking=False):
            raise RequestError(503, "the server is busy (queue full); retry shortly", error_type="server_busy")
        if not self.running.acquire(timeout=self.settings.queue_timeout):
            self.admitted.release()
            raise RequestError(503, "the server is busy (waited too long for a slot); retry", error_type="server_busy")

    def release(self) -> None:
        self.running.release()
        self.admitted.release()


class Handler(BaseHTTPRequestHandler):
    """One request, in its own thread. HTTP/1.0: the connection closes after each response (a stream ends there)."""

    server: "LmforgeHTTPServer"
    server_version = "lmforge"

    def setup(self) -> None:
        self.timeout = self.server.app.settings.socket_timeout
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:
        logger.info("%s %s", self.address_string(), format % args)

    _headers_sent = False

    def _send_json(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        self._headers_sent = True
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _send_error(self, error: RequestError) -> None:
        headers = {"Retry-After": "1"} if error.status == 503 else None
        if error.status == 413:
            self.close_connection = True
        self._send_json(error.status, error.body(), headers)

    def do_GET(self) -> None:
        app = self.server.app
        if self.path in ("/health", "/v1/health"):
            self._send_json(200, {"status": "ok"})
        elif self.path in ("/v1/models", "/models"):
            self._send_json(200, app.models())
        else:
            self._send_error(RequestError(404, f"no such endpoint: GET {self.path}", error_type="not_found"))

    def _read_json(self) -> Any:
        length = self.headers.get("Content-Length")
        if length is None:
            raise RequestError(411, "a Content-Length header is required")
        try:
            size = int(length)
        except ValueError:
            raise RequestError(400, "Content-Length is not a number") from None
        if size < 0:
            raise RequestError(400, "Content-Length is negative")
        limit = self.server.app.settings.max_body_bytes
        if size > limit:
            self.rfile.read(min(size, 4 * limit))  # let a small overflow be read, so the client sees the answer
            raise RequestError(413, f"the request body is over {limit} bytes")
        raw = self.rfile.read(size)
        try:
            return json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
            raise RequestError(400, f"the request body is not valid JSON: {err}") from None

    def do_POST(self) -> None:
        try:
            if self.path in ("/v1/chat/completions", "/chat/completions"):
                self._chat_completions()
            elif self.path == "/load_model":
                self._load_model()
            else:
                self._send_error(RequestError(404, f"no such endpoint: POST {self.path}", error_type="not_found"))
        except RequestError as err:
            self._send_error(err)
        except (BrokenPipeError, ConnectionResetError):
            logger.info("client %s went away", self.address_string())
        except Exception as err:  # a bug or a model failure: one line to the client, the traceback to the log
            logger.exception("request failed")
            if not self._headers_sent:
                self._send_error(RequestError(500, f"generation failed: {type(err).__name__}: {err}", "server_error"))

    def _load_model(self) -> None:
        """What `transformers chat` asks before chatting: the model is already loaded, so it is ready."""
        self._read_json()
        event = {"status": "ready", "model": self.server.app.chat_model.model_id, "cached": True}
        self._start_stream()
        self._write_event(event)

    def _start_stream(self) -> None:
        self._headers_sent = True
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True

    def _write_event(self, payload: dict[str, Any] | str) -> None:
        data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
        self.wfile.write(f"data: {data}\n\n".encode())
        self.wfile.flush()

    def _chat_completions(self) -> None:
        app = self.server.app
        request = parse_chat_request(self._read_json(), app.settings)
        app.chat_model.check(request)
        app.admit()
        try:
            if request.stream:
                self._stream(request)
            else:
                completion = app.chat_model.complete(request)
                self._send_json(200, self._completion_body(completion))
        finally:
            app.release()

    def _base(self, object_name: str, completion_id: str) -> dict[str, Any]:
        return {
            "id": completion_id,
            "object": object_name,
            "created": int(time.time()),
            "model": self.server.app.chat_model.model_id,
        }

    @staticmethod
    def _usage(completion: Completion) -> dict[str, int]:
        return {
            "prompt_tokens": completion.prompt_tokens,
            "completion_tokens": completion.completion_tokens,
            "total_tokens": completion.prompt_tokens + completion.completion_tokens,
        }

    def _completion_body(self, completion: Completion) -> dict[str, Any]:
        body = self._base("chat.completion", f"chatcmpl-{uuid.uuid4().hex}")
        message = {"role": "assistant", "content": completion.text}
        body["choices"] = [{"index": 0, "message": message, "finish_reason": completion.finish_reason}]
        body["usage"] = self._usage(completion)
        return body

    def _stream(self, request: ChatRequest) -> None:
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"

        def chunk(delta: dict[str, str], finish_reason: str | None = None) -> dict[str, Any]:
            body = self._base("chat.completion.chunk", completion_id)
            body["choices"] = [{"index": 0, "delta": delta, "finish_reason": finish_reason}]
            return body

        cancel = threading.Event()
        pieces = self.server.app.chat_model.stream(request, cancel)
        self._start_stream()
        try:
            self._write_event(chunk({"role": "assistant", "content": ""}))
            for piece in pieces:
                if isinstance(piece, Completion):
                    self._write_event(chunk({}, piece.finish_reason))
                    if request.include_usage:
                        usage = {**self._base("chat.completion.chunk", completion_id), "choices": []}
                        self._write_event({**usage, "usage": self._usage(piece)})
                else:
                    self._write_event(chunk({"content": piece}))
            self._write_event("[DONE]")
        except (BrokenPipeError, ConnectionResetError):
            cancel.set()  # the client went away: stop generating for it
            raise
        except Exception as err:  # after the headers: the error goes to the client as a last event
            cancel.set()
            logger.exception("streaming failed")
            self._write_event(
                RequestError(500, f"generation failed: {type(err).__name__}: {err}", "server_error").body()
            )
        finally:
            pieces.close()


class LmforgeHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], app: ServeApp) -> None:
        self.app = app
        super().__init__(address, Handler)


def create_server(
    model_path: str | Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    settings: ServeSettings | None = None,
    model_id: str | None = None,
) -> LmforgeHTTPServer:
    """Load the model and bind the server (port 0 picks a free port: read it from `server.server_address`)."""
    settings = settings or ServeSettings()
    for name in ("max_tokens_limit", "default_max_tokens", "max_body_bytes", "max_concurrency"):
        if getattr(settings, name) < 1:
            raise LmforgeError(f"{name.replace('_', '-')} must be at least 1, got {getattr(settings, name)}")
    if settings.max_queue < 0:
        raise LmforgeError(f"max-queue must be 0 or more, got {settings.max_queue}")
    app = ServeApp(ChatModel(model_path, model_id=model_id), settings)
    try:
        return LmforgeHTTPServer((host, port), app)
    except OSError as err:
        raise LmforgeError(f"cannot listen on {host}:{port}: {err.strerror or err}") from None


__all__ = [
    "CancelledCriteria",
    "ChatModel",
    "ChatRequest",
    "Completion",
    "RequestError",
    "ServeApp",
    "ServeSettings",
    "create_server",
    "parse_chat_request",
]
