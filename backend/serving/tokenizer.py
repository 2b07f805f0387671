"""The served model's tokenizer inside the app: chat prompts tokenized without asking the engine.

A comparison tokenizes one chat prompt per column (the L1 prompts differ by budget). With twenty
viewers pressing Compare at once, those 80 ``/tokenize`` requests queued behind the engine's own
work (0.5 s of 0.9 s to the first token at the median, 2 cores, the engine at nice 10).
`LocalTokenizers` reads a model's tokenizer from disk in a background thread (files already on
this machine only: a model folder, or the hub cache the engine filled; nothing is downloaded) and
hands it out only once it has given the engine's own ids for every probe (prompts, delimiters).
Until then, and for good when it is missing or differs, the engine tokenizes, as before.

    tokenizers = LocalTokenizers(probes=[[{"role": "user", "content": "Compute 2 + 3."}]])
    local = tokenizers.get("models/l1-tiny", endpoint)   # None until read and checked
    ids = local.chat_ids(messages) if local else await client.chat_prompt_ids(messages)
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from functools import partial
from pathlib import Path

from backend.serving.client import EngineClient
from backend.serving.engine import Endpoint

log = logging.getLogger(__name__)

Messages = list[dict[str, str]]


class LocalTokenizer:
    """A model's ``tokenizer.json`` (Hugging Face `tokenizers`) and chat template (rendered by transformers'
    own renderer), tokenizing as the engine's ``/tokenize`` does. Not transformers' AutoTokenizer: it
    imports torch into the dashboard's process (4 s and 400 MB here) for what these two files do."""

    def __init__(self, tokenizer, chat_template: str, special_tokens: dict[str, str]) -> None:
        from transformers.utils.chat_template_utils import render_jinja_template  # no torch in this import (0.8 s)

        self._tokenizer = tokenizer
        self._render = partial(render_jinja_template, chat_template=chat_template, add_generation_prompt=True, **special_tokens)
        eos = special_tokens.get("eos_token")
        self.eos_id: int | None = tokenizer.token_to_id(eos) if eos else None
        self._step_ends: frozenset[int] | None = None

    @classmethod
    def read(cls, source: str) -> LocalTokenizer:
        """From a model folder or the hub cache (never the network); OSError when a file is not here."""
        from tokenizers import Tokenizer

        config = json.loads(_model_file(source, "tokenizer_config.json").read_text())
        template_file = _model_file(source, "chat_template.jinja", required=False)
        template = template_file.read_text() if template_file else _config_template(config, source)
        special = {name: _token_text(config[name]) for name in SPECIAL_TOKENS if config.get(name)}
        return cls(Tokenizer.from_file(str(_model_file(source, "tokenizer.json"))), template, special)

    def chat_ids(self, messages: Messages) -> list[int]:
        """The chat-templated prompt with the generation prompt added, as token ids."""
        rendered, _ = self._render(conversations=[messages])
        return self.ids(rendered[0])

    def ids(self, text: str) -> list[int]:
        """Text without special tokens added (a rendered prompt carries its own; a delimiter, an inserted "Wait")."""
        return self._tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int]) -> str:
        """The text of ``ids``, special tokens included (``</think>``, countdown ticks): what the model wrote."""
        return self._tokenizer.decode(list(ids), skip_special_tokens=False)

    @property
    def step_end_ids(self) -> frozenset[int]:
        """The ids whose text holds a newline: where a reasoning step ends (backend/steps.py), read once."""
        if self._step_ends is None:
            vocab = self._tokenizer.get_vocab(with_added_tokens=True)
            self._step_ends = frozenset(i for i in vocab.values() if "\n" in self._tokenizer.decode([i], skip_special_tokens=False))
        return self._step_ends


SPECIAL_TOKENS = ("bos_token", "eos_token", "unk_token", "pad_token")  # what transformers passes a chat template


def _model_file(source: str, name: str, required: bool = True) -> Path | None:
    """A file of a model folder, or of a hub model already in the local cache."""
    if Path(source).is_dir():
        path = Path(source) / name
        found = path if path.is_file() else None
    else:
        from huggingface_hub import try_to_load_from_cache  # looks in the cache only

        cached = try_to_load_from_cache(source, name)
        found = Path(cached) if isinstance(cached, str) else None
    if found is None and required:
        raise OSError(f"{name} of {source} is not on this machine")
    return found


