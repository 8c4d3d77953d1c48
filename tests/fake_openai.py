"""A small OpenAI-compatible chat completions server for tests: real HTTP, real SSE.

It answers by the requested model name, so one server serves several behaviours:

- ``echo``: streams "You said: <last user text>".
- ``flaky``: the first request gets a 429, later ones answer like ``echo``.
- ``locked``: every request gets a 401 with OpenAI's error body.
- ``delegator``: calls ``agent_run`` on ``scripted`` until it has a tool result, then
  streams a summary of it.
- ``wanderer``: first calls a tool it does not have, then streams slowly (for kills).
- ``fanout``: calls ``agent_run`` on ``researcher`` twice at once, then says it is done.
- ``digger``: calls ``agent_output`` (on a run that does not exist) until it has
  ``DIG_ROUNDS`` tool results, then says how many: a run that keeps spending.
- ``toolsmith``: calls ``add`` (with a bad argument) and ``shout`` at once, then
  ``add`` again mended, then answers with both results.

Every request is recorded (body and headers) so tests can count and inspect them, and
every streamed answer ends with its usage (as OpenAI sends it when asked), recorded in
``usages``: prompt tokens 10 per message plus 7, completion tokens 3 per word or call.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DIG_ROUNDS = 5


class FakeOpenAI:
    """The server, on a free loopback port, in a background thread."""

    def __init__(self) -> None:
        """Start serving at once."""
        self.requests: list[dict[str, Any]] = []
        self.usages: list[dict[str, Any]] = []  # {"model", "prompt_tokens", ...} per answer
        self.headers: list[dict[str, str]] = []
        self.slow_seconds = 4.0
        self._lock = threading.Lock()
        handler = _handler_for(self)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def base_url(self) -> str:
        """The ``/v1`` URL an OpenAI client points at."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def requests_for(self, model: str) -> list[dict[str, Any]]:
        """The recorded request bodies for ``model``."""
        with self._lock:
            return [r for r in self.requests if r.get("model") == model]

    def close(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()

    def record(self, body: dict[str, Any], headers: dict[str, str]) -> int:
        with self._lock:
            self.requests.append(body)
            self.headers.append(headers)
            return len([r for r in self.requests if r.get("model") == body.get("model")])


def _handler_for(fake: FakeOpenAI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            body = json.loads(self.rfile.read(length) or b"{}")
            number = fake.record(body, dict(self.headers.items()))
            _answer(self, fake, body, number)

    return Handler


def _answer(
    handler: BaseHTTPRequestHandler, fake: FakeOpenAI, body: dict[str, Any], n: int
) -> None:
    usage = _respond(handler, fake, body, n)
    if usage is not None:
        with fake._lock:
            fake.usages.append({"model": body.get("model", ""), **usage})


def _respond(
    handler: BaseHTTPRequestHandler, fake: FakeOpenAI, body: dict[str, Any], n: int
) -> dict[str, int] | None:
    model = body.get("model", "")
    messages = body.get("messages", [])
    if model == "locked":
        _error(handler, 401, "Incorrect API key provided: sk-te****", "invalid_api_key")
        return None
    if model == "flaky" and n == 1:
        _error(handler, 429, "Rate limit reached, retry later", "rate_limit_exceeded")
        return None
    if model == "delegator" and not any(m.get("role") == "tool" for m in messages):
        args = {"agent_id": "scripted", "prompt": "research this"}
        return _stream(
            handler, model, tool_call=("call_d1", "agent_run", args), messages=len(messages)
        )
    if model == "delegator":
        result = next(m for m in messages if m.get("role") == "tool")
        return _stream(
            handler, model, text=f"The helper said: {result['content']}", messages=len(messages)
        )
    if model == "wanderer" and not any(m.get("role") == "tool" for m in messages):
        return _stream(handler, model, tool_call=("call_w1", "web_search", {"q": "x"}))
    if model == "wanderer":
        return _stream(handler, model, text="found it after all", delay=fake.slow_seconds)
    if model == "fanout" and not any(m.get("role") == "tool" for m in messages):
        calls = [
            (f"call_f{n}", "agent_run", {"agent_id": "researcher", "prompt": topic})
            for n, topic in enumerate(("tides", "winds"))
        ]
        return _stream(handler, model, tool_calls=calls, messages=len(messages))
    if model == "fanout":
        return _stream(handler, model, text="Both are in.", messages=len(messages))
    if model == "digger":
        dug = len([m for m in messages if m.get("role") == "tool"])
        if dug < DIG_ROUNDS:
            call = (f"call_g{dug}", "agent_output", {"run_id": f"nothing-{dug}"})
            return _stream(handler, model, tool_call=call, messages=len(messages))
        return _stream(handler, model, text=f"Dug {dug} times.", messages=len(messages))
    if model == "toolsmith":
        return _toolsmith(handler, model, [m for m in messages if m.get("role") == "tool"])
    last_user: dict[str, Any] = next((m for m in reversed(messages) if m.get("role") == "user"), {})
    text = f"You said: {last_user.get('content', '')}"
    return _stream(handler, model, text=text, messages=len(messages))


def _toolsmith(
    handler: BaseHTTPRequestHandler, model: str, results: list[dict[str, Any]]
) -> dict[str, int] | None:
    if not results:
        calls: list[tuple[str, str, dict[str, Any]]] = [
            ("call_t1", "add", {"a": "two", "b": 3}),
            ("call_t2", "shout", {"text": "hi"}),
        ]
        return _stream(handler, model, tool_calls=calls)
    if len(results) == 2:
        return _stream(handler, model, tool_calls=[("call_t3", "add", {"a": 2, "b": 3})])
    text = f"The sum is {results[-1]['content']} and the shout is {results[1]['content']}"
    return _stream(handler, model, text=text)


def _error(handler: BaseHTTPRequestHandler, status: int, message: str, code: str) -> None:
    payload = json.dumps({"error": {"message": message, "type": "error", "code": code}}).encode()
    handler.send_response(status)
    handler.send_header("content-type", "application/json")
    handler.send_header("retry-after-ms", "10")
    handler.send_header("content-length", str(len(payload)))
    handler.end_headers()
    handler.wfile.write(payload)


def _stream(
    handler: BaseHTTPRequestHandler,
    model: str,
    text: str = "",
    tool_call: tuple[str, str, dict[str, Any]] | None = None,
    delay: float = 0.0,
    tool_calls: list[tuple[str, str, dict[str, Any]]] | None = None,
    messages: int = 1,
) -> dict[str, int]:
    handler.send_response(200)
    handler.send_header("content-type", "text/event-stream")
    handler.end_headers()
    words = text.split(" ") if text else []
    for index, word in enumerate(words):
        piece = word if index == 0 else " " + word
        _chunk(handler, model, {"role": "assistant", "content": piece}, None)
        if delay:
            time.sleep(delay / max(1, len(words)))
    calls = [tool_call] if tool_call is not None else tool_calls or []
    for index, (call_id, name, args) in enumerate(calls):
        call = {"index": index, "id": call_id, "type": "function"}
        call["function"] = {"name": name, "arguments": json.dumps(args)}
        _chunk(handler, model, {"role": "assistant", "tool_calls": [call]}, None)
    _chunk(handler, model, {}, "tool_calls" if calls else "stop")
    prompt, completion = 10 * messages + 7, 3 * (len(words) + len(calls))
    usage = {"prompt_tokens": prompt, "completion_tokens": completion}
    usage["total_tokens"] = prompt + completion
    tail: dict[str, Any] = {"id": "chatcmpl-fake", "object": "chat.completion.chunk"}
    tail.update({"model": model, "created": int(time.time()), "choices": [], "usage": usage})
    handler.wfile.write(f"data: {json.dumps(tail)}\n\n".encode())
    handler.wfile.write(b"data: [DONE]\n\n")
    handler.wfile.flush()
    return usage


def _chunk(
    handler: BaseHTTPRequestHandler, model: str, delta: dict[str, Any], finish: str | None
) -> None:
    chunk = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    handler.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
    handler.wfile.flush()
