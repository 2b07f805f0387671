"""A model behind a chat endpoint as the controllers see it: one chat request per generation.

The counterpart of `ModelSession` for models the app does not serve (``MODEL_ID@ENDPOINT`` in
any model field). There are no token ids: the thinking and the answer come from the provider's
fields, and the counts from its usage. Each generation records where its counts come from
(``live.token_counts``):

- ``counted``: a vLLM server asked for each streamed chunk's token ids (``return_token_ids = true``
  in the endpoints file): thinking and answer counted from ids, as on the token-id path;
- ``reported``: the provider's ``completion_tokens`` and ``reasoning_tokens``;
- ``estimated``: the provider reported a total but no usable thinking count (none, or 0 next to
  a thinking text: vLLM 0.32's R1 parser counts 0 when the prompt opens the thinking, as R1
  templates do): the total is split in proportion to the streamed chunks of thinking and answer
  (about one token each on vLLM), or, not streamed, to the length of their text.

Every request streams unless the endpoint says ``stream = false``: the comparison shows tokens as
they come, and the chunks stand in for counts a provider does not report.

Controllers that need the token-level control of a served model (continuing a thinking, forcing
an answer, probing) refuse a chat session with the reason (`Controller.unsupported`).

    session = ChatSession(ChatClient(endpoint, key, limits), model="o4-mini")
    await session.respond(live, "What is 2 + 3?", max_tokens=4096, sampling=Sampling(), knob_budget=1024)
"""

from __future__ import annotations

from dataclasses import dataclass

from backend.controllers.live import LiveGeneration
from backend.controllers.prompts import THINK_END, THINK_START, chat_messages
from backend.controllers.session import ModelTokens
from backend.serving.chat import ChatClient, ChatReply
from backend.serving.sampling import Sampling

# A chat endpoint's context is its own business: it refuses a request that does not fit, with its reason.
UNKNOWN_CONTEXT = 10**9


@dataclass
class ChatSession:
    client: ChatClient
    model: str  # the model id on the endpoint
    is_chat = True
    tokens = ModelTokens(max_model_len=UNKNOWN_CONTEXT, think_start_ids=(), think_end_ids=())

    @property
    def endpoint(self):
        return self.client.endpoint

    async def aclose(self) -> None:
        await self.client.aclose()

    def check_fits(self, prompt_tokens: int, needed_tokens: int, budget: int) -> None:
        """Nothing to check here: the endpoint knows its context and refuses with its reason."""

    async def respond(self, live: LiveGeneration, user_text: str, max_tokens: int, sampling: Sampling, knob_budget: int | None) -> None:
        """One chat request for `user_text` into `live`: streamed unless the endpoint does not stream, counted from usage at the end."""
        live.phase = "thinking"
        live.model = live.model or f"{self.model}@{self.endpoint.name}"
        messages = chat_messages(user_text)
        if self.endpoint.stream:
            reply = ChatReply()
            async for reply in self.client.stream(self.model, messages, max_tokens, sampling, knob_budget):
                if reply.reasoning or reply.content:
                    live.mark_first_token()
                show(live, reply)
        else:
            reply = await self.client.complete(self.model, messages, max_tokens, sampling, knob_budget)
        show(live, reply)
        count(live, reply)
        live.finish_reason = reply.finish_reason
        if reply.content_logprobs:
            live.answer_logprob_sum, live.answer_logprob_count = sum(reply.content_logprobs), len(reply.content_logprobs)


def thinking_and_answer(reply: ChatReply) -> tuple[str, str]:
    """(thinking, answer): the reasoning field when there is one, else the content split at ``</think>``
    (a server without a reasoning parser sends the thinking inline)."""
    if reply.reasoning:
        return reply.reasoning, reply.content
    content = reply.content
    if THINK_END in content:
        thinking, answer = content.split(THINK_END, 1)
        return thinking.removeprefix(THINK_START).lstrip("\n") if thinking.startswith(THINK_START) else thinking, answer
    if content.startswith(THINK_START):
        return content.removeprefix(THINK_START), ""  # still thinking (or cut off while thinking)
    return "", content


def show(live: LiveGeneration, reply: ChatReply) -> None:
    """The reply's text so far into `live`, with chunk counts standing in for tokens until usage arrives."""
    live.thinking_text, live.answer_text = thinking_and_answer(reply)
    if live.answer_text and live.phase == "thinking":
        live.phase = "answering"
    if reply.reasoning:
        live.thinking_tokens, live.answer_tokens = reply.chunks_reasoning, reply.chunks_content
    else:  # inline thinking: the chunks split by where the text is
        total = reply.chunks_content
        live.thinking_tokens, live.answer_tokens = split_by_text(total, live.thinking_text, live.answer_text)


def count(live: LiveGeneration, reply: ChatReply) -> None:
    """The final counts: the provider's when it reports them, else its total (or the chunks) split by text."""
    live.prompt_tokens = reply.prompt_tokens or 0
    live.delimiter_tokens = 0  # a provider's count of the answer includes any closing delimiter
    if reply.ids_reasoning is not None:  # the server sent its token ids (return_token_ids): counted, as on the token-id path
        live.thinking_tokens, live.answer_tokens = reply.ids_reasoning, reply.ids_content
        total = reply.completion_tokens if reply.completion_tokens is not None else reply.ids_reasoning + reply.ids_content
        live.delimiter_tokens = max(0, total - reply.ids_reasoning - reply.ids_content)  # the closing </think>, sent without text
        live.token_counts = "counted"
        return
    thinking_without_count = reply.reasoning_tokens == 0 and live.thinking_text.strip()
    if reply.completion_tokens is not None and reply.reasoning_tokens is not None and not thinking_without_count:
        live.thinking_tokens = min(reply.reasoning_tokens, reply.completion_tokens)
        live.answer_tokens = reply.completion_tokens - live.thinking_tokens
        live.token_counts = "reported"
        return
    total = reply.completion_tokens if reply.completion_tokens is not None else live.thinking_tokens + live.answer_tokens
    if reply.reasoning and reply.chunks_reasoning + reply.chunks_content:
        live.thinking_tokens = round(total * reply.chunks_reasoning / (reply.chunks_reasoning + reply.chunks_content))
        live.answer_tokens = total - live.thinking_tokens
    else:
        live.thinking_tokens, live.answer_tokens = split_by_text(total, live.thinking_text, live.answer_text)
    live.token_counts = "estimated"


def split_by_text(total: int, thinking: str, answer: str) -> tuple[int, int]:
    """`total` tokens shared between thinking and answer in proportion to their characters."""
    chars = len(thinking) + len(answer)
    if not chars:
        return 0, total
    thinking_tokens = round(total * len(thinking) / chars)
    return thinking_tokens, total - thinking_tokens