def _config_template(config: dict, source: str) -> str:
    """The chat template kept in tokenizer_config.json (older models): one string, or named ones (the default)."""
    template = config.get("chat_template")
    if isinstance(template, list):
        template = next((t["template"] for t in template if t.get("name") == "default"), None)
    if not isinstance(template, str):
        raise OSError(f"{source} has no chat template")
    return template


def _token_text(token) -> str:
    return token["content"] if isinstance(token, dict) else str(token)


async def difference(local: LocalTokenizer, client: EngineClient, probes: Sequence[Messages | str]) -> str | None:
    """None when ``local`` gives the engine's ids for every probe (chat messages, or plain text), else the
    first probe on which it does not."""
    for probe in probes:
        if isinstance(probe, str):
            ours, engines, shown = local.ids(probe), await client.token_ids(probe), probe
        else:
            ours, engines, shown = local.chat_ids(probe), await client.chat_prompt_ids(probe), probe[-1]["content"]
        if ours != engines:
            return f"its ids for {shown!r} differ from the engine's ({len(ours)} vs {len(engines)} ids)"
    return None


class LocalTokenizers:
    """One checked tokenizer per (model source, engine endpoint). Files are read once per source in a
    thread of their own (`preload` starts it early, while the engine starts); the check runs in that
    thread too, with its own event loop and engine client, so that no caller ever waits for either."""

    def __init__(self, probes: Sequence[Messages | str], enabled: bool = True, timeout_s: float = 10.0) -> None:
        self.probes = list(probes)
        self.enabled = enabled
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._threads = ThreadPoolExecutor(max_workers=2, thread_name_prefix="tokenizer")
        self._read: dict[str, Future] = {}  # by source: an engine restart (new port) is checked again, not read again
        self._checked: dict[tuple[str, str, str], Future] = {}
        self.reasons: dict[tuple[str, str, str], str] = {}  # why a tokenizer is not used, by key

    def preload(self, source: str) -> None:
        """Start reading ``source``'s tokenizer now (the app does while its engine starts)."""
        if self.enabled:
            with self._lock:
                self._reading(source)

    def get(self, source: str, endpoint: Endpoint) -> LocalTokenizer | None:
        """The checked tokenizer of ``source`` for this endpoint, or None (not ready yet, absent, or different)."""
        if not self.enabled:
            return None
        key = (source, endpoint.base_url, endpoint.model)
        with self._lock:
            if key not in self._checked:
                reading = self._reading(source)
                self._checked[key] = self._threads.submit(self._check, key, reading, endpoint)
            checked = self._checked[key]
        return checked.result() if checked.done() else None

    def wait(self, source: str, endpoint: Endpoint, timeout_s: float) -> LocalTokenizer | None:
        """`get`, after waiting up to ``timeout_s`` for the reading and the check to end."""
        self.get(source, endpoint)
        checked = self._checked.get((source, endpoint.base_url, endpoint.model))
        if checked is not None:
            try:
                checked.result(timeout_s)
            except FutureTimeout:
                pass
        return self.get(source, endpoint)

    def _reading(self, source: str) -> Future:
        if source not in self._read:
            self._read[source] = self._threads.submit(LocalTokenizer.read, source)
        return self._read[source]

    def _check(self, key: tuple[str, str, str], reading: Future, endpoint: Endpoint) -> LocalTokenizer | None:
        """In the tokenizer thread: the read tokenizer if it gives the engine's ids, else None (and why)."""
        try:
            local = reading.result()
            problem = asyncio.run(self._difference(local, endpoint))
        except Exception as exc:  # not here, unreadable, or the engine did not answer: the engine tokenizes
            problem = f"{type(exc).__name__}: {exc}"
        if problem:
            self.reasons[key] = problem
            log.info("prompts of %s are tokenized by the engine: %s", key[0], problem)
            return None
        return local

    async def _difference(self, local: LocalTokenizer, endpoint: Endpoint) -> str | None:
        async with EngineClient(endpoint, timeout_s=self.timeout_s) as client:
            return await difference(local, client, self.probes)
