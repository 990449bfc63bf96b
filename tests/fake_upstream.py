"""A scriptable fake of vLLM's OpenAI-compatible server, for the gateway's unit tests.

It serves, on a real loopback port, the subset of vLLM's HTTP API the gateway uses:

- ``GET /health`` (and Ray Serve's ``GET /-/healthz``): 200, or 503 while ``fake.healthy``
  is False;
- ``GET /v1/models``: the base model plus every loaded LoRA adapter;
- ``POST /v1/load_lora_adapter`` and ``POST /v1/unload_lora_adapter``;
- ``POST /v1/chat/completions`` and ``POST /v1/completions``, streamed (SSE, ending with
  ``data: [DONE]``) or not.

Errors use vLLM's shape: ``{"error": {"message", "type", "param": null, "code"}}``.

Completion answers are scripted in the style of ``llm``'s ``MockModel.enqueue()``: each
``enqueue*`` call scripts the *next* completion request (first in, first out; a request for
an unknown model is answered 404 without consuming a script). With nothing enqueued the
answer is ``"echo from {model}: {last user message}"`` in word-sized chunks, so a test sees
which model or adapter answered and which prompt reached the engine::

    from tests.fake_upstream import FakeUpstream

    with FakeUpstream(base_model="base-model") as fake:
        fake.enqueue(["Hel", "lo"], delay_s=0.01)
        fake.enqueue_error(400, "This model's maximum context length is 8 tokens.")
        fake.enqueue_disconnect(after_chunks=2)
        fake.fail_next_load(500, "CUDA out of memory")
        gateway = make_gateway(upstream_url=fake.url)
        ...
        assert fake.completion_requests[-1].body["messages"][0]["role"] == "system"

or with the pytest fixture, imported into a test module or a conftest::

    from tests.fake_upstream import fake_upstream  # noqa: F401  (in a conftest)
    from tests.fake_upstream import fake_upstream_fixture  # noqa: F401  (in a test module)

    def test_something(fake_upstream: FakeUpstream) -> None: ...

``kill()`` stops serving abruptly (open connections are aborted, new ones refused: the
engine died); ``restart()`` serves again on the same port with no adapter loaded.

Usage numbers are coarse: ``prompt_tokens`` counts whitespace-separated words of the prompt,
``completion_tokens`` counts the answer's chunks.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

COMPLETION_PATHS = ("/v1/chat/completions", "/v1/completions")


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the fake received it."""

    method: str
    path: str
    body: Any  # the parsed JSON body; None when there was none or it was not JSON
    headers: dict[str, str]  # lower-cased names


@dataclass(frozen=True)
class _Reply:
    chunks: list[str]
    delay_s: float = 0.0
    finish_reason: str = "stop"


@dataclass(frozen=True)
class _Error:
    status: int
    message: str
    error_type: str


@dataclass(frozen=True)
class _Disconnect:
    after_chunks: int


@dataclass(frozen=True)
class _Raw:
    choices: list[dict[str, Any]]


_Script = _Reply | _Error | _Disconnect | _Raw


@dataclass
class _StreamState:
    completed: bool = False
    dropped: bool = False  # ended by enqueue_disconnect, not by the client


class _DroppedByScript(Exception):
    """Raised to drop a connection when its transport cannot be found (see `_drop`)."""


def error_body(message: str, error_type: str, code: int) -> dict[str, Any]:
    """vLLM's error JSON."""
    return {"error": {"message": message, "type": error_type, "param": None, "code": code}}


def _error(status: int, message: str, error_type: str) -> JSONResponse:
    return JSONResponse(error_body(message, error_type, status), status_code=status)


