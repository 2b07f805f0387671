"""A served model as the controllers see it: its context, its think delimiters, and generation.

`ModelSession` holds what the controllers need to know about the served model (context length,
the token ids of the think delimiters), looked up once per model through the server's tokenizer
(or the model's own in the app, once it gave the server's ids: backend/serving/tokenizer.py),
and generates either live (streamed token by token: the comparison view) or in one response per
completion (sweeps: the same tokens with far less work per token).

    async with EngineClient(endpoint, timeout_s=600) as client:
        session = await ModelSession.open(client, live=False)
        session.check_fits(prompt_tokens=40, needed_tokens=512, budget=512)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from backend.controllers.prompts import THINK_END, THINK_START, chat_messages
from backend.serving.client import Chunk, EngineClient, EngineRequestError
from backend.serving.sampling import Sampling
from backend.serving.tokenizer import LocalTokenizer


_UNKNOWN = object()  # not asked yet
MAX_CACHED_PROMPTS = 4096


class BudgetError(ValueError):
    """A budget or question does not fit the model; the message says which and by how much."""


@dataclass(frozen=True)
class ModelTokens:
    """Token facts of the served model, from its own tokenizer."""

    max_model_len: int
    think_start_ids: tuple[int, ...]
    think_end_ids: tuple[int, ...]

    @property
    def think_end_id(self) -> int | None:
        """The delimiter's id when it is one token (R1 distills, L1, the tiny models)."""
        return self.think_end_ids[0] if len(self.think_end_ids) == 1 else None


@dataclass
class ModelSession:
    """One model on one engine, with the token ids the controllers need (cached).

    ``live=True`` streams every completion token by token (the comparison view
    shows them as they come); ``live=False`` asks for each completion in one
    response (sweeps: the same tokens with far less work per token).
    """

    client: EngineClient
    tokens: ModelTokens
    live: bool = True
    tokenizer: LocalTokenizer | None = None  # the model's own, checked against the server's (serving/tokenizer.py)
    is_chat = False  # see chat_session.ChatSession: a model behind a chat endpoint
    _ids: dict[str, tuple[int, ...]] = field(default_factory=dict)
    _chat_ids: dict[str, tuple[int, ...]] = field(default_factory=dict)
    _thinking_budget_refusal: object = _UNKNOWN

    @classmethod
    async def open(cls, client: EngineClient, live: bool = True, known: ModelSession | None = None,
                   tokenizer: LocalTokenizer | None = None) -> ModelSession:
        """A session on `client`'s model; `known`: an earlier session on the same endpoint, whose token
        facts and tokenized prompts are shared (a comparison then starts without asking the server);
        `tokenizer`: prompts and inserted texts are tokenized with it instead of by the server."""
        if known is not None and known.client.endpoint == client.endpoint:
            return cls(client, known.tokens, live, tokenizer, known._ids, known._chat_ids, known._thinking_budget_refusal)
        info = await client.model_info()
        session = cls(client, ModelTokens(info.max_model_len, (), ()), live, tokenizer)
        session.tokens = ModelTokens(info.max_model_len, await session.ids(THINK_START), await session.ids(THINK_END))
        return session

    async def aclose(self) -> None:
        await self.client.aclose()

    async def generate(
        self,
        prompt_ids: list[int],
        max_tokens: int,
        sampling: Sampling,
        stop_token_ids: tuple[int, ...] = (),
        stop: tuple[str, ...] = (),
        thinking_budget: int | None = None,
    ) -> AsyncIterator[Chunk]:
        """One completion as chunks: many when live, else a single one carrying everything.
        ``thinking_budget``: the engine's own cap on thinking tokens (see `thinking_budget_support`)."""
        if self.live:
            async for chunk in self.client.stream(prompt_ids, max_tokens, sampling, stop_token_ids, stop, thinking_budget):
                yield chunk
        else:
            yield await self.client.complete(prompt_ids, max_tokens, sampling, stop_token_ids, stop, thinking_budget)

    async def thinking_budget_support(self) -> str | None:
        """None when the engine enforces ``thinking_token_budget``, else why not (asked once per
        session with a one-token request: vLLM refuses the field unless it runs a reasoning parser)."""
        if self._thinking_budget_refusal is _UNKNOWN:
            try:
                await self.client.complete(list(await self.ids("1")), 1, Sampling(temperature=0.0), thinking_budget=1)
                self._thinking_budget_refusal = None
            except EngineRequestError as exc:
                self._thinking_budget_refusal = (
                    f"the engine does not enforce a thinking budget ({exc}); start it with a reasoning parser "
                    "(the app's own engine: --engine-reasoning-parser deepseek_r1; a vLLM server: --reasoning-parser deepseek_r1)")
        return self._thinking_budget_refusal

    async def ids(self, text: str) -> tuple[int, ...]:
        if text not in self._ids:
            self._ids[text] = tuple(self.tokenizer.ids(text) if self.tokenizer else await self.client.token_ids(text))
        return self._ids[text]

    async def chat_ids(self, user_text: str) -> list[int]:
        """The chat-templated prompt for one user message, ready for generation (cached: a
        sweep's samples, and often its controllers, share prompts)."""
        if len(self._chat_ids) >= MAX_CACHED_PROMPTS:
            self._chat_ids.clear()  # a long-lived cache (shared by a dashboard's comparisons) stays bounded
        if user_text not in self._chat_ids:
            messages = chat_messages(user_text)
            ids = self.tokenizer.chat_ids(messages) if self.tokenizer else await self.client.chat_prompt_ids(messages)
            self._chat_ids[user_text] = tuple(ids)
        return list(self._chat_ids[user_text])

    def check_fits(self, prompt_tokens: int, needed_tokens: int, budget: int) -> None:
        """Refuse a request the context cannot hold, before any token is generated."""
        limit = self.tokens.max_model_len
        if prompt_tokens >= limit:
            raise BudgetError(f"question too long: the prompt is {prompt_tokens} tokens, the model's context is {limit}")
        if prompt_tokens + needed_tokens > limit:
            raise BudgetError(
                f"budget {budget}: does not fit the model's context of {limit} tokens with this "
                f"{prompt_tokens}-token prompt (at most {limit - prompt_tokens} tokens are left)"
            )
