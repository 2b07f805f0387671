"""Client for a model behind an OpenAI-compatible Chat Completions API (an endpoint of the endpoints file).

The `openai` SDK does the HTTP: its resends after a 429, a 5xx or a lost connection, with
exponential backoff that honours ``Retry-After``, and its time-outs. This module adds what the
SDK leaves to its user: the endpoint's limits (requests in flight, requests per second), the
budget knob's parameters (`backend.serving.endpoints.knob_params`), reading thinking and answer
out of the provider's fields (``message.reasoning`` / ``reasoning_content``, or inline
``<think>`` tags), the usage counts, and errors that name the endpoint and say what went wrong
without ever carrying its key.

    client = ChatClient(endpoint, api_key, limits=EndpointLimits.for_endpoint(endpoint))
    reply = await client.complete("o4-mini", [{"role": "user", "content": "2+2?"}], 4096, Sampling(), knob_budget=1024)
    async for reply in client.stream(...):     # the same reply, filled in as chunks arrive
        print(reply.reasoning, reply.content)
    await client.aclose()
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import openai

from backend.serving.client import EngineRequestError
from backend.serving.endpoints import ChatEndpoint, knob_params
from backend.serving.sampling import Sampling

REASON_CHARS = 300  # of a provider's error message shown on a card


class ChatEndpointError(EngineRequestError):
    """An endpoint refused, failed, timed out or answered something that is not a Chat Completion;
    the message names the endpoint and the reason (never its key)."""


@dataclass
class ChatReply:
    """One answer of an endpoint, as the app needs it (filled in chunk by chunk when streamed)."""

    reasoning: str = ""  # thinking text from the provider's reasoning field
    content: str = ""  # the message text (may hold inline <think>...</think> when the server has no reasoning parser)
    finish_reason: str | None = None
    prompt_tokens: int | None = None  # usage, as reported
    completion_tokens: int | None = None
    reasoning_tokens: int | None = None
    content_logprobs: list[float] = field(default_factory=list)
    chunks_reasoning: int = 0  # streamed chunks of each kind: live counters until usage arrives
    chunks_content: int = 0
    ids_reasoning: int | None = None  # streamed token ids of each kind, when the server sends them (vLLM's return_token_ids)
    ids_content: int = 0


class EndpointLimits:
    """An endpoint's limits, shared by every session on one event loop: requests in flight
    (``max_concurrency``) and requests started per second (``max_requests_per_s``)."""

    _per_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, EndpointLimits]] = weakref.WeakKeyDictionary()

    def __init__(self, max_concurrency: int, max_requests_per_s: float | None) -> None:
        self.slots = asyncio.Semaphore(max_concurrency)
        self.interval_s = 1.0 / max_requests_per_s if max_requests_per_s else 0.0
        self._next_start = 0.0
        self._pacing = asyncio.Lock()

    @classmethod
    def for_endpoint(cls, endpoint: ChatEndpoint) -> EndpointLimits:
        """The limits of `endpoint` on the running loop (one set per endpoint, whoever asks)."""
        shared = cls._per_loop.setdefault(asyncio.get_running_loop(), {})
        if endpoint.name not in shared:
            shared[endpoint.name] = cls(endpoint.max_concurrency, endpoint.max_requests_per_s)
        return shared[endpoint.name]

    async def paced(self) -> None:
        """Wait for this request's turn under the rate limit."""
        if not self.interval_s:
            return
        async with self._pacing:
            now = time.monotonic()
            wait = self._next_start - now
            self._next_start = max(now, self._next_start) + self.interval_s
        if wait > 0:
            await asyncio.sleep(wait)


