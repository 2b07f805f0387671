"""Verifier-guided methods on the real engine (issue 33): prmK / pvoteK, beam search and particle
filtering spend at most N policy tokens, store their tree whole, and reopen it from a share link;
a verifier engine that dies fails the card with its reason and stores nothing.

The policy is the shipped l1-tiny served by vLLM on CPU; the verifiers are the arith oracle and the
shipped tiny-prm (served by the app's engine pool with vLLM's pooling runner)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time

import httpx

import pytest

from backend.controllers.config import ControllerConfig
from backend.controllers.live import LiveGeneration
from backend.controllers.registry import make_controller
from backend.controllers.search import prompt_budget
from backend.controllers.session import ModelSession
from backend.evaluation.arith import make_problems
from backend.evaluation.verifiers import OracleVerifier
from backend.service.compare import parse_compare_request
from backend.service.records import settle
from backend.serving.client import EngineClient
from backend.serving.endpoints import VerifierEndpoint
from backend.serving.sampling import Sampling
from backend.serving.tokenizer import LocalTokenizer
from tests.conftest import run

pytestmark = pytest.mark.engine

QUESTION = make_problems(seed=4242, n=1, min_ops=2)[0]
GOLD = str(QUESTION.answer)


async def _search(engine, spec, name: str, budget: int, seed: int = 3) -> LiveGeneration:
    endpoint = await asyncio.to_thread(engine.ensure, spec, 300)
    async with EngineClient(endpoint, timeout_s=120) as client:
        session = await ModelSession.open(client, live=False, tokenizer=LocalTokenizer.read(spec.source))
        controller = make_controller(name, ControllerConfig())
        controller.verifier = OracleVerifier()
        live = LiveGeneration(controller=controller.name, budget=budget, budget_kind=controller.budget_kind)
        await controller.run(session, QUESTION.question, budget, Sampling(0.8, 0.95, seed), live)
        await settle(live, GOLD, 10, QUESTION.question)
        return live


def _check_tree(live: LiveGeneration) -> None:
    """Parents come first, depths follow them, the tree's tokens are the search's, and the chosen
    nodes are one path from the root whose text is the answer's."""
    nodes = live.search_tree
    assert nodes and [n["id"] for n in nodes] == list(range(len(nodes)))
    for node in nodes:
        if node["parent"] is None:
            assert node["depth"] == 0
        else:
            assert node["parent"] < node["id"] and node["depth"] == nodes[node["parent"]]["depth"] + 1
        assert 0.0 <= node["score"] <= 1.0 and node["oracle"] in (True, False)
    assert sum(n["tokens"] for n in nodes) == live.total_tokens
    chosen = [n for n in nodes if n["chosen"]]
    assert [n["depth"] for n in chosen] == list(range(len(chosen)))
    assert all(b["parent"] == a["id"] for a, b in zip(chosen, chosen[1:]))
    thinking, _, answer = "".join(n["text"] for n in chosen).partition("</think>")
    assert (thinking, answer) == (live.thinking_text, live.answer_text)


@pytest.mark.parametrize("name, budget", [("beam2x2:l1_exact@oracle", 512), ("particles4@oracle", 384), ("beam4x4@oracle", 300)])
def test_a_search_spends_at_most_n_policy_tokens_and_keeps_its_tree(engine, tiny_spec, name, budget):
    live = run(_search(engine, tiny_spec, name, budget))
    assert 0 < live.total_tokens <= budget, f"{name} at N={budget} generated {live.total_tokens}"
    assert live.verifier_tokens == 0  # the oracle reads nothing
    _check_tree(live)
    paths = 4 if name.startswith(("beam2x2", "particles4")) else 16
    assert live.inner_budget == budget // paths and f"Think for {prompt_budget(budget // paths)} tokens" in live.prompt
    kept = [n for n in live.search_tree if n["kept"]]
    assert len(kept) < len(live.search_tree) or name.startswith("particles"), "a beam search prunes"
    # with the oracle as verifier, every kept node below the root level is one the oracle passed,
    # unless nothing better was left (then all its siblings failed too)
    for node in kept:
        if not node["oracle"] and node["parent"] is not None:
            siblings = [n for n in live.search_tree if n["parent"] == node["parent"]]
            assert not any(s["oracle"] for s in siblings if not s["kept"]), "a wrong step was kept over a right one"


def test_a_path_that_thinks_to_its_limit_is_closed_and_answers_within_it(engine, tiny_spec):
    # B = 96 per particle and the prompt says 86, but a thinking path is closed once 21 tokens are left
    # of B (an answer's room and </think>): the app writes </think>, the model its answer, inside N.
    live = run(_search(engine, tiny_spec, "particles2@oracle", 192))
    assert 0 < live.total_tokens <= 192
    _check_tree(live)
    closed = [n for n in live.search_tree if n["closed"]]
    assert closed and all(n["text"].startswith("</think>") for n in closed)
    assert any(n["closed"] for n in live.search_tree if n["chosen"]), "the chosen path was closed by the app"
    assert live.answer_text.strip() and live.extracted_answer is not None, live.answer_text


