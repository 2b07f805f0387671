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

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx

from backend.engine import EngineUnavailable, Endpoint


class EngineRequestError(RuntimeError):
    """The engine answered a request with an error; the message carries its reason."""


@dataclass(frozen=True)
class Sampling:
    temperature: float = 0.6
    top_p: float = 0.95
    seed: int | None = None


@dataclass(frozen=True)
class Chunk:
    text: str
    token_ids: tuple[int, ...]
    finish_reason: str | None = None  # "stop" or "length" on the last chunk
    stop_reason: int | str | None = None  # the stop token id or string that ended it, None for EOS


@dataclass(frozen=True)
class ModelInfo:
    name: str
    max_model_len: int


class EngineClient:
    def __init__(self, endpoint: Endpoint, timeout_s: float = 600.0, max_connections: int = 256) -> None:
        self.endpoint = endpoint
        self._http = httpx.AsyncClient(
            base_url=endpoint.base_url,
            headers={"Authorization": f"Bearer {endpoint.api_key}"} if endpoint.api_key else {},
            timeout=httpx.Timeout(timeout_s, connect=10.0),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        )

    async def __aenter__(self) -> EngineClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def model_info(self) -> ModelInfo:
        data = await self._get_json("/v1/models")
        for card in data.get("data", []):
            if card.get("id") == self.endpoint.model:
                return ModelInfo(card["id"], int(card.get("max_model_len") or 0))
        served = ", ".join(c.get("id", "?") for c in data.get("data", []))
        raise EngineUnavailable(f"the engine serves {served}, not {self.endpoint.model}")

    async def chat_prompt_ids(self, messages: list[dict[str, str]]) -> list[int]:
        data = await self._post_json("/tokenize", {"model": self.endpoint.model, "messages": messages, "add_generation_prompt": True})
        return list(data["tokens"])

    async def token_ids(self, text: str) -> list[int]:
        data = await self._post_json("/tokenize", {"model": self.endpoint.model, "prompt": text, "add_special_tokens": False})
        return list(data["tokens"])

    async def detokenize(self, ids: list[int]) -> str:
        data = await self._post_json("/detokenize", {"model": self.endpoint.model, "tokens": ids})
        return data["prompt"]

    async def stream(
        self,
        prompt_ids: list[int],
        max_tokens: int,
        sampling: Sampling,
        stop_token_ids: tuple[int, ...] = (),
        stop: tuple[str, ...] = (),
    ) -> AsyncIterator[Chunk]:
        """Stream one completion; the last chunk carries the finish reason."""
        body = self._completion_body(prompt_ids, max_tokens, sampling, stop_token_ids, stop, stream=True)
        try:
            async with self._http.stream("POST", "/v1/completions", json=body) as response:
                if response.status_code != 200:
                    await response.aread()
                    raise EngineRequestError(_error_text(response))
                async for line in response.aiter_lines():
                    chunk = _parse_sse_line(line)
                    if chunk is not None:
                        yield chunk
        except httpx.TransportError as exc:
            raise EngineUnavailable(f"lost the connection to the engine ({type(exc).__name__}: {exc}); it may be restarting") from exc

    async def complete(
        self,
        prompt_ids: list[int],
        max_tokens: int,
        sampling: Sampling,
        stop_token_ids: tuple[int, ...] = (),
        stop: tuple[str, ...] = (),
    ) -> Chunk:
        """One completion in one response: what a sweep uses, since nobody watches it stream
        (one JSON answer instead of an event per token, for the server and for us)."""
        body = self._completion_body(prompt_ids, max_tokens, sampling, stop_token_ids, stop, stream=False)
        data = await self._post_json("/v1/completions", body)
        choice = (data.get("choices") or [{}])[0]
        return _chunk(choice)

    def _completion_body(self, prompt_ids, max_tokens, sampling, stop_token_ids, stop, stream: bool) -> dict:
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
        return body

    async def _get_json(self, path: str) -> dict:
        try:
            response = await self._http.get(path)
        except httpx.TransportError as exc:
            raise EngineUnavailable(f"cannot reach the engine at {self.endpoint.base_url}: {exc}") from exc
        if response.status_code != 200:
            raise EngineRequestError(_error_text(response))
        return response.json()

    async def _post_json(self, path: str, body: dict) -> dict:
        try:
            response = await self._http.post(path, json=body)
        except httpx.TransportError as exc:
            raise EngineUnavailable(f"cannot reach the engine at {self.endpoint.base_url}: {exc}") from exc
        if response.status_code != 200:
            raise EngineRequestError(_error_text(response))
        return response.json()


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
    return Chunk(
        text=choice.get("text") or "",
        token_ids=tuple(choice.get("token_ids") or ()),
        finish_reason=choice.get("finish_reason"),
        stop_reason=choice.get("stop_reason"),
    )


def _error_text(response: httpx.Response) -> str:
    try:
        data = response.json()
        message = data.get("error", {}).get("message") if isinstance(data.get("error"), dict) else data.get("message") or data.get("detail")
    except ValueError:
        message = response.text[:300]
    return f"engine answered {response.status_code}: {message}"
