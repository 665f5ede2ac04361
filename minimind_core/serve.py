"""An OpenAI-compatible chat server for a course model, so any OpenAI client or chat UI can talk to it.

    GET  /v1/models              the one model this server holds
    POST /v1/chat/completions    a reply, whole or streamed as server-sent events

The server is FastAPI on uvicorn. A request is checked field by field first (a bad one gets a 400
with OpenAI's error shape, `{"error": {"message", "type", "param", "code"}}`), then rendered with the
course's ChatML template and answered by the library's own token-by-token generator, the one the
lessons read. Sampling follows the request: temperature (0 means greedy), top_p, max_tokens, stop
strings, seed. Streaming sends `data: {chunk}` lines and ends with `data: [DONE]`.

This is a teaching server, not a production one: requests are answered one at a time (a second
waits for the first), and generation runs in a worker thread so the event loop stays free to notice
a client that hangs up, which stops its generation at the next token.

(No `from __future__ import annotations` here: FastAPI reads the handlers' annotations, such as
`Request`, which are imported inside create_app so that the library does not need FastAPI.)
"""
import asyncio
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import torch

from .errors import MiniMindError

ROLES = ("system", "user", "assistant")
MAX_STOPS = 4
OBJECT_OWNER = "minimind-course"


class RequestError(MiniMindError):
    """A request field the server cannot accept; answered with HTTP 400 (404 for an unknown path)."""

    def __init__(self, message: str, param: str | None = None, status: int = 400):
        super().__init__(message)
        self.param = param
        self.status = status


def error_body(message: str, param: str | None = None, kind: str = "invalid_request_error") -> dict:
    """OpenAI's error shape."""
    return {"error": {"message": message, "type": kind, "param": param, "code": None}}


# ----------------------------------------------------------------------------------------------
# the request


@dataclass
class ChatRequest:
    messages: list[dict]
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int | None = None
    max_tokens: int | None = None
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    stream: bool = False
    include_usage: bool = False
    repetition_penalty: float = 1.0


def _number(body: dict, name: str, default, lo: float, hi: float, integer: bool = False):
    value = body.get(name)
    if value is None:
        return default
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind):
        raise RequestError(f"'{name}' must be {'an integer' if integer else 'a number'}, got {json.dumps(value)}",
                           name)
    if not lo <= value <= hi:
        raise RequestError(f"'{name}' must be between {lo:g} and {hi:g}, got {value}", name)
    return value


