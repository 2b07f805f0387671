"""Chat-API endpoints against a local stub server (tests/chat_stub.py).

Hosted APIs cannot be reached from the test machines: the stub stands in for them at the HTTP
boundary, answering in the documented OpenAI Chat Completions shapes (reasoning fields, usage
details, streaming and not, 429 with Retry-After, 500, a slow answer, a malformed body). Everything
on this side of it is the real app: the factory, the service, the openai SDK, DuckDB.
"""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import pytest

from backend.errors import InputError
from backend.factory import open_app
from backend.service.audit import FOLLOWS
from backend.service.compare import parse_compare_request
from backend.service.sweep_plan import parse_sweep_request
from backend.settings import AppSettings

KEY = "-sk-stub-" + secrets.token_hex(12)  # starts with "-", as random keys may
KEY_ENV = "BL_STUB_KEY"


def endpoints_toml(base_url: str) -> str:
    common = f'base_url = "{base_url}"\napi_key_env = "{KEY_ENV}"\ntimeout_s = 1\nmax_retries = 2\nbudgets = [16, 32, 64]\n'
    return (f'[endpoints.stub]\nmodel = "obey"\nknob = "vllm_thinking_budget"\nprice_in_per_m = 1.0\nprice_out_per_m = 10.0\n{common}\n'
            f'[endpoints.narrow]\nmodel = "obey"\nknob = "llamacpp_thinking_budget"\nmax_concurrency = 2\n{common}\n'
            f'[endpoints.paced]\nmodel = "obey"\nknob = "sglang_thinking_budget"\nmax_requests_per_s = 5\n{common}\n'
            f'[endpoints.plain]\nmodel = "obey"\nknob = "none"\n{common}\n'
            f'[endpoints.nostream]\nmodel = "obey"\nknob = "vllm_thinking_budget"\nstream = false\n{common}\n'
            f'[endpoints.nokey]\nmodel = "obey"\nknob = "none"\nbase_url = "{base_url}"\napi_key_env = "BL_UNSET_KEY_VARIABLE"\n')


@pytest.fixture(scope="module")
def stub(chat_stub):
    return chat_stub


@pytest.fixture(scope="module")
def chat_app(stub, tmp_path_factory):
    """The app as the factory builds it, with the stub's endpoints and no served model in use."""
    root = tmp_path_factory.mktemp("chat")
    (root / "endpoints.toml").write_text(endpoints_toml(stub.base_url))
    settings = AppSettings(db=str(root / "store.duckdb"), data_dir=str(root), export_dir=str(root / "exports"), answer_max_tokens=32,
                           endpoints=str(root / "endpoints.toml"))
    with open_app(settings, env={KEY_ENV: KEY}, shell=True) as app:
        yield app


@pytest.fixture()
def fresh(stub):
    stub.reset()
    return stub


def compare(service, model: str, controllers: list[str], budgets: list[int], other_model: str | None = None) -> list[dict]:
    request = parse_compare_request("What is 6 * 7?", model, budgets, controllers, gold="42", seed=1, other_model=other_model, max_columns=24)
    return asyncio.run(service.compare(request))["generations"]


def stored(app, sql: str, params: list) -> list[tuple]:
    app.store.flush()
    with app.store.reader() as cur:
        return cur.execute(sql, params).fetchall()


