"""The real Gradio app driven through gradio_client: the named `compare` endpoint and bad input."""

from __future__ import annotations

import os

import pytest
from gradio_client import Client

from backend.service.trained_range import NOT_FLAGGED
from store import queries
from store.summary import run_summary

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def client(app_url):
    return Client(app_url, verbose=False)


def test_compare_endpoint_returns_generations_as_json(client, store):
    result = client.predict("Compute 20 + 22.", "l1-tiny", [32, 96], ["l1_max", "no_thinking"], "42", 5, api_name="/compare")
    generations = result["generations"]
    assert {(g["controller"], g["budget"]) for g in generations} == {("l1_max", 32), ("l1_max", 96), ("no_thinking", 32), ("no_thinking", 96)}
    for g in generations:
        assert g["phase"] == "done", g["error"]
        assert g["total_tokens"] == g["thinking_tokens"] + g["delimiter_tokens"] + g["answer_tokens"]
        assert g["cost_usd"] > 0
    with store.reader() as cur:
        assert queries.count_generations(cur, result["run_id"]) == 4


def test_the_verifier_argument_goes_to_a_search_that_names_none(client, store):
    # other_model "", each_on_its_model True, then the verifier: the oracle (the default would be the tiny PRM)
    result = client.predict("Compute 20 + 22.", "l1-tiny", [256], ["particles2"], "42", 5, "", True, "oracle", api_name="/compare")
    (generation,) = result["generations"]
    assert generation["controller"] == "particles2:l1_exact@oracle" and generation["phase"] == "done", generation["error"]
    assert generation["verifier_tokens"] == 0 and generation["search_tree"]  # the oracle reads nothing; the tree is kept
    with pytest.raises(Exception, match="verifier 'no-such-prm'"):
        client.predict("Compute 20 + 22.", "l1-tiny", [256], ["beam2x2"], "42", 5, "", True, "no-such-prm", api_name="/compare")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("", "l1-tiny", [64], ["s1"]), "the question is empty"),
        (("Q?", "l1-tiny", [0], ["s1"]), "budget 0: must be a positive whole number of tokens"),
        (("Q?", "l1-tiny", [9999], ["s1"]), "budget 9999: larger than the model's context of 2048 tokens"),
        (("Q?", "ghost/model-that-is-not-here", [64], ["s1"]), "ghost/model-that-is-not-here"),
        (("Q?", "not a model", [64], ["s1"]), "unknown model 'not a model'"),
        (("Q?", "l1-tiny", [64], ["telepathy"]), "unknown controller 'telepathy'"),
    ],
)
def test_bad_input_gets_a_clear_message_and_the_app_keeps_serving(client, store, args, message):
    with store.reader() as cur:
        before = queries.count_generations(cur)
    with pytest.raises(Exception, match=message):
        client.predict(*args, "", None, api_name="/compare")
    with store.reader() as cur:
        assert queries.count_generations(cur) == before  # nothing half-written
    # Still serving.
    assert client.predict("Compute 1 + 2.", "l1-tiny", [16], ["hard_cap"], "3", 1, api_name="/compare")["generations"][0]["phase"] == "done"


def test_sweep_endpoint_runs_stores_and_resumes(client, store, registry):
    args = (["l1-tiny"], "arith", ["l1_exact", "s1"], [32, 64], 2, 2, 3, "api-sweep")
    summary = client.predict(*args, api_name="/sweep")
    assert [(g["controller"], g["budget"]) for g in summary] == [("l1_exact", 32), ("l1_exact", 64), ("s1", 32), ("s1", 64)]
    assert all((g["questions"], g["samples"]) == (2, 2) for g in summary)
    with store.reader() as cur:
        assert queries.count_generations(cur, "api-sweep") == 16
        # The store's numbers, and each row flagged where its budget lies outside l1-tiny's trained range (32 is below 64-512).
        assert run_summary(cur, "api-sweep") == [{k: v for k, v in g.items() if k not in NOT_FLAGGED} for g in summary]
    low, high = registry.resolve("l1-tiny").trained_budgets
    assert [g["outside_trained_range"] for g in summary] == ["below" if g["budget"] < low else "above" if g["budget"] > high else None for g in summary]
    assert [g["trained_range_note"] for g in summary if g["outside_trained_range"]] == [
        f"N = {g['budget']} tokens: {g['outside_trained_range']} l1-tiny's trained range ({low}-{high})" for g in summary if g["outside_trained_range"]]
    assert client.predict(*args, api_name="/sweep") == summary  # resumed: nothing new to generate
    with store.reader() as cur:
        assert queries.count_generations(cur, "api-sweep") == 16


def test_sweep_endpoint_refuses_bad_input(client):
    with pytest.raises(Exception, match="not inside a dataset folder the dashboard may read"):
        client.predict(["l1-tiny"], "/nowhere/questions.jsonl", ["l1_exact"], [32], 2, 1, 0, "", api_name="/sweep")
    with pytest.raises(Exception, match="no such file: nowhere.jsonl"):
        client.predict(["l1-tiny"], "nowhere.jsonl", ["l1_exact"], [32], 2, 1, 0, "", api_name="/sweep")
    with pytest.raises(Exception, match="--samples 0"):
        client.predict(["l1-tiny"], "arith", ["l1_exact"], [32], 2, 0, 0, "", api_name="/sweep")


def test_engine_status_endpoint_says_whether_the_engine_is_ready(client, engine):
    """Scripts (bench/load_compare.py) ask it before they start; it is also each session's cheap first request."""
    status = client.predict(api_name="/engine_status")
    assert (status["state"], status["ready"]) == ("ready", True)
    engines = {e["model"]: e for e in status["engines"]}  # one entry per engine (other tests may have started the base's)
    assert engines["l1-tiny"]["state"] == "ready" and engines["l1-tiny"]["message"] == engine.status().message
    assert engines["l1-tiny"]["restarts"] == engine.status().restarts and engines["l1-tiny"]["role"] == "generate"
    assert 1.0 < engines["l1-tiny"]["memory_gib"] < 6.0  # measured: the server's process group
    assert "l1-tiny" in status["model"]


def test_the_engine_yields_the_cpu_to_the_app(engine):
    """The shared engine runs at the default engine_nice, 5: its server and every process it started."""
    import psutil

    server = psutil.Process(engine.pid())
    processes = [server, *server.children(recursive=True)]
    assert len(processes) >= 2  # vLLM's API server and its engine core at least
    assert {p.nice() for p in processes} == {5}
    assert os.getpriority(os.PRIO_PROCESS, os.getpid()) == 0  # the app (this process) keeps its own