def test_prm_k_scores_each_sample_and_picks_the_best_scored(engine, tiny_spec):
    live = run(_search(engine, tiny_spec, "prm4:hard_cap@oracle", 512))
    assert sum(s.total_tokens for s in live.samples) == live.total_tokens <= 512  # hard_cap: a guaranteed inner
    assert all(s.search_tree and s.verifier_score in (0.0, 1.0) for s in live.samples)
    answered = [s for s in live.samples if s.extracted_answer]
    chosen = [s for s in live.samples if s.chosen]
    if answered:
        assert len(chosen) == 1 and chosen[0].verifier_score == max(s.verifier_score for s in answered)


def test_a_comparison_with_the_learned_prm_stores_the_tree_and_reopens_it(service):
    request = parse_compare_request(QUESTION.question, "l1-tiny", "256", "beam2x2,prm4:l1_exact", GOLD, 7, max_columns=24)

    async def compare():
        return await service.compare(request)

    result = run(compare())
    cards = {g["controller"]: g for g in result["generations"]}
    assert set(cards) == {"beam2x2:l1_exact@tiny-prm", "prm4:l1_exact@tiny-prm"}, cards.keys()
    for card in cards.values():
        assert card["error"] is None, card["error"]
        assert card["verifier_tokens"] > 0  # the PRM read the steps: billed apart
    beam = cards["beam2x2:l1_exact@tiny-prm"]
    assert beam["total_tokens"] <= 256 and beam["search_tree"]
    reopened = service.stored_comparison(result["run_id"])
    stored = {c["controller"]: c for c in reopened["generations"]}
    tree = stored["beam2x2:l1_exact@tiny-prm"]["search_tree"]
    assert [n["id"] for n in tree] == [n["id"] for n in beam["search_tree"]]
    assert [n["score"] for n in tree] == [n["score"] for n in beam["search_tree"]]
    assert all(n["oracle"] in (True, False) for n in tree)  # the oracle's verdicts, stored with the PRM's scores
    samples = stored["prm4:l1_exact@tiny-prm"]["samples"]
    assert len(samples) == 4 and all(s["search_tree"] for s in samples)
    assert json.dumps(tree)  # JSON all the way


def test_a_killed_verifier_fails_the_card_with_its_reason_and_stores_nothing(service, store):
    """The PRM engine is killed while a beam search waits on it: the card fails and says why; the
    comparison's other card, which needs no verifier, is stored; the search stores nothing."""
    request = parse_compare_request(QUESTION.question, "l1-tiny", "384", "beam4x4,l1_exact", GOLD, 11, max_columns=24)
    prm = service.resolve_model("tiny-prm")

    async def compare_and_kill():
        killed = False
        last = None
        async for snapshot in service.compare_stream(request):
            last = snapshot
            beam = next((g for g in snapshot.generations if g.controller.startswith("beam")), None)
            if not killed and beam is not None and beam.search_tree:
                os.killpg(service.engines.engine_of(prm.name, "score").pid(), signal.SIGKILL)
                killed = True
        return last, killed

    last, killed = run(compare_and_kill())
    assert killed
    cards = {g.controller: g for g in last.generations}
    beam = cards["beam4x4:l1_exact@tiny-prm"]
    assert beam.error and "tiny-prm" in beam.error, beam.error
    with store.reader() as cur:
        rows = cur.execute("SELECT controller FROM generations WHERE run_id = ?", [last.run_id]).fetchall()
    assert rows == [("l1_exact",)]


@contextlib.contextmanager
def _answering_prm(service, timeout_s: float = 300.0):
    """A lease on the pool's tiny-prm engine once it answers (the test before this one killed it: until its
    supervisor has restarted it, the pool still hands out the dead one's address)."""
    spec, deadline = service.resolve_model("tiny-prm"), time.monotonic() + timeout_s
    while True:
        with service.engines.lease(spec, "request", role="score", timeout_s=timeout_s) as endpoint:
            try:
                httpx.get(f"{endpoint.base_url}/health", timeout=5).raise_for_status()
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
            else:
                yield endpoint
                return
        time.sleep(2)


def test_a_prm_served_elsewhere_is_a_verifier_from_the_endpoints_file(service):
    """A [verifiers.NAME] entry of the endpoints file: its /pooling is asked, nothing is leased. Here the
    "elsewhere" is the pool's own tiny-prm engine, reached by its address and key as a remote one would be;
    the test holds a lease on it so that the pool keeps it up (as a remote server would stay up)."""
    with _answering_prm(service) as endpoint:
        service.remote_verifiers["far-prm"] = VerifierEndpoint("far-prm", endpoint.base_url, endpoint.model, 448, "FAR_PRM_KEY")
        service.verifier_keys["far-prm"] = endpoint.api_key
        try:
            assert "far-prm" in service.verifier_names()
            request = parse_compare_request(QUESTION.question, "l1-tiny", "256", "prm2:l1_exact@far-prm", GOLD, 5, max_columns=24)
            (card,) = run(service.compare(request))["generations"]
            assert card["error"] is None, card["error"]
            assert card["controller"] == "prm2:l1_exact@far-prm" and card["verifier_tokens"] > 0
            assert all(s["verifier_score"] is not None for s in card["samples"])
        finally:
            service.remote_verifiers.pop("far-prm")
            service.verifier_keys.pop("far-prm")