def _text_of(content: Any) -> str:
    """The text of an OpenAI message content: a string or a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            str(part.get("text", "")) for part in content if isinstance(part, dict)
        ).strip()
    return ""


def _prompt_text(path: str, body: dict[str, Any]) -> tuple[str, str]:
    """(the last user message or the prompt, all prompt text for token counting)."""
    if path == "/v1/chat/completions":
        messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
        user = [_text_of(m.get("content")) for m in messages if m.get("role") == "user"]
        everything = " ".join(_text_of(m.get("content")) for m in messages)
        return (user[-1] if user else ""), everything
    prompt = body.get("prompt", "")
    if isinstance(prompt, list):
        prompt = " ".join(str(p) for p in prompt)
    return str(prompt), str(prompt)


def word_chunks(text: str) -> list[str]:
    """Split `text` into word-sized pieces whose concatenation is `text`."""
    return re.findall(r"\s*\S+\s*", text) or [text]


class FakeUpstream:
    """A fake vLLM server: script it, point the gateway at `.url`, inspect what it received."""

    def __init__(self, base_model: str = "base-model", *, host: str = "127.0.0.1") -> None:
        self.base_model = base_model
        self.host = host
        self.healthy = True
        self.load_delay_s = 0.0
        self.requests: list[RecordedRequest] = []
        self.loaded: dict[str, str] = {}
        self.load_calls: list[str] = []  # lora_name of every load call, failed ones included
        self.unload_calls: list[str] = []  # lora_name of every unload call, failed ones included
        self.active_streams = 0
        self.cancelled_streams = 0
        self._scripts: deque[_Script] = deque()
        self._load_failures: deque[_Error] = deque()
        self._lock = threading.Lock()
        self._port: int | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False
        self.app = Starlette(
            routes=[
                Route("/health", self._health, methods=["GET"]),
                # Ray Serve's proxy answers its health here (upstream_kind `ray-serve`).
                Route("/-/healthz", self._health, methods=["GET"]),
                Route("/v1/models", self._models, methods=["GET"]),
                Route("/v1/load_lora_adapter", self._load, methods=["POST"]),
                Route("/v1/unload_lora_adapter", self._unload, methods=["POST"]),
                Route("/v1/chat/completions", self._complete, methods=["POST"]),
                Route("/v1/completions", self._complete, methods=["POST"]),
            ]
        )

    # ----------------------------------------------------------------- scripting

    def enqueue(
        self, chunks: list[str], *, delay_s: float = 0.0, finish_reason: str = "stop"
    ) -> None:
        """The next completion answers with these pieces: one SSE event each, or joined."""
        with self._lock:
            self._scripts.append(_Reply(list(chunks), delay_s, finish_reason))

    def enqueue_choices(self, choices: list[dict[str, Any]]) -> None:
        """The next answer's choices exactly as given (tool calls, reasoning, logprobs...).

        A whole answer has them as its `choices`; a streamed one sends one event per
        choice, in order.
        """
        with self._lock:
            self._scripts.append(_Raw(choices))

    def enqueue_error(
        self, status: int, message: str, *, error_type: str = "BadRequestError"
    ) -> None:
        """The next completion request fails with `status` and vLLM's error JSON."""
        with self._lock:
            self._scripts.append(_Error(status, message, error_type))

    def enqueue_disconnect(self, after_chunks: int) -> None:
        """The next completion sends `after_chunks` SSE events, then closes the connection.

        No [DONE] and no end of the chunked body are sent. A non-streamed request that meets
        this script gets its connection closed without any response.
        """
        with self._lock:
            self._scripts.append(_Disconnect(after_chunks))

    def fail_next_load(
        self,
        status: int = 500,
        message: str = "Failed to load LoRA adapter.",
        *,
        error_type: str = "InternalServerError",
    ) -> None:
        """The next `/v1/load_lora_adapter` call fails (each call scripts one failure)."""
        with self._lock:
            self._load_failures.append(_Error(status, message, error_type))

    # ----------------------------------------------------------------- inspection

    @property
    def completion_requests(self) -> list[RecordedRequest]:
        """The recorded requests to /v1/chat/completions and /v1/completions, in order."""
        with self._lock:
            return [r for r in self.requests if r.path in COMPLETION_PATHS]

    def wait_for(self, predicate: Callable[[], bool], timeout_s: float = 2.0) -> bool:
        """Poll `predicate` until it holds or `timeout_s` passes; return its last value.

        The fake updates its counters on its own thread, e.g. `cancelled_streams` a moment
        after the client went away.
        """
        deadline = time.monotonic() + timeout_s
        while not predicate():
            if time.monotonic() >= deadline:
                return predicate()
            time.sleep(0.01)
        return True

    # ----------------------------------------------------------------- running

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the fake upstream has not been started")
        return self._port

    @property
    def url(self) -> str:
        """`http://127.0.0.1:PORT`, without a trailing slash (and without /v1)."""
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, timeout_s: float = 10.0) -> FakeUpstream:
        """Serve in a background thread; on the previous port if there was one."""
        if self.running:
            raise RuntimeError("the fake upstream is already running")
        self._stopping = False
        config = uvicorn.Config(
            self.app,
            host=self.host,
            port=self._port or 0,
            log_level="warning",
            log_config=None,  # leave the process's logging configuration alone
            access_log=False,
            lifespan="off",
            loop="asyncio",
            timeout_graceful_shutdown=None,  # stop() aborts what is left itself
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(
            target=self._run, args=(server,), name="fake-upstream", daemon=True
        )
        self._server, self._thread = server, thread
        thread.start()
        deadline = time.monotonic() + timeout_s
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                self._server = self._thread = None
                server.should_exit = True
                raise RuntimeError(f"the fake upstream did not start on {self.host}")
            time.sleep(0.005)
        self._port = server.servers[0].sockets[0].getsockname()[1]
        return self

    def stop(self, grace_s: float = 1.0) -> None:
        """Shut down: stop accepting, let requests in flight finish for `grace_s`, then kill.

        Streams still open after `grace_s` are aborted as by `kill()`.
        """
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.should_exit = True
        thread.join(grace_s)
        self.kill()

    def kill(self, timeout_s: float = 5.0) -> None:
        """Stop abruptly, like a crashed engine.

        Open connections are aborted (a stream in flight ends without [DONE]; it is not
        counted in `cancelled_streams`), and new connections are refused.
        """
        server, thread, loop = self._server, self._thread, self._loop
        if server is None or thread is None:
            return
        self._stopping = True
        if loop is not None and thread.is_alive():
            with contextlib.suppress(RuntimeError):  # the loop closed in the meantime
                loop.call_soon_threadsafe(self._abort_all, server)
        thread.join(timeout_s)
        if thread.is_alive():
            raise RuntimeError("the fake upstream's server thread did not end")
        self._server = self._thread = self._loop = None

    def restart(self) -> FakeUpstream:
        """Kill if running, then serve again on the same port with no adapter loaded.

        Scripts still queued, recorded requests, counters and `healthy` are kept.
        """
        self.kill()
        with self._lock:
            self.loaded.clear()
        return self.start()

    def __enter__(self) -> FakeUpstream:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _run(self, server: uvicorn.Server) -> None:
        async def serve() -> None:
            self._loop = asyncio.get_running_loop()
            await server.serve()

        asyncio.run(serve())

    @staticmethod
    def _abort_all(server: uvicorn.Server) -> None:
        for listener in getattr(server, "servers", []):
            listener.close()
        for connection in list(server.server_state.connections):
            transport = getattr(connection, "transport", None)
            if transport is not None:
                transport.abort()
        server.force_exit = True
        server.should_exit = True

    # ----------------------------------------------------------------- endpoints

    async def _record(self, request: Request) -> Any:
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        recorded = RecordedRequest(
            method=request.method,
            path=request.url.path,
            body=body,
            headers={k.lower(): v for k, v in request.headers.items()},
        )
        with self._lock:
            self.requests.append(recorded)
        return body

    async def _health(self, request: Request) -> Response:
        await self._record(request)
        return Response(status_code=200 if self.healthy else 503)

    async def _models(self, request: Request) -> Response:
        await self._record(request)
        created = int(time.time())
        data = [self._model_card(self.base_model, self.base_model, None, created)]
        with self._lock:
            loras = list(self.loaded.items())
        data += [self._model_card(name, path, self.base_model, created) for name, path in loras]
        return JSONResponse({"object": "list", "data": data})

    @staticmethod
    def _model_card(model_id: str, root: str, parent: str | None, created: int) -> dict[str, Any]:
        return {
            "id": model_id,
            "object": "model",
            "created": created,
            "owned_by": "vllm",
            "root": root,
            "parent": parent,
            "max_model_len": 4096,
            "permission": [],
        }

    async def _load(self, request: Request) -> Response:
        body = await self._record(request)
        if not isinstance(body, dict) or not body.get("lora_name") or not body.get("lora_path"):
            message = "Both 'lora_name' and 'lora_path' must be provided."
            return _error(400, message, "BadRequestError")
        name, path = str(body["lora_name"]), str(body["lora_path"])
        with self._lock:
            self.load_calls.append(name)
            failure = self._load_failures.popleft() if self._load_failures else None
            already = name in self.loaded
        if already:
            message = f"The lora adapter '{name}' has already been loaded."
            return _error(400, message, "BadRequestError")
        if self.load_delay_s:
            await asyncio.sleep(self.load_delay_s)
        if failure is not None:
            return _error(failure.status, failure.message, failure.error_type)
        with self._lock:
            self.loaded[name] = path
        return PlainTextResponse(f"Success: LoRA adapter '{name}' added successfully.")

    async def _unload(self, request: Request) -> Response:
        body = await self._record(request)
        if not isinstance(body, dict) or not body.get("lora_name"):
            return _error(400, "'lora_name' must be provided.", "BadRequestError")
        name = str(body["lora_name"])
        with self._lock:
            self.unload_calls.append(name)
            found = self.loaded.pop(name, None) is not None
        if not found:
            return _error(404, f"The lora adapter '{name}' cannot be found.", "NotFoundError")
        return PlainTextResponse(f"Success: LoRA adapter '{name}' removed successfully.")

    async def _complete(self, request: Request) -> Response:
        body = await self._record(request)
        if not isinstance(body, dict):
            return _error(400, "The request body must be a JSON object.", "BadRequestError")
        model = str(body.get("model") or self.base_model)
        with self._lock:
            known = model == self.base_model or model in self.loaded
        if not known:
            return _error(404, f"The model `{model}` does not exist.", "NotFoundError")
        path = request.url.path
        last_user, prompt = _prompt_text(path, body)
        with self._lock:
            script = self._scripts.popleft() if self._scripts else None
        if script is None:
            script = _Reply(word_chunks(f"echo from {model}: {last_user}"))
        if isinstance(script, _Error):
            return _error(script.status, script.message, script.error_type)
        stream = bool(body.get("stream"))
        if isinstance(script, _Disconnect) and not stream:
            await self._drop(request)
            return Response(status_code=500)  # never reaches the client
        completion = _Completion(
            chat=path == "/v1/chat/completions",
            model=model,
            prompt_tokens=len(prompt.split()),
        )
        if isinstance(script, _Raw):
            return _raw_response(completion, script, stream)
        if not stream:
            assert isinstance(script, _Reply)
            return JSONResponse(completion.whole(script.chunks, script.finish_reason))
        options = body.get("stream_options")
        include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
        return StreamingResponse(
            self._events(request, completion, script, include_usage),
            media_type="text/event-stream",
            headers={"cache-control": "no-cache"},
        )

    async def _events(
        self,
        request: Request,
        completion: _Completion,
        script: _Reply | _Disconnect,
        include_usage: bool,
    ) -> AsyncIterator[str]:
        state = _StreamState()
        with self._lock:
            self.active_streams += 1
        try:
            if isinstance(script, _Disconnect):
                words = word_chunks(f"echo from {completion.model}: interrupted answer")
                pieces = (words * (script.after_chunks // len(words) + 1))[: script.after_chunks]
                for index, piece in enumerate(pieces):
                    yield _sse(completion.chunk(piece, first=index == 0, finish_reason=None))
                state.dropped = True
                await self._drop(request)
                return
            pieces = script.chunks or [""]
            for index, piece in enumerate(pieces):
                if index and script.delay_s:
                    await asyncio.sleep(script.delay_s)
                if await request.is_disconnected():
                    return
                last = index == len(pieces) - 1
                finish_reason = script.finish_reason if last else None
                yield _sse(completion.chunk(piece, first=index == 0, finish_reason=finish_reason))
            if include_usage:
                yield _sse(completion.usage_chunk(len(script.chunks)))
            yield "data: [DONE]\n\n"
            state.completed = True
        finally:
            # A client that goes away shows up here as asyncio.CancelledError (Starlette
            # cancels the response when uvicorn reports http.disconnect), as GeneratorExit,
            # or as the is_disconnected() check above returning early.
            with self._lock:
                self.active_streams -= 1
                if not state.completed and not state.dropped and not self._stopping:
                    self.cancelled_streams += 1

    async def _drop(self, request: Request) -> None:
        """Close the connection of `request` without finishing its response."""
        server = self._server
        connections = list(server.server_state.connections) if server is not None else []
        for connection in connections:
            if getattr(connection, "scope", None) is request.scope:
                connection.transport.close()  # flushes what was sent, then FIN: no [DONE]
                await asyncio.sleep(0.01)  # let uvicorn see the connection lost
                return
        # Unknown uvicorn internals: an exception after the response started makes uvicorn
        # close the connection too (and log the exception).
        raise _DroppedByScript("connection dropped by enqueue_disconnect()")


def _raw_response(completion: _Completion, script: _Raw, stream: bool) -> Response:
    if not stream:
        body = completion.whole([], "stop") | {"choices": script.choices}
        return JSONResponse(body)
    suffix = ".chunk" if completion.chat else ""
    events = [_sse(completion._envelope(suffix) | {"choices": [c]}) for c in script.choices]
    return StreamingResponse(iter([*events, "data: [DONE]\n\n"]), media_type="text/event-stream")


def _sse(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload)}\n\n"


@dataclass
class _Completion:
    """Builds the OpenAI-shaped objects of one completion."""

    chat: bool
    model: str
    prompt_tokens: int
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    created: int = field(default_factory=lambda: int(time.time()))

    def _envelope(self, object_suffix: str) -> dict[str, Any]:
        prefix = "chatcmpl-" if self.chat else "cmpl-"
        kind = "chat.completion" if self.chat else "text_completion"
        return {
            "id": prefix + self.id,
            "object": kind + object_suffix,
            "created": self.created,
            "model": self.model,
        }

    def usage(self, completion_tokens: int) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": self.prompt_tokens + completion_tokens,
        }

    def whole(self, chunks: list[str], finish_reason: str) -> dict[str, Any]:
        text = "".join(chunks)
        choice: dict[str, Any] = {"index": 0}
        if self.chat:
            choice["message"] = {"role": "assistant", "content": text}
        else:
            choice["text"] = text
        choice |= {"logprobs": None, "finish_reason": finish_reason}
        return self._envelope("") | {"choices": [choice], "usage": self.usage(len(chunks))}

    def chunk(self, piece: str, *, first: bool, finish_reason: str | None) -> dict[str, Any]:
        choice: dict[str, Any] = {"index": 0}
        if self.chat:
            delta: dict[str, str] = {"role": "assistant"} if first else {}
            choice["delta"] = delta | {"content": piece}
        else:
            choice["text"] = piece
        choice |= {"logprobs": None, "finish_reason": finish_reason}
        suffix = ".chunk" if self.chat else ""
        return self._envelope(suffix) | {"choices": [choice]}

    def usage_chunk(self, completion_tokens: int) -> dict[str, Any]:
        suffix = ".chunk" if self.chat else ""
        return self._envelope(suffix) | {"choices": [], "usage": self.usage(completion_tokens)}


@pytest.fixture(name="fake_upstream")
def fake_upstream_fixture() -> Iterator[FakeUpstream]:
    """Fixture `fake_upstream`: a started `FakeUpstream` ("base-model"), stopped after the test."""
    fake = FakeUpstream()
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


# Both names register the fixture `fake_upstream` where they are imported (with a noqa for
# F401). A conftest may import `fake_upstream`; a test module should import
# `fake_upstream_fixture`, as a test parameter named like an imported name is a redefinition
# for ruff (F811).
fake_upstream = fake_upstream_fixture
