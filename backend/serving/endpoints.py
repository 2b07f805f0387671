"""Chat-API endpoints (hosted or self-hosted reasoning models) from a TOML file, and their budget knobs.

An endpoint is a model behind an OpenAI-compatible Chat Completions API that the app does not
serve itself: a hosted API, a llama.cpp / SGLang / vLLM server elsewhere. The file names each
endpoint and says how to reach it and how it takes a thinking budget; the key itself never goes
in the file, only the name of the environment variable that holds it::

    [endpoints.openai]
    base_url = "https://api.openai.com/v1"
    model = "o4-mini"
    api_key_env = "OPENAI_API_KEY"
    knob = "reasoning_effort"
    price_in_per_m = 1.10
    price_out_per_m = 4.40

    endpoints = load_endpoints(Path("endpoints.toml"))
    model, endpoint = parse_model_ref("o4-mini@openai", endpoints)
    native, extra_body = knob_params(endpoint, 2048)   # ({"reasoning_effort": "medium"}, {})

A model on an endpoint is written ``MODEL_ID@ENDPOINT_NAME`` wherever a model is chosen.

The same file may name verifiers served elsewhere: a process reward model behind vLLM's pooling
runner (``/pooling``, step pooling at its tag), usable as ``beam4x4@NAME`` like a local one::

    [verifiers.far-prm]
    base_url = "http://10.0.0.7:8000"      # the vLLM server's root (it serves /pooling and /tokenize)
    model = "tiny-prm"
    step_tag_id = 448                       # the token its steps end with (its prm_config.json)
    api_key_env = "FAR_PRM_KEY"

    verifiers = load_verifiers(Path("endpoints.toml"))
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass, field
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from backend.errors import InputError

# How each knob carries a budget of N tokens in a Chat Completions request: (native parameters of
# the openai SDK, extra body fields). The README's knob table is this mapping in words.
KNOBS = {
    "reasoning_effort": "OpenAI-style reasoning_effort, from N by the endpoint's effort map",
    "max_completion_tokens": "OpenAI-style max_completion_tokens = N (thinking and answer together)",
    "anthropic_thinking": 'Anthropic-style thinking = {type: "enabled", budget_tokens: N} (its OpenAI-compatible endpoint)',
    "vllm_thinking_budget": "vLLM thinking_token_budget = N (a server run with a reasoning parser)",
    "llamacpp_thinking_budget": "llama.cpp thinking_budget_tokens = N",
    "sglang_thinking_budget": "SGLang custom_params.thinking_budget = N",
    "none": "no budget knob: the budget can only be asked for in the prompt",
}
APIS = ("openai-chat",)
# N -> reasoning_effort: the first level whose bound is at least N (the last level has no bound).
DEFAULT_EFFORT_MAP = (("low", 1024), ("medium", 8192), ("high", math.inf))
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
ENV_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_FIELDS = {"base_url", "model", "api_key_env", "api", "knob", "price_in_per_m", "price_out_per_m", "max_requests_per_s",
           "max_concurrency", "timeout_s", "effort_map", "max_retries",
           "send_sampling", "budgets", "stream", "return_token_ids"}


@dataclass(frozen=True)
class ChatEndpoint:
    """One entry of the endpoints file (see the module's docstring)."""

    name: str
    base_url: str
    model: str
    api_key_env: str = ""  # the environment variable holding the key; empty: the endpoint needs none
    api: str = "openai-chat"
    knob: str = "none"
    price_in_per_m: float = 0.0
    price_out_per_m: float = 0.0
    max_requests_per_s: float | None = None
    max_concurrency: int = 8
    timeout_s: float = 120.0
    stream: bool = True  # ask for server-sent events (the chunks also stand in for token counts a provider does not report)
    return_token_ids: bool = False  # a vLLM server: each streamed chunk's token ids, so thinking and answer are counted
    send_sampling: bool = True  # temperature, top_p and seed; false for APIs that refuse them (OpenAI's reasoning models)
    budgets: tuple[int, ...] = (512, 1024, 2048, 4096)  # the budgets the forms suggest for its models
    max_retries: int = 2  # resends after a 429, a 5xx or a lost connection (the openai SDK's backoff, Retry-After honoured)
    effort_map: tuple[tuple[str, float], ...] = field(default=DEFAULT_EFFORT_MAP)

    def api_key(self, env: Mapping[str, str]) -> str:
        """The key from the environment variable the file names ("" when the endpoint needs none)."""
        if not self.api_key_env:
            return ""
        key = env.get(self.api_key_env, "")
        if not key:
            raise InputError(f"endpoint {self.name!r}: the environment variable {self.api_key_env} that should hold its key is not set")
        return key

    def effort(self, budget: int) -> str:
        """The reasoning_effort level a budget of `budget` tokens maps to."""
        return next(level for level, bound in self.effort_map if budget <= bound)


def _read(path: Path) -> dict:
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise InputError(f"endpoints file {path}: cannot be read ({exc.strerror or exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"endpoints file {path}: not valid TOML ({exc})") from None
    if not data.get("endpoints") and not data.get("verifiers"):
        raise InputError(f"endpoints file {path}: no [endpoints.NAME] or [verifiers.NAME] tables (see endpoints.example.toml)")
    return data


def load_endpoints(path: Path) -> dict[str, ChatEndpoint]:
    """The endpoints of a TOML file, by name; InputError naming the file, the entry and the field."""
    entries = _read(path).get("endpoints") or {}
    if not isinstance(entries, dict):
        raise InputError(f"endpoints file {path}: endpoints must be [endpoints.NAME] tables (see endpoints.example.toml)")
    return {name: _endpoint(path, name, entry) for name, entry in entries.items()}


@dataclass(frozen=True)
class VerifierEndpoint:
    """A process reward model served elsewhere by vLLM's pooling runner: a ``[verifiers.NAME]`` table."""

    name: str
    base_url: str  # the server's root, without /v1
    model: str
    step_tag_id: int
    api_key_env: str = ""


_VERIFIER_FIELDS = {"base_url", "model", "step_tag_id", "api_key_env"}


def load_verifiers(path: Path) -> dict[str, VerifierEndpoint]:
    """The file's ``[verifiers.NAME]`` tables, by name ({} when it has none); InputError saying what to fix."""
    entries = _read(path).get("verifiers") or {}
    verifiers = {}
    for name, entry in entries.items():
        where = f"endpoints file {path}: verifier {name!r}"
        if not NAME_RE.fullmatch(name) or not isinstance(entry, dict):
            raise InputError(f"{where}: a [verifiers.NAME] table, NAME of letters, digits, '_', '.' or '-'")
        unknown = sorted(set(entry) - _VERIFIER_FIELDS)
        if unknown:
            raise InputError(f"{where}: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(_VERIFIER_FIELDS))}")
        if not str(entry.get("base_url", "")).startswith(("http://", "https://")) or not str(entry.get("model", "")).strip():
            raise InputError(f"{where}: base_url (http:// or https://, the server's root) and model are required")
        tag = entry.get("step_tag_id")
        if isinstance(tag, bool) or not isinstance(tag, int) or tag < 0:
            raise InputError(f"{where}: step_tag_id must be the id of the token that ends each step (its prm_config.json), got {tag!r}")
        if entry.get("api_key_env") and not ENV_RE.fullmatch(str(entry["api_key_env"])):
            raise InputError(f"{where}: api_key_env {entry['api_key_env']!r} is not an environment variable name")
        verifiers[name] = VerifierEndpoint(name, entry["base_url"].rstrip("/").removesuffix("/v1"), entry["model"].strip(), tag,
                                           entry.get("api_key_env", ""))
    return verifiers


def _endpoint(path: Path, name: str, entry: Any) -> ChatEndpoint:
    where = f"endpoints file {path}: endpoint {name!r}"
    if not NAME_RE.fullmatch(name):
        raise InputError(f"{where}: a name is letters, digits, '_', '.' or '-' (at most 64)")
    if not isinstance(entry, dict):
        raise InputError(f"{where}: must be a table ([endpoints.{name}])")
    if any("key" in key.lower() and key != "api_key_env" for key in entry):
        raise InputError(f"{where}: a key never goes in the file; put it in an environment variable and name that with api_key_env")
    unknown = sorted(set(entry) - _FIELDS)
    if unknown:
        raise InputError(f"{where}: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(_FIELDS))}")
    for required in ("base_url", "model"):
        if not isinstance(entry.get(required), str) or not entry[required].strip():
            raise InputError(f"{where}: {required} is required (a non-empty string)")
    if not entry["base_url"].startswith(("http://", "https://")):
        raise InputError(f"{where}: base_url {entry['base_url']!r} must start with http:// or https://")
    if entry.get("api", "openai-chat") not in APIS:
        raise InputError(f"{where}: api {entry.get('api')!r}: supported: {', '.join(APIS)}")
    if entry.get("knob", "none") not in KNOBS:
        raise InputError(f"{where}: knob {entry.get('knob')!r}: choose one of {', '.join(KNOBS)}")
    if entry.get("api_key_env") and not ENV_RE.fullmatch(str(entry["api_key_env"])):
        raise InputError(f"{where}: api_key_env {entry['api_key_env']!r} is not an environment variable name")
    numbers = {key: entry[key] for key in ("price_in_per_m", "price_out_per_m", "max_requests_per_s", "max_concurrency", "timeout_s") if key in entry}
    for key, value in numbers.items():
        free_allowed = key.startswith("price")  # a local server costs nothing; a rate or a limit of 0 means nothing
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or (value == 0 and not free_allowed):
            raise InputError(f"{where}: {key} {value!r} must be a positive number" + (" or 0" if free_allowed else ""))
    if "max_concurrency" in numbers and not isinstance(numbers["max_concurrency"], int):
        raise InputError(f"{where}: max_concurrency {numbers['max_concurrency']!r} must be a whole number")
    retries = entry.get("max_retries", 2)
    if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= 10:
        raise InputError(f"{where}: max_retries {retries!r} must be a whole number from 0 to 10")
    effort_map = _effort_map(where, entry.get("effort_map"))
    for flag in ("send_sampling", "stream", "return_token_ids"):
        if not isinstance(entry.get(flag, True), bool):
            raise InputError(f"{where}: {flag} must be true or false")
    budgets = entry.get("budgets", list(ChatEndpoint.budgets))
    if not isinstance(budgets, list) or not budgets or not all(isinstance(b, int) and not isinstance(b, bool) and b > 0 for b in budgets):
        raise InputError(f"{where}: budgets must be a list of positive token counts, e.g. [512, 1024, 2048]")
    return ChatEndpoint(name=name, base_url=entry["base_url"].rstrip("/"), model=entry["model"].strip(), api_key_env=entry.get("api_key_env", ""),
                    api=entry.get("api", "openai-chat"), knob=entry.get("knob", "none"), effort_map=effort_map, max_retries=retries,
                        send_sampling=entry.get("send_sampling", True), stream=entry.get("stream", True), budgets=tuple(budgets),
                        return_token_ids=entry.get("return_token_ids", False),
                    **{key: float(value) if key != "max_concurrency" else value for key, value in numbers.items()})


def _effort_map(where: str, value: Any) -> tuple[tuple[str, float], ...]:
    """``{low = 1024, medium = 8192}``: N up to 1024 is low, up to 8192 medium, above: high."""
    if value is None:
        return DEFAULT_EFFORT_MAP
    if not isinstance(value, dict) or not value or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value.values()):
        raise InputError(f"{where}: effort_map must map levels to token bounds, e.g. {{low = 1024, medium = 8192}}")
    levels = sorted(value.items(), key=lambda item: item[1])
    top = "high" if "high" not in value else None
    return tuple(levels) + ((top, math.inf),) if top else tuple(levels[:-1]) + ((levels[-1][0], math.inf),)


def parse_model_ref(ref: str, endpoints: dict[str, ChatEndpoint]) -> tuple[str, ChatEndpoint] | None:
    """("o4-mini", the openai endpoint) for "o4-mini@openai"; None for a name without "@".
    Only configured endpoints can be named (a web request never picks a URL)."""
    if "@" not in ref:
        return None
    model, _, name = ref.rpartition("@")
    if name not in endpoints:
        known = ", ".join(sorted(endpoints)) or "none configured (--endpoints FILE)"
        raise InputError(f"model {ref!r}: no endpoint named {name!r}; endpoints: {known}")
    if not model.strip():
        raise InputError(f"model {ref!r}: write MODEL_ID@{name}, e.g. {endpoints[name].model}@{name}")
    return model.strip(), endpoints[name]


def knob_params(endpoint: ChatEndpoint, budget: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """How a budget of `budget` tokens goes into a Chat Completions request on `endpoint`:
    (parameters the openai SDK takes by name, fields for its ``extra_body``)."""
    if budget < 1:
        raise InputError(f"budget {budget}: must be a positive number of tokens")
    knob = endpoint.knob
    if knob == "reasoning_effort":
        return {"reasoning_effort": endpoint.effort(budget)}, {}
    if knob == "max_completion_tokens":
        return {"max_completion_tokens": budget}, {}
    if knob == "anthropic_thinking":
        return {}, {"thinking": {"type": "enabled", "budget_tokens": budget}}
    if knob == "vllm_thinking_budget":
        return {}, {"thinking_token_budget": budget}
    if knob == "llamacpp_thinking_budget":
        return {}, {"thinking_budget_tokens": budget}
    if knob == "sglang_thinking_budget":
        return {}, {"custom_params": {"thinking_budget": budget}}
    return {}, {}
