"""Chat prompts tokenized in the app: the model's own tokenizer, used only when it gives the engine's ids."""

from __future__ import annotations

import shutil

import httpx
import pytest

from backend.controllers.prompts import base_prompt, chat_messages, l1_exact_prompt, l1_max_prompt
from backend.controllers.config import ControllerConfig
from backend.service.budgetlab import tokenizer_probes
from backend.service.compare import parse_compare_request
from backend.service.examples import builtin_examples
from backend.serving.client import EngineClient
from backend.serving.tokenizer import LocalTokenizers
from tests.conftest import run

pytestmark = pytest.mark.engine

PROBES = tokenizer_probes(ControllerConfig())


def tokenize_requests(endpoint) -> float:
    """How many /tokenize requests the engine has answered (its Prometheus HTTP counters)."""
    text = httpx.get(f"{endpoint.base_url}/metrics", headers={"Authorization": f"Bearer {endpoint.api_key}"}, timeout=30).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("http_requests_total{") and 'handler="/tokenize"' in line)


def test_the_local_tokenizer_gives_the_engines_ids_for_every_prompt_form(engine, tiny_spec):
    endpoint = engine.ensure(tiny_spec, 300)
    local = LocalTokenizers(PROBES).wait(tiny_spec.source, endpoint, timeout_s=120)
    assert local is not None
    questions = [e.question for e in builtin_examples()] + ["x" * 300, "Ünïcode – 3² ≠ 9 \\frac{1}{2}", "  spaces  "]
    texts = [form(q) for q in questions for form in (base_prompt, lambda q: l1_exact_prompt(q, 64), lambda q: l1_max_prompt(q, 4096))]

    async def engines_ids():
        async with EngineClient(endpoint, timeout_s=60) as client:
            return [await client.chat_prompt_ids(chat_messages(t)) for t in texts]

    assert [local.chat_ids(chat_messages(t)) for t in texts] == run(engines_ids())


def test_a_tokenizer_that_differs_from_the_engines_is_not_used(engine, tiny_spec, tmp_path):
    """The same model's files with another chat template (a system line): the check catches it, the engine tokenizes."""
    endpoint = engine.ensure(tiny_spec, 300)
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        shutil.copy(f"{tiny_spec.source}/{name}", tmp_path)
    template = tmp_path / "chat_template.jinja"
    template.write_text("System: be brief.\n" + template.read_text())
    tokenizers = LocalTokenizers(PROBES)
    assert tokenizers.wait(str(tmp_path), endpoint, timeout_s=120) is None
    assert "differ from the engine's" in tokenizers.reasons[(str(tmp_path), endpoint.base_url, endpoint.model)]
    # Not here at all (a hub name nobody downloaded): the engine tokenizes, nothing is fetched.
    assert tokenizers.wait("nobody-here/no-such-model", endpoint, timeout_s=60) is None
    assert "OSError" in tokenizers.reasons[("nobody-here/no-such-model", endpoint.base_url, endpoint.model)]
    # Switched off: never read.
    assert LocalTokenizers(PROBES, enabled=False).wait(tiny_spec.source, endpoint, timeout_s=1) is None


def test_a_comparison_starts_without_asking_the_engine_to_tokenize(service, engine, tiny_spec):
    endpoint = engine.ensure(tiny_spec, 300)
    assert service.tokenizers.wait(tiny_spec.source, endpoint, timeout_s=120) is not None
    question = "Compute 31 + 12 - 5 + 7."  # not asked before: no cached prompt

    async def compare():
        request = parse_compare_request(question, tiny_spec.name, "32,48,96", ["l1_exact", "l1_max", "s1"], gold="45", seed=4, max_columns=24)
        return [s async for s in service.compare_stream(request)][-1]

    before = tokenize_requests(endpoint)
    final = run(compare())
    assert [g.phase for g in final.generations] == ["done"] * 9, [g.error for g in final.generations]
    assert all(g.prompt_tokens > 0 for g in final.generations)
    assert tokenize_requests(endpoint) == before  # 9 columns, 7 distinct prompts: none sent to /tokenize
