"""What one generation is while it streams and when it is done.

`LiveGeneration` is the record a controller fills in as tokens arrive; the comparison view
reads it to show live counters, and the store receives it (`backend.service.records`) when it
is done. `StreamSplitter` routes streamed chunks into its thinking and answer.

Token accounting, the same for every controller:
- ``thinking_tokens``: tokens inside the thinking block, the s1 wait text included;
- ``answer_tokens``: tokens after the closing ``</think>`` (a forced answer prefix included);
- ``total_tokens``: every output token: thinking + the closing delimiter + answer.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

from backend.controllers.prompts import THINK_END
from backend.serving.client import Chunk


@dataclass
class LiveGeneration:
    controller: str
    budget: int
    phase: str = "queued"  # queued, thinking, answering, saving (graded and stored next), done, error
    prompt: str = ""
    prompt_tokens: int = 0
    thinking_text: str = ""
    answer_text: str = ""
    thinking_tokens: int = 0
    answer_tokens: int = 0
    delimiter_tokens: int = 0
    finish_reason: str | None = None
    waits_used: int = 0
    ttft_s: float | None = None
    latency_s: float | None = None
    error: str | None = None
    extracted_answer: str | None = None
    correct: bool | None = None
    started_at: float = field(default_factory=time.monotonic)

    @property
    def total_tokens(self) -> int:
        return self.thinking_tokens + self.delimiter_tokens + self.answer_tokens

    @property
    def full_text(self) -> str:
        if self.phase in ("answering", "saving", "done") or self.answer_text:
            return f"{self.thinking_text}{THINK_END}{self.answer_text}"
        return self.thinking_text

    @property
    def done(self) -> bool:
        return self.phase in ("done", "error")

    def mark_first_token(self) -> None:
        if self.ttft_s is None:
            self.ttft_s = time.monotonic() - self.started_at

    def finish(self) -> None:
        """Generation is over; the phase turns to done once it is graded and stored."""
        self.latency_s = time.monotonic() - self.started_at
        self.phase = "saving"

    def fail(self, message: str) -> None:
        self.error = message
        self.latency_s = time.monotonic() - self.started_at
        self.phase = "error"

    def as_dict(self) -> dict:
        data = asdict(self)
        data.pop("started_at")
        data["total_tokens"] = self.total_tokens
        data["full_text"] = self.full_text
        return data


class StreamSplitter:
    """Routes streamed chunks into thinking and answer, counting by token ids.

    Ids split on the closing delimiter's id when it is one token; text splits
    on the delimiter string. They are tracked apart because vLLM may hold text
    back (stop strings) while the ids have already arrived.
    """

    def __init__(self, live: LiveGeneration, think_end_id: int | None, in_thinking: bool = True) -> None:
        self.live = live
        self.think_end_id = think_end_id
        self.ids_in_thinking = in_thinking
        self.text_in_thinking = in_thinking
        live.phase = "thinking" if in_thinking else "answering"

    def feed(self, chunk: Chunk) -> None:
        if chunk.token_ids:
            self.live.mark_first_token()
        self._feed_ids(chunk.token_ids, chunk.text)
        self._feed_text(chunk.text)

    def _feed_ids(self, ids: tuple[int, ...], text: str) -> None:
        live = self.live
        if not self.ids_in_thinking:
            live.answer_tokens += len(ids)
            return
        if self.think_end_id is not None and self.think_end_id in ids:
            cut = ids.index(self.think_end_id)
            live.thinking_tokens += cut
            live.delimiter_tokens += 1
            live.answer_tokens += len(ids) - cut - 1
            self.ids_in_thinking = False
        elif self.think_end_id is None and THINK_END in live.thinking_text + text:
            # A multi-token delimiter: attribute this chunk to the thinking (approximate by a chunk).
            live.thinking_tokens += len(ids)
            self.ids_in_thinking = False
        else:
            live.thinking_tokens += len(ids)

    def _feed_text(self, text: str) -> None:
        live = self.live
        if not self.text_in_thinking:
            live.answer_text += text
            return
        combined = live.thinking_text + text
        if THINK_END in combined:
            before, after = combined.split(THINK_END, 1)
            live.thinking_text, live.answer_text = before, live.answer_text + after
            self.text_in_thinking = False
            live.phase = "answering"
        else:
            live.thinking_text = combined
