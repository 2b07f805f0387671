"""Async client for a vLLM OpenAI-compatible server: tokenize, complete, stream.

All generation goes through ``/v1/completions`` with the prompt as token ids,
so that multi-turn controllers (s1) continue exactly where the model stopped,
and token counts come from the server's own token ids (``return_token_ids``),
never from whitespace. Chat templating is done by the server (``/tokenize``
with ``messages``), so the app needs no local copy of the tokenizer.

    async with EngineClient(endpoint, timeout_s=600) as client:
        ids = await client.chat_prompt_ids([{"role": "user", "content": "2+2?"}])
        async for chunk in client.stream(ids, max_tokens=64, sampling=Sampling()):
            print(chunk.text, chunk.token_ids)
        whole = await client.complete(ids, max_tokens=64, sampling=Sampling(seed=0))
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp

from backend.serving.engine import Endpoint, EngineUnavailable
from backend.serving.sampling import Sampling

# Resends of a request whose kept-alive connection the server had just closed.
CONNECTION_RETRIES = 2


class EngineRequestError(RuntimeError):
    """The engine answered a request with an error; the message carries its reason."""


@dataclass(frozen=True)
class Chunk:
    text: str
    token_ids: tuple[int, ...]
    finish_reason: str | None = None  # "stop" or "length" on the last chunk
    stop_reason: int | str | None = None  # the stop token id or string that ended it, None for EOS
    logprobs: tuple[float, ...] = ()  # each token's log-probability, when the sampling asked for them


@dataclass(frozen=True)
class ModelInfo:
    name: str
    max_model_len: int


class EngineClient:
    """One connection pool to one served model. Create it inside a running event loop."""

    def __init__(self, endpoint: Endpoint, *, timeout_s: float, max_connections: int = 256) -> None:
        self.endpoint = endpoint
        # aiohttp, not httpx: httpx's pool scans every connection on each request, which cost a
        # 256-request sweep more CPU than the engine's own work on a 2-core machine.
        self._http = aiohttp.ClientSession(
            base_url=endpoint.base_url,
            headers={"Authorization": f"Bearer {endpoint.api_key}"} if endpoint.api_key else {},
            timeout=aiohttp.ClientTimeout(total=timeout_s, connect=10.0),
            connector=aiohttp.TCPConnector(limit=max_connections),
        )

    async def __aenter__(self) -> EngineClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.close()

    async def model_info(self) -> ModelInfo:
        data = await self._request_json("GET", "/v1/models")
        for card in data.get("data", []):
            if card.get("id") == self.endpoint.model:
                return ModelInfo(card["id"], int(card.get("max_model_len") or 0))
        served = ", ".join(c.get("id", "?") for c in data.get("data", []))
        raise EngineUnavailable(f"the engine serves {served}, not {self.endpoint.model}")

    async def chat_prompt_ids(self, messages: list[dict[str, str]]) -> list[int]:
        data = await self._request_json("POST", "/tokenize", {"model": self.endpoint.model, "messages": messages, "add_generation_prompt": True})
        return list(data["tokens"])

    async def token_ids(self, text: str) -> list[int]:
        data = await self._request_json("POST", "/tokenize", {"model": self.endpoint.model, "prompt": text, "add_special_tokens": False})
        return list(data["tokens"])

    async def detokenize(self, ids: list[int]) -> str:
        data = await self._request_json("POST", "/detokenize", {"model": self.endpoint.model, "tokens": ids})
        return data["prompt"]

    async def stream(
        self,
        prompt_ids: list[int],
        max_tokens: int,
        sampling: Sampling,
        stop_token_ids: tuple[int, ...] = (),
        stop: tuple[str, ...] = (),
        thinking_budget: int | None = None,
    ) -> AsyncIterator[Chunk]:
        """Stream one completion; the last chunk carries the finish reason."""
        body = self._completion_body(prompt_ids, max_tokens, sampling, stop_token_ids, stop, stream=True, thinking_budget=thinking_budget)
        try:
            async with self._http.post("/v1/completions", json=body) as response:
                if response.status != 200:
                    raise await _request_error(response)
                async for line in response.content:
                    chunk = _parse_sse_line(line.decode())
                    if chunk is not None:
                        yield chunk
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, asyncio.TimeoutError) as exc:
            raise EngineUnavailable(f"lost the connection to the engine ({_describe(exc)}); it may be restarting") from exc

    async def complete(
        self,
        prompt_ids: list[int],
        max_tokens: int,
        sampling: Sampling,
        stop_token_ids: tuple[int, ...] = (),
        stop: tuple[str, ...] = (),
        thinking_budget: int | None = None,
    ) -> Chunk:
        """One completion in one response: what a sweep uses, since nobody watches it stream
        (one JSON answer instead of an event per token, for the server and for us)."""
        body = self._completion_body(prompt_ids, max_tokens, sampling, stop_token_ids, stop, stream=False, thinking_budget=thinking_budget)
        data = await self._request_json("POST", "/v1/completions", body)
        choice = (data.get("choices") or [{}])[0]
        return _chunk(choice)

    async def step_scores(self, ids: list[int]) -> tuple[list[float], int]:
        """A process reward model served by the pooling runner with step pooling: P(good) at each step
        tag of ``ids`` (each row of the answer is [P(bad), P(good)]), and the tokens it read."""
        data = await self._request_json("POST", "/pooling", {"model": self.endpoint.model, "input": ids, "task": "token_classify"})
        rows = (data.get("data") or [{}])[0].get("data") or []
        return [float(row[-1]) for row in rows], int((data.get("usage") or {}).get("prompt_tokens") or len(ids))

    def _completion_body(self, prompt_ids, max_tokens, sampling, stop_token_ids, stop, stream: bool, thinking_budget: int | None = None) -> dict:
        body = {
            "model": self.endpoint.model,
            "prompt": prompt_ids,
            "max_tokens": max_tokens,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "stream": stream,
            "return_token_ids": True,
            "stop_token_ids": list(stop_token_ids),
            "stop": list(stop),
        }
        if sampling.seed is not None:
            body["seed"] = sampling.seed
        if sampling.logprobs:
            body["logprobs"] = 0  # the sampled token's own log-probability, no alternatives
        if thinking_budget is not None:
            # vLLM's own thinking cap: it forces the end of thinking after this many thinking
            # tokens; a server started without a reasoning parser answers 400 (the reason is passed on).
            body["thinking_token_budget"] = thinking_budget
        return body

    async def _request_json(self, method: str, path: str, body: dict | None = None) -> dict:
        """One JSON request, retried when a kept-alive connection was closed under it.

        The server drops idle connections after a few seconds; a request that raced with that
        fails before the server saw it, so sending it again is safe (completions carry a seed).
        """
        for attempt in range(CONNECTION_RETRIES + 1):
            try:
                async with self._http.request(method, path, json=body) as response:
                    if response.status != 200:
                        raise await _request_error(response)
                    return await response.json()
            except aiohttp.ServerDisconnectedError:
                if attempt == CONNECTION_RETRIES:
                    raise EngineUnavailable(f"the engine at {self.endpoint.base_url} closed the connection {attempt + 1} times in a row; it may be restarting") from None
            except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, asyncio.TimeoutError) as exc:
                # A payload cut short: the engine died while answering (it is being restarted).
                raise EngineUnavailable(f"cannot reach the engine at {self.endpoint.base_url}: {_describe(exc)}") from exc
        raise AssertionError("unreachable")


def _parse_sse_line(line: str) -> Chunk | None:
    if not line.startswith("data:"):
        return None
    payload = line[5:].strip()
    if payload == "[DONE]":
        return None
    data = json.loads(payload)
    if "error" in data:
        raise EngineRequestError(str(data["error"].get("message", data["error"])))
    choices = data.get("choices") or []
    if not choices:
        return None  # a usage-only chunk
    return _chunk(choices[0])


def _chunk(choice: dict) -> Chunk:
    logprobs = (choice.get("logprobs") or {}).get("token_logprobs") or ()
    return Chunk(
        text=choice.get("text") or "",
        token_ids=tuple(choice.get("token_ids") or ()),
        finish_reason=choice.get("finish_reason"),
        stop_reason=choice.get("stop_reason"),
        logprobs=tuple(float(x) if x is not None else 0.0 for x in logprobs),
    )


# A proxy in front of the engines (vllm-router over replicas) answers these when the engine behind
# it was lost: the request may be sent again once it is back, like a dropped connection.
GATEWAY_STATUSES = (502, 503, 504)


async def _request_error(response: aiohttp.ClientResponse) -> Exception:
    text = await _error_text(response)
    if response.status in GATEWAY_STATUSES:
        return EngineUnavailable(f"{text}; the engine behind {response.url.origin()} may be restarting")
    return EngineRequestError(text)


async def _error_text(response: aiohttp.ClientResponse) -> str:
    text = await response.text()
    try:
        data = json.loads(text)
        message = data.get("error", {}).get("message") if isinstance(data.get("error"), dict) else data.get("message") or data.get("detail")
    except (ValueError, AttributeError):
        message = text[:300]
    return f"engine answered {response.status}: {message}"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    return f"{type(exc).__name__}: {exc}"