@pytest.mark.parametrize("endpoint", ["stub", "nostream"])
def test_api_budget_sends_the_knob_and_keeps_the_reported_counts(chat_app, fresh, endpoint):
    result = asyncio.run(chat_app.service.sweep(parse_sweep_request(models=f"obey@{endpoint}", dataset="arith", controllers="api_budget,hard_cap,l1_exact",
                                                                    budgets="16,32", samples=1, limit=2, run=f"counts-{endpoint}")))
    assert result.progress.complete == 12 and result.progress.failed == 0
    rows = stored(chat_app, "SELECT controller, budget, thinking_tokens, answer_tokens, total_tokens, token_counts, finish_reason "
                            "FROM generations WHERE run_id = ? ORDER BY controller, budget", [f"counts-{endpoint}"])
    by = {(r[0], r[1]): r for r in rows}
    assert {r[5] for r in rows} == {"reported"}
    for budget in (16, 32):
        assert by[("api_budget", budget)][2:5] == (budget, 5, budget + 5)  # "</think>" and the 4 words of "The answer is \\boxed{42}."
        assert by[("hard_cap", budget)][4] == budget and by[("hard_cap", budget)][6] == "length"  # max_completion_tokens = N cuts it
    # no knob: the stub's own 64 tokens of thinking, within the L1 prompt's cap of max(2N, N + answer_max_tokens)
    assert by[("l1_exact", 16)][2] == 48 and by[("l1_exact", 32)][2] == 64
    bodies = fresh.bodies("obey")
    assert sorted(b["thinking_token_budget"] for b in bodies if "thinking_token_budget" in b) == [16, 16, 32, 32]
    assert sorted(b["max_completion_tokens"] for b in bodies if "thinking_token_budget" not in b and "Think for" not in b["messages"][-1]["content"]) == [16, 16, 32, 32]
    assert all("Think for 16 tokens." in b["messages"][-1]["content"] or "Think for 32" in b["messages"][-1]["content"]
               for b in bodies if "Think for" in b["messages"][-1]["content"])
    assert all(b.get("seed") is not None and b["temperature"] == 0.6 and bool(b.get("stream")) == (endpoint == "stub") for b in bodies)


def test_a_streamed_comparison_refuses_what_a_chat_api_cannot_do(chat_app, fresh):
    generations = compare(chat_app.service, "obey@stub", ["api_budget", "s1", "no_thinking", "maj2:api_budget"], [16])
    card = {g["controller"]: g for g in generations}
    assert card["api_budget"]["phase"] == "done" and card["api_budget"]["thinking_tokens"] == 16 and card["api_budget"]["token_counts"] == "reported"
    assert card["api_budget"]["ttft_s"] is not None and card["api_budget"]["thinking_text"].startswith("step step")
    assert card["api_budget"]["extracted_answer"] == "42" and card["api_budget"]["correct"] is True
    # cost at the endpoint's prices ($1 / $10 per 1M): prompt and output tokens as reported
    g = card["api_budget"]
    assert g["cost_usd"] == pytest.approx((g["prompt_tokens"] * 1.0 + g["total_tokens"] * 10.0) / 1e6)
    assert "continues the thinking token by token" in card["s1"]["error"] and "s1 on obey@stub" in card["s1"]["error"]
    assert "prefills a closed thinking block" in card["no_thinking"]["error"]
    assert card["maj2:api_budget"]["phase"] == "done" and len(card["maj2:api_budget"]["samples"]) == 2
    assert sorted(b["thinking_token_budget"] for b in fresh.bodies("obey")) == [8, 8, 16]  # the group: two samples at N/2
    assert all(b["stream"] and b["stream_options"] == {"include_usage": True} for b in fresh.bodies("obey"))
    run_id = stored(chat_app, "SELECT run_id FROM generations WHERE controller = 'api_budget' ORDER BY created_at DESC LIMIT 1", [])[0][0]
    rows = stored(chat_app, "SELECT controller, model FROM generations WHERE run_id = ? ORDER BY controller", [run_id])
    assert rows == [("api_budget", "obey@stub"), ("maj2:api_budget", "obey@stub"), ("maj2:api_budget", "obey@stub")]  # refused columns store nothing


def test_429_is_retried_after_its_retry_after_and_500_after_backoff(chat_app, fresh):
    generations = compare(chat_app.service, "ratelimited@stub", ["api_budget"], [16]) + compare(chat_app.service, "flaky@stub", ["api_budget"], [16])
    assert [g["phase"] for g in generations] == ["done", "done"]
    limited = [t for t, body, _ in fresh.requests if body["model"] == "ratelimited"]
    assert len(limited) == 2 and limited[1] - limited[0] >= 0.9  # Retry-After: 1 honoured
    assert len(fresh.bodies("flaky")) == 2


