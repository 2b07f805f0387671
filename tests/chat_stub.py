"""A local stand-in for a hosted reasoning API, answering in the documented OpenAI Chat Completions shapes.

Hosted APIs cannot be reached from the test machines, so the tests of the chat-endpoint path
talk to this server over real HTTP instead (the process boundary is the only thing mocked). It
answers ``POST /v1/chat/completions``, streamed (server-sent events with ``delta.reasoning_content``
and ``delta.content``, usage in a last chunk when ``stream_options.include_usage``) or not
(``message.reasoning_content``, ``usage.completion_tokens_details.reasoning_tokens``). The model
name picks the behaviour:

- ``obey``: thinks for as many tokens as the request's budget knob asks (64 without one);
- ``ignore``: thinks for 300 tokens whatever the knob says;
- ``inline``: thinking inline in ``<think>...</think>``, usage without a thinking count;
- ``uncounted``: reports ``reasoning_tokens: 0`` next to its thinking text (as vLLM 0.32's R1 parser does);
- ``ratelimited``: the first request of each question gets 429 with ``Retry-After: 1``;
- ``flaky``: the first request of each question gets 500; ``down``: every request gets 500;
- ``slow``: answers after 5 s; ``malformed``: a 200 whose body is not a Chat Completion;
- ``leaky``: a 401 whose message echoes the request's Authorization header back.

One "token" is one word of the thinking (``step``) or of the answer; every request is kept in
``requests`` with the time it arrived, and the most requests in flight at once, per model, in ``max_in_flight``.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections import Counter

from aiohttp import web

ANSWER = "The answer is \\boxed{42}."
KNOB_FIELDS = ("thinking_token_budget", "thinking_budget_tokens")


def thinking_budget(body: dict) -> int | None:
    """The budget a request's knob asks for, whichever knob it is."""
    for name in KNOB_FIELDS:
        if name in body:
            return int(body[name])
    if isinstance(body.get("thinking"), dict):
        return int(body["thinking"]["budget_tokens"])
    if isinstance(body.get("custom_params"), dict):
        return int(body["custom_params"]["thinking_budget"])
    if "reasoning_effort" in body:
        return {"low": 100, "medium": 200, "high": 400}[body["reasoning_effort"]]
    return None


class ChatStub:
    def __init__(self) -> None:
        self.requests: list[tuple[float, dict, dict]] = []  # (arrival, body, headers)
        self.in_flight: Counter[str] = Counter()
        self.max_in_flight: Counter[str] = Counter()
        self.delay_s = 0.0  # added to every answer (the concurrency test)
        self._seen: Counter[tuple[str, str]] = Counter()
        self._loop = asyncio.new_event_loop()
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        self._started.wait(10)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        runner = web.AppRunner(app)
        self._loop.run_until_complete(runner.setup())
        self._loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
        self._started.set()
        self._loop.run_forever()

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def reset(self) -> None:
        self.requests.clear()
        self._seen.clear()
        self.max_in_flight.clear()
        self.delay_s = 0.0

    def bodies(self, model: str) -> list[dict]:
        return [body for _, body, _ in self.requests if body.get("model") == model]

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append((time.monotonic(), body, dict(request.headers)))
        model = body.get("model", "")
        self.in_flight[model] += 1
        self.max_in_flight[model] = max(self.max_in_flight[model], self.in_flight[model])
        try:
            await asyncio.sleep(self.delay_s)
            return await self._answer(request, body)
        finally:
            self.in_flight[model] -= 1

    async def _answer(self, request: web.Request, body: dict) -> web.StreamResponse:
        model = body["model"]
        question = body["messages"][-1]["content"]
        self._seen[(model, question)] += 1
        first = self._seen[(model, question)] == 1
        if model == "ratelimited" and first:
            return web.json_response({"error": {"message": "Rate limit reached", "type": "rate_limit"}}, status=429, headers={"Retry-After": "1"})
        if model == "down" or (model == "flaky" and first):
            return web.json_response({"error": {"message": "The server had an error while processing your request"}}, status=500)
        if model == "slow":
            await asyncio.sleep(5)
        if model == "malformed":
            return web.json_response({"id": "x", "object": "chat.completion", "result": "no choices here"})
        if model == "leaky":
            return web.json_response({"error": {"message": f"Incorrect API key provided: {request.headers.get('Authorization')}"}}, status=401)
        thinking_words = 300 if model == "ignore" else (thinking_budget(body) or 64)
        cap = body.get("max_completion_tokens") or body.get("max_tokens") or 10**9
        words = (["step"] * thinking_words + ["</think>"] + ANSWER.split())[:cap]
        thinking = words[:thinking_words]
        answer = words[thinking_words + 1 :]
        finish = "length" if len(words) < thinking_words + 1 + len(ANSWER.split()) else "stop"
        usage = {"prompt_tokens": len(question.split()), "completion_tokens": len(words),
                 "total_tokens": len(question.split()) + len(words)}
        if model != "inline":
            usage["completion_tokens_details"] = {"reasoning_tokens": 0 if model == "uncounted" else len(thinking)}
        if body.get("stream"):
            return await self._stream(request, model, thinking, answer, finish, usage, body)
        message = {"role": "assistant", "content": " ".join(answer)}
        if model == "inline":
            message["content"] = "<think>" + " ".join(thinking) + ("</think>" + " ".join(answer) if answer or finish == "stop" else "")
        else:
            message["reasoning_content"] = " ".join(thinking)
        return web.json_response({"id": "chatcmpl-stub", "object": "chat.completion", "created": int(time.time()), "model": model,
                                  "choices": [{"index": 0, "message": message, "finish_reason": finish}], "usage": usage})

    async def _stream(self, request, model, thinking, answer, finish, usage, body) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)

        async def send(payload: dict) -> None:
            await response.write(f"data: {json.dumps(payload)}\n\n".encode())

        def chunk(delta: dict, finish_reason=None) -> dict:
            return {"id": "chatcmpl-stub", "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}

        await send(chunk({"role": "assistant", "content": ""}))
        for word in thinking:
            await send(chunk({"reasoning_content": word + " "}))
        for word in answer:
            await send(chunk({"content": word + " "}))
        await send(chunk({}, finish))
        if (body.get("stream_options") or {}).get("include_usage"):
            await send({"id": "chatcmpl-stub", "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
                        "choices": [], "usage": usage})
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response