class ChatClient:
    """One endpoint through the openai SDK. Create it inside a running event loop."""

    def __init__(self, endpoint: ChatEndpoint, api_key: str, limits: EndpointLimits) -> None:
        self.endpoint = endpoint
        self.limits = limits
        self._key = api_key
        # A server without keys still gets a placeholder: the SDK refuses an empty one.
        self._sdk = openai.AsyncOpenAI(base_url=endpoint.base_url, api_key=api_key or "no-key", timeout=endpoint.timeout_s,
                                       max_retries=endpoint.max_retries)

    async def aclose(self) -> None:
        await self._sdk.close()

    def request(self, model: str, messages: list[dict], max_tokens: int, sampling: Sampling, knob_budget: int | None) -> dict[str, Any]:
        """The SDK's keyword arguments: the cap, the sampling (where the endpoint takes it) and the knob at `knob_budget`."""
        params: dict[str, Any] = {"model": model, "messages": messages, "max_completion_tokens": max_tokens}
        if self.endpoint.send_sampling:
            params.update(temperature=sampling.temperature, top_p=sampling.top_p)
            if sampling.seed is not None:
                params["seed"] = sampling.seed
        if sampling.logprobs:
            params["logprobs"] = True
        extra: dict[str, Any] = {"return_token_ids": True} if self.endpoint.return_token_ids else {}
        if knob_budget is not None:
            native, knob_extra = knob_params(self.endpoint, knob_budget)
            params.update(native)  # a max_completion_tokens knob replaces the cap
            extra.update(knob_extra)
        if extra:
            params["extra_body"] = extra
        return params

    async def complete(self, model: str, messages: list[dict], max_tokens: int, sampling: Sampling, knob_budget: int | None = None) -> ChatReply:
        params = self.request(model, messages, max_tokens, sampling, knob_budget)
        async with self.limits.slots:
            await self.limits.paced()
            try:
                completion = await self._sdk.chat.completions.create(**params)
            except openai.APIError as exc:
                raise self._error(exc) from None
        return self._reply(completion)

    async def stream(self, model: str, messages: list[dict], max_tokens: int, sampling: Sampling, knob_budget: int | None = None) -> AsyncIterator[ChatReply]:
        """The reply, yielded after each chunk (the same object, filled in); usage comes with the last."""
        params = self.request(model, messages, max_tokens, sampling, knob_budget)
        reply = ChatReply()
        async with self.limits.slots:
            await self.limits.paced()
            try:
                chunks = await self._sdk.chat.completions.create(**params, stream=True, stream_options={"include_usage": True})
                async for chunk in chunks:
                    self._add_chunk(reply, chunk)
                    yield reply
            except openai.APIError as exc:
                raise self._error(exc) from None
            except (AttributeError, TypeError, ValueError) as exc:
                raise self._malformed(f"a streamed chunk is not a Chat Completion chunk ({type(exc).__name__})") from None
        if reply.finish_reason is None:  # e.g. a JSON body where server-sent events were asked for
            raise self._malformed("the answer is not a Chat Completion stream (it ended without a finish_reason)")

    def _reply(self, completion: Any) -> ChatReply:
        try:
            choice = completion.choices[0]
            message = choice.message
            reply = ChatReply(reasoning=_reasoning(message) or "", content=message.content or "", finish_reason=choice.finish_reason)
            _add_usage(reply, completion.usage)
            _add_logprobs(reply, getattr(choice, "logprobs", None))
        except (AttributeError, IndexError, TypeError, ValueError) as exc:
            raise self._malformed(f"the answer is not a Chat Completion ({type(exc).__name__}: no choices[0].message)") from None
        return reply

    def _add_chunk(self, reply: ChatReply, chunk: Any) -> None:
        if getattr(chunk, "usage", None) is not None:
            _add_usage(reply, chunk.usage)
        for choice in chunk.choices or ():
            delta = choice.delta
            reasoning, content = _reasoning(delta), delta.content
            if reasoning:
                reply.reasoning += reasoning
                reply.chunks_reasoning += 1
            if content:
                reply.content += content
                reply.chunks_content += 1
            ids = _extra(choice, "token_ids")
            if isinstance(ids, list):
                reply.ids_reasoning = reply.ids_reasoning or 0
                if content:  # a chunk that ends the thinking and starts the answer counts as answer
                    reply.ids_content += len(ids)
                elif reasoning:
                    reply.ids_reasoning += len(ids)
            _add_logprobs(reply, getattr(choice, "logprobs", None))
            reply.finish_reason = choice.finish_reason or reply.finish_reason

    def _malformed(self, what: str) -> ChatEndpointError:
        return ChatEndpointError(f"endpoint {self.endpoint.name}: {what}")

    def _error(self, exc: openai.APIError) -> ChatEndpointError:
        """The SDK's error as one line naming the endpoint; a key a provider echoes back is masked."""
        name, tries = self.endpoint.name, self.endpoint.max_retries + 1
        if isinstance(exc, openai.APITimeoutError):
            message = f"endpoint {name}: no answer within {self.endpoint.timeout_s:g} s ({tries} tries)"
        elif isinstance(exc, openai.APIConnectionError):
            message = f"endpoint {name}: cannot reach {self.endpoint.base_url} ({tries} tries): {exc.__cause__ or exc}"
        elif isinstance(exc, openai.APIStatusError):
            resent = f" after {tries} tries" if exc.status_code == 429 or exc.status_code >= 500 else ""
            message = f"endpoint {name}: HTTP {exc.status_code}{resent}: {_reason(exc)}"
        else:  # a body the SDK could not read
            message = f"endpoint {name}: the answer is not a Chat Completion ({type(exc).__name__}: {exc})"
        return ChatEndpointError(self._masked(message))

    def _masked(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key else text


def _reasoning(message: Any) -> str | None:
    """The thinking text: vLLM's ``reasoning`` or DeepSeek's ``reasoning_content`` (both extras to the SDK's types)."""
    for name in ("reasoning", "reasoning_content"):
        value = _extra(message, name)
        if isinstance(value, str) and value:
            return value
    return None


def _extra(obj: Any, name: str) -> Any:
    """A field the SDK's types do not declare (a provider's extension), or None."""
    value = getattr(obj, name, None)
    if value is None and getattr(obj, "model_extra", None):
        value = obj.model_extra.get(name)
    return value


def _add_usage(reply: ChatReply, usage: Any) -> None:
    if usage is None:
        return
    reply.prompt_tokens = _count(getattr(usage, "prompt_tokens", None))
    reply.completion_tokens = _count(getattr(usage, "completion_tokens", None))
    details = getattr(usage, "completion_tokens_details", None)
    reply.reasoning_tokens = _count(getattr(details, "reasoning_tokens", None)) if details is not None else None


def _count(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"a token count is {value!r}")
    return value


def _add_logprobs(reply: ChatReply, logprobs: Any) -> None:
    content = getattr(logprobs, "content", None) if logprobs is not None else None
    reply.content_logprobs += [float(token.logprob) for token in content or ()]


def _reason(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error", body)
        text = error.get("message") if isinstance(error, dict) else error
        text = text if text else body
    else:
        text = body or exc.message
    return str(text)[:REASON_CHARS]
