"""Each controller against the real vLLM engine (CPU) serving the shipped tiny model.

Token counts are checked against the server's own accounting (the `usage` of a
non-streamed request with the same seed), and each controller's budget rule
is checked on real generations.
"""

from __future__ import annotations

import httpx
import pytest

from backend.controllers import prompts
from backend.controllers.config import ControllerConfig
from backend.controllers.live import LiveGeneration
from backend.controllers.registry import make_controller
from backend.controllers.session import BudgetError
from backend.errors import InputError
from backend.service.compare import check_budgets_fit
from backend.serving.sampling import Sampling
from tests.conftest import run

pytestmark = pytest.mark.engine

QUESTION = "Compute 37 + 48 - 12 + 5."
CONFIG = ControllerConfig(s1_max_waits=1000, answer_max_tokens=64, unconstrained_max_tokens=512)


async def generate(session_factory, controller: str, budget: int, seed: int = 0, config: ControllerConfig = CONFIG) -> LiveGeneration:
    live = LiveGeneration(controller=controller, budget=budget)
    async with session_factory() as session:
        await make_controller(controller, config).run(session, QUESTION, budget, Sampling(0.6, 0.95, seed), live)
    return live


def assert_consistent(live: LiveGeneration) -> None:
    assert live.error is None
    assert live.phase == "saving"  # generation over; the service grades and stores next
    assert live.total_tokens == live.thinking_tokens + live.delimiter_tokens + live.answer_tokens
    assert live.ttft_s is not None and live.latency_s >= live.ttft_s
    assert live.finish_reason in ("stop", "length")


@pytest.mark.parametrize("controller", ["l1_exact", "l1_max"])
def test_l1_prompt_is_sent_and_the_split_is_consistent(session_factory, controller):
    live = run(generate(session_factory, controller, 64))
    assert_consistent(live)
    builder = prompts.l1_exact_prompt if controller == "l1_exact" else prompts.l1_max_prompt
    assert live.prompt == builder(QUESTION, 64)
    assert live.total_tokens <= 2 * 64 + CONFIG.answer_max_tokens
    if live.delimiter_tokens:
        assert "</think>" not in live.thinking_text and "</think>" not in live.answer_text


def test_token_counts_match_the_server_usage(session_factory, engine, tiny_spec):
    """The streamed, split count equals the server's completion_tokens for the same seeded request."""
    live = run(generate(session_factory, "hard_cap", 200, seed=7))
    endpoint = engine.ensure(tiny_spec, 300)
    headers = {"Authorization": f"Bearer {endpoint.api_key}"}
    ids = httpx.post(f"{endpoint.base_url}/tokenize", headers=headers, json={"model": endpoint.model, "messages": prompts.chat_messages(prompts.base_prompt(QUESTION))}).json()["tokens"]
    body = {"model": endpoint.model, "prompt": ids, "max_tokens": 200, "temperature": 0.6, "top_p": 0.95, "seed": 7}
    usage = httpx.post(f"{endpoint.base_url}/v1/completions", headers=headers, json=body, timeout=120).json()["usage"]
    assert live.prompt_tokens == usage["prompt_tokens"]
    assert live.total_tokens == usage["completion_tokens"]


@pytest.mark.parametrize("budget", [8, 24, 64])
def test_hard_cap_never_exceeds_the_budget(session_factory, budget):
    live = run(generate(session_factory, "hard_cap", budget, seed=budget))
    assert_consistent(live)
    assert live.total_tokens <= budget
    if live.finish_reason == "length":
        assert live.total_tokens == budget


@pytest.mark.parametrize("budget", [16, 48, 200])
def test_s1_thinks_exactly_n_tokens_when_waits_are_allowed(session_factory, budget):
    live = run(generate(session_factory, "s1", budget, seed=budget))
    assert_consistent(live)
    assert live.thinking_tokens == budget  # never more, and pushed to N when it stops early
    assert live.answer_text.startswith("\n\n" + CONFIG.s1_answer_prefix)
    assert live.delimiter_tokens == 1 and live.answer_tokens >= 1


def test_s1_appends_wait_when_the_model_stops_early(session_factory):
    # The tiny model's thinking is far shorter than 400 tokens, so s1 must have suppressed its end.
    live = run(generate(session_factory, "s1", 400, seed=3))
    assert live.waits_used >= 1
    assert live.thinking_text.count(CONFIG.s1_wait_text) >= live.waits_used
    assert live.thinking_tokens == 400


def test_s1_without_waits_stops_at_the_models_own_end(session_factory):
    no_waits = ControllerConfig(s1_max_waits=0, answer_max_tokens=64)
    live = run(generate(session_factory, "s1", 400, seed=3, config=no_waits))
    assert_consistent(live)
    assert live.waits_used == 0
    assert 0 < live.thinking_tokens < 400


def test_no_thinking_prefills_a_closed_block(session_factory):
    live = run(generate(session_factory, "no_thinking", 48))
    assert_consistent(live)
    assert live.thinking_tokens == 0 and live.thinking_text == ""
    assert 0 < live.answer_tokens <= 48


def test_unconstrained_runs_to_its_natural_end(session_factory):
    live = run(generate(session_factory, "unconstrained", 1))
    assert_consistent(live)
    assert live.total_tokens <= CONFIG.unconstrained_max_tokens


def test_budget_larger_than_the_context_is_refused(session_factory):
    async def check():
        async with session_factory() as session:
            with pytest.raises(InputError, match="budget 4096: larger than the model's context of 2048 tokens"):
                check_budgets_fit(session, [64, 4096])
            live = LiveGeneration(controller="s1", budget=2000)
            with pytest.raises(BudgetError, match="budget 2000: does not fit the model's context"):
                await make_controller("s1", CONFIG).run(session, QUESTION, 2000, Sampling(seed=0), live)
            with pytest.raises(BudgetError, match="question too long"):
                await make_controller("hard_cap", CONFIG).run(session, "1 + " * 3000 + "1", 16, Sampling(seed=0), LiveGeneration("hard_cap", 16))

    run(check())