@pytest.mark.parametrize(("ref", "message", "requests"), [
    ("down@stub", "endpoint stub: HTTP 500 after 3 tries: The server had an error while processing your request", 3),
    ("slow@stub", "endpoint stub: no answer within 1 s (3 tries)", 3),
    ("malformed@stub", "endpoint stub: the answer is not a Chat Completion stream", 1),  # JSON where events were asked for
    ("malformed@nostream", "endpoint nostream: the answer is not a Chat Completion", 1),
])
def test_failures_are_shown_with_their_reason_and_nothing_is_half_stored(chat_app, fresh, ref, message, requests):
    before = stored(chat_app, "SELECT count(*) FROM generations", [])[0][0]
    generations = compare(chat_app.service, ref, ["api_budget"], [16])
    assert generations[0]["phase"] == "error" and message in generations[0]["error"]
    assert len(fresh.bodies(ref.split("@")[0])) == requests
    assert stored(chat_app, "SELECT count(*) FROM generations", [])[0][0] == before
    # the app keeps serving
    assert compare(chat_app.service, "obey@stub", ["api_budget"], [16])[0]["phase"] == "done"


def test_a_sweep_stores_no_half_group_when_an_endpoint_fails(chat_app, fresh):
    outcome = asyncio.run(chat_app.service.sweep(parse_sweep_request(models="down@stub", dataset="arith", controllers="maj2:api_budget",
                                                                     budgets="32", samples=1, limit=2, run="stub-down")))
    assert outcome.progress.failed == 2 and outcome.progress.complete == 0
    assert "HTTP 500 after 3 tries" in outcome.progress.last_error
    assert stored(chat_app, "SELECT count(*) FROM generations WHERE run_id = 'stub-down'", []) == [(0,)]


def test_concurrency_and_request_rate_limits_hold(chat_app, fresh):
    fresh.delay_s = 0.3
    asyncio.run(chat_app.service.sweep(parse_sweep_request(models="obey@narrow", dataset="arith", controllers="api_budget", budgets="16",
                                                           samples=1, limit=6, concurrency=16, run="stub-narrow")))
    assert fresh.max_in_flight["obey"] == 2  # max_concurrency = 2, though the sweep allows 16
    assert all(b["thinking_budget_tokens"] == 16 for b in fresh.bodies("obey"))
    fresh.reset()
    asyncio.run(chat_app.service.sweep(parse_sweep_request(models="obey@paced", dataset="arith", controllers="api_budget", budgets="16",
                                                           samples=1, limit=6, concurrency=16, run="stub-paced")))
    arrivals = sorted(t for t, _, _ in fresh.requests)
    assert len(arrivals) == 6 and arrivals[-1] - arrivals[0] >= 0.95  # 5 requests/s: 6 starts span 1 s
    assert all(b["custom_params"] == {"thinking_budget": 16} for b in fresh.bodies("obey"))


def test_inline_thinking_without_a_thinking_count_is_estimated(chat_app, fresh):
    asyncio.run(chat_app.service.sweep(parse_sweep_request(models="inline@nostream", dataset="arith", controllers="api_budget", budgets="32",
                                                           samples=1, limit=1, run="stub-inline")))
    (thinking, answer, total, counts, text), = stored(chat_app, "SELECT thinking_tokens, answer_tokens, total_tokens, token_counts, thinking_text "
                                                                "FROM generations WHERE run_id = 'stub-inline'", [])
    assert counts == "estimated" and total == 32 + 5 and text.startswith("step step") and "</think>" not in text
    assert abs(thinking - 32) <= 3 and thinking + answer == total


def test_a_thinking_count_of_0_next_to_a_thinking_text_is_not_taken_as_reported(chat_app, fresh):
    asyncio.run(chat_app.service.sweep(parse_sweep_request(models="uncounted@stub", dataset="arith", controllers="api_budget", budgets="32",
                                                           samples=1, limit=1, run="stub-uncounted")))
    (thinking, answer, counts), = stored(chat_app, "SELECT thinking_tokens, answer_tokens, token_counts FROM generations WHERE run_id = 'stub-uncounted'", [])
    # split by the streamed chunks: 32 of thinking, 4 of answer ("</think>" sends no chunk), 37 in all
    assert counts == "estimated" and (thinking, answer) == (33, 4)