def _content(message: dict, where: str) -> str:
    """A message's text: a string, or OpenAI's list of parts with only text parts."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for j, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise RequestError(f"{where}.content[{j}]: only text parts are supported, got {kind!r}",
                                   f"{where}.content")
            texts.append(part["text"])
        return "".join(texts)
    raise RequestError(f"{where}.content must be a string or a list of text parts", f"{where}.content")


def parse_request(body) -> ChatRequest:
    """Check every field of a chat completion request; RequestError names the first bad one."""
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError("'messages' must be a non-empty list of {role, content} objects", "messages")
    clean = []
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise RequestError(f"{where} must be an object with 'role' and 'content'", "messages")
        role = "system" if m.get("role") == "developer" else m.get("role")
        if role not in ROLES:
            raise RequestError(f"{where}.role {m.get('role')!r} is not supported; use one of "
                               f"{', '.join(ROLES)}", f"{where}.role")
        clean.append({"role": role, "content": _content(m, where)})
    if body.get("n") not in (None, 1):
        raise RequestError(f"only n=1 is supported, got n={json.dumps(body.get('n'))}", "n")
    for name in ("tools", "functions", "logprobs", "response_format"):
        if body.get(name) not in (None, False, [], {"type": "text"}):
            raise RequestError(f"'{name}' is not supported by this server", name)
    for name in ("frequency_penalty", "presence_penalty"):
        if body.get(name) not in (None, 0, 0.0):
            raise RequestError(f"'{name}' is not supported (use 'repetition_penalty', MiniMind's)", name)
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    max_tokens = _number({"max_tokens": max_tokens}, "max_tokens", None, 1, 1 << 30, integer=True)
    stop = body.get("stop")
    if stop is None:
        stop = []
    elif isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, list) or len(stop) > MAX_STOPS or not all(isinstance(s, str) and s for s in stop):
        raise RequestError(f"'stop' must be a non-empty string or a list of up to {MAX_STOPS} of them", "stop")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise RequestError("'stream' must be true or false", "stream")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise RequestError("'stream_options' must be an object", "stream_options")
    return ChatRequest(
        messages=clean,
        temperature=float(_number(body, "temperature", 1.0, 0.0, 2.0)),
        top_p=float(_number(body, "top_p", 1.0, 0.0, 1.0)),
        top_k=_number(body, "top_k", None, 0, 1 << 20, integer=True) or None,
        max_tokens=max_tokens,
        stop=stop,
        seed=_number(body, "seed", None, -(1 << 63), (1 << 63) - 1, integer=True),
        stream=stream,
        include_usage=bool(options.get("include_usage", False)),
        repetition_penalty=float(_number(body, "repetition_penalty", 1.0, 0.01, 10.0)),
    )


# ----------------------------------------------------------------------------------------------
# the reply


def _held_back(text: str, stops: list[str]) -> int:
    """How many trailing characters could still grow into a stop string (so are not sent yet)."""
    keep = 0
    for s in stops:
        for k in range(min(len(s) - 1, len(text)), keep, -1):
            if text.endswith(s[:k]):
                keep = k
                break
    return keep


def _first_stop(text: str, stops: list[str], start: int) -> int | None:
    hits = [i for i in (text.find(s, start) for s in stops) if i >= 0]
    return min(hits) if hits else None


class ChatModel:
    """A loaded course model and its tokenizer, answering ChatRequests one at a time."""

    def __init__(self, model_dir: str | Path, name: str | None = None, device: str | None = None):
        from .checkpoint import load_model_and_tokenizer, resolve_model_dir

        self.path = resolve_model_dir(model_dir)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model, self.tokenizer = load_model_and_tokenizer(model_dir, device=self.device)
        self.name = name or Path(model_dir).absolute().name   # as given (a run folder: its stage)
        self.created = int(time.time())
        self.max_positions = self.model.config.max_position_embeddings
        self.eos_id = self.model.config.eos_token_id
        self.lock = asyncio.Lock()       # create_app gives each app its own

    def prompt_ids(self, req: ChatRequest) -> torch.Tensor:
        """The request's messages in the course's chat template, with the assistant prompt."""
        from .generate import chat_prompt_ids

        ids = chat_prompt_ids(self.tokenizer, req.messages)
        if ids.shape[1] >= self.max_positions:
            raise RequestError(f"the prompt is {ids.shape[1]} tokens; this model reads at most "
                               f"{self.max_positions} (prompt and reply together)", "messages")
        return ids

    def events(self, req: ChatRequest, ids: torch.Tensor, cancel: threading.Event) -> Iterator[tuple]:
        """("text", piece) as the reply grows, then ("end", finish_reason, completion_tokens).

        Text is released only in whole characters (a Chinese character spans several byte-level
        tokens) and never while its tail could still become a stop string.
        """
        from .generate import stream_generate

        room = self.max_positions - ids.shape[1]
        max_new = min(req.max_tokens or room, room)
        generator = torch.Generator(device=self.device)
        if req.seed is not None:
            generator.manual_seed(req.seed % (1 << 64))
        else:
            generator.seed()
        greedy = req.temperature == 0
        steps = stream_generate(self.model, ids, max_new_tokens=max_new, do_sample=not greedy,
                                temperature=req.temperature if not greedy else 1.0, top_k=req.top_k,
                                top_p=req.top_p if req.top_p < 1 else None,
                                repetition_penalty=req.repetition_penalty, eos_token_id=self.eos_id,
                                generator=generator)
        new_ids: list[int] = []
        sent = ""
        finish, produced = "length", 0
        longest = max((len(s) for s in req.stop), default=0)
        for token in steps:
            if cancel.is_set():
                steps.close()
                return
            produced += 1
            t = int(token[0])
            if t == self.eos_id:
                finish = "stop"
                break
            new_ids.append(t)
            text = self.tokenizer.decode(new_ids, skip_special_tokens=True)
            if text.endswith("\ufffd"):      # an unfinished multi-byte character
                continue
            cut = _first_stop(text, req.stop, max(0, len(sent) - longest)) if req.stop else None
            if cut is not None:
                if cut > len(sent):
                    yield ("text", text[len(sent):cut])
                steps.close()
                yield ("end", "stop", produced)
                return
            ready = len(text) - _held_back(text, req.stop)
            if ready > len(sent):
                yield ("text", text[len(sent):ready])
                sent = text[:ready]
        # the end (eos or max_tokens): release the held-back tail; drop a cut-off character
        text = self.tokenizer.decode(new_ids, skip_special_tokens=True).rstrip("\ufffd")
        cut = _first_stop(text, req.stop, 0) if req.stop else None
        if cut is not None:
            text, finish = text[:cut], "stop"
        if len(text) > len(sent):
            yield ("text", text[len(sent):])
        yield ("end", finish, produced)

    async def run(self, req: ChatRequest, ids: torch.Tensor):
        """The events of `events`, produced in a worker thread, one request at a time."""
        async with self.lock:
            loop = asyncio.get_running_loop()
            queue: asyncio.Queue = asyncio.Queue()
            cancel = threading.Event()
            done = object()

            def work():
                try:
                    for ev in self.events(req, ids, cancel):
                        loop.call_soon_threadsafe(queue.put_nowait, ev)
                except BaseException as e:  # noqa: BLE001 - handed to the request to report
                    loop.call_soon_threadsafe(queue.put_nowait, e)
                finally:
                    loop.call_soon_threadsafe(queue.put_nowait, done)

            worker = loop.run_in_executor(None, work)
            try:
                while True:
                    ev = await queue.get()
                    if ev is done:
                        break
                    if isinstance(ev, BaseException):
                        raise ev
                    yield ev
            finally:
                cancel.set()             # a client that left stops the generation at its next token
                try:
                    await asyncio.shield(worker)
                except BaseException:  # noqa: BLE001 - cancelled while waiting: the thread ends by itself
                    pass


# ----------------------------------------------------------------------------------------------
# the app


def create_app(chat_model: ChatModel):
    """The FastAPI application serving `chat_model`."""
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, StreamingResponse
    from starlette.exceptions import HTTPException

    app = FastAPI(title="MiniMind course model", docs_url=None, redoc_url=None)
    chat_model.lock = asyncio.Lock()     # requests are answered one at a time

    @app.exception_handler(RequestError)
    async def _request_error(request, e: RequestError):
        return JSONResponse(error_body(str(e), e.param), status_code=e.status)

    @app.exception_handler(HTTPException)
    async def _http_error(request, e: HTTPException):
        kind = "not_found_error" if e.status_code == 404 else "invalid_request_error"
        return JSONResponse(error_body(f"{request.method} {request.url.path}: {e.detail}", kind=kind),
                            status_code=e.status_code)

    def model_card() -> dict:
        return {"id": chat_model.name, "object": "model", "created": chat_model.created, "owned_by": OBJECT_OWNER}

    @app.get("/v1/models")
    async def list_models():
        return {"object": "list", "data": [model_card()]}

    @app.get("/v1/models/{model_id:path}")
    async def get_model(model_id: str):
        if model_id != chat_model.name:
            raise RequestError(f"no model {model_id!r} here; this server holds {chat_model.name!r}", "model", 404)
        return model_card()

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        try:
            body = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise RequestError(f"the request body is not valid JSON ({e})") from None
        req = parse_request(body)
        ids = chat_model.prompt_ids(req)
        head = {"id": f"chatcmpl-{uuid.uuid4().hex}", "created": int(time.time()), "model": chat_model.name}
        usage = lambda completion: {"prompt_tokens": ids.shape[1], "completion_tokens": completion,  # noqa: E731
                                    "total_tokens": ids.shape[1] + completion}
        if not req.stream:
            pieces, finish, produced = [], "length", 0
            async for ev in chat_model.run(req, ids):
                if ev[0] == "text":
                    pieces.append(ev[1])
                else:
                    finish, produced = ev[1], ev[2]
            message = {"role": "assistant", "content": "".join(pieces)}
            return {**head, "object": "chat.completion", "system_fingerprint": None,
                    "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
                    "usage": usage(produced)}

        def chunk(delta: dict, finish=None) -> str:
            body = {**head, "object": "chat.completion.chunk", "system_fingerprint": None,
                    "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
            if req.include_usage:
                body["usage"] = None
            return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

        async def sse():
            yield chunk({"role": "assistant", "content": ""})
            async for ev in chat_model.run(req, ids):
                if ev[0] == "text":
                    yield chunk({"content": ev[1]})
                else:
                    yield chunk({}, ev[1])
                    if req.include_usage:
                        final = {**head, "object": "chat.completion.chunk", "system_fingerprint": None,
                                 "choices": [], "usage": usage(ev[2])}
                        yield f"data: {json.dumps(final)}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(sse(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    return app


def serve(model_dir: str | Path, host: str = "127.0.0.1", port: int = 8000, name: str | None = None,
          device: str | None = None, log_level: str = "info") -> None:
    """Load the model and serve it until interrupted (Ctrl-C)."""
    import uvicorn

    chat_model = ChatModel(model_dir, name=name, device=device)
    print(f"serving {chat_model.path} as {chat_model.name!r} on http://{host}:{port}/v1 "
          f"({chat_model.device}); Ctrl-C stops")
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"note: {host} is reachable from other machines, and this server has no authentication")
    uvicorn.run(create_app(chat_model), host=host, port=port, log_level=log_level)


__all__ = ["ChatModel", "ChatRequest", "RequestError", "create_app", "parse_request", "serve", "error_body"]