def test_a_web_request_names_only_configured_endpoints_and_keys_come_from_the_environment(chat_app):
    service = chat_app.service
    assert "obey@stub" in service.model_names() and "obey@narrow" in service.model_names()
    with pytest.raises(InputError, match="no endpoint named 'evil'"):
        compare(service, "gpt-4o@evil", ["api_budget"], [16])
    with pytest.raises(InputError, match="BL_UNSET_KEY_VARIABLE that should hold its key is not set"):
        compare(service, "obey@nokey", ["l1_exact"], [16])
    refused = compare(service, "obey@plain", ["api_budget"], [16])[0]
    assert "has no budget knob" in refused["error"]


def test_the_audit_calls_a_knob_the_stub_ignores_ignored_and_one_it_obeys_enforced(chat_app, fresh):
    for model, run in (("ignore@stub", "audit-ignore"), ("obey@stub", "audit-obey")):
        asyncio.run(chat_app.service.sweep(parse_sweep_request(models=model, dataset="arith", controllers="api_budget,l1_exact",
                                                               budgets="16,32,64", samples=1, limit=20, run=run)))  # the audit's minimum
    ignored = {v["controller"]: v for v in chat_app.service.audit("audit-ignore")["verdicts"]}
    obeyed = {v["controller"]: v for v in chat_app.service.audit("audit-obey")["verdicts"]}
    assert ignored["api_budget"]["verdict"] == "ignored" and ignored["api_budget"]["over_share"] == 1.0
    assert ignored["api_budget"]["slope"] == pytest.approx(0.0) and ignored["api_budget"]["token_counts"] == "reported"
    assert obeyed["api_budget"]["verdict"] == "enforced" and obeyed["api_budget"]["slope"] == pytest.approx(1.0)
    # the stub thinks 64 tokens whatever the L1 prompt says (cut at 48 by the cap at N = 16): over N at 16 and 32
    assert obeyed["l1_exact"]["verdict"] in (FOLLOWS, "ignored") and obeyed["l1_exact"]["over_share"] == pytest.approx(2 / 3)
    budgets = {(r["controller"], r["budget"]): r for r in chat_app.service.audit("audit-obey")["budgets"]}
    assert budgets[("api_budget", 32)]["mean_thinking"] == 32 and budgets[("l1_exact", 16)]["over_share"] == 1.0
    with pytest.raises(InputError, match="no such run"):
        chat_app.service.audit("audit-none")


def test_the_key_never_reaches_the_store_the_logs_the_exports_or_an_error(chat_app, fresh, tmp_path):
    leaky = compare(chat_app.service, "leaky@stub", ["api_budget"], [16])[0]
    assert fresh.requests[-1][2]["Authorization"] == f"Bearer {KEY}"  # it was sent, and echoed back by the provider
    assert "HTTP 401" in leaky["error"] and "***" in leaky["error"] and KEY not in leaky["error"]
    asyncio.run(chat_app.service.sweep(parse_sweep_request(models="obey@stub", dataset="arith", controllers="api_budget", budgets="16",
                                                           samples=1, limit=1, run="stub-key")))
    from store.analytics import Filters

    export = chat_app.service.analytics.export(Filters(), tmp_path, "csv")
    chat_app.store.flush()
    data_dir = Path(chat_app.settings.data_dir)
    files = [p for p in [*data_dir.rglob("*"), export] if p.is_file()]
    assert any(p.suffix == ".duckdb" for p in files)
    for path in files:
        assert KEY.encode() not in path.read_bytes(), f"the key is in {path}"
    assert KEY not in repr(chat_app.settings.public_dict()) and KEY not in repr(chat_app.service.endpoints)
