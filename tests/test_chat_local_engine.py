"""The chat-endpoint path against a real server: the test engine's own /v1/chat/completions.

The shared vLLM engine (CPU, l1-tiny, started with its reasoning parser) is entered in an
endpoints file as ``l1-tiny@local``, so the same model answers through both paths: token ids
(``/v1/completions``, counts counted from the ids) and chat (``/v1/chat/completions`` through the
openai SDK, counts reported by vLLM's usage). Plus the adherence audit on that engine, and the
dashboard's Compare with an endpoint model's cards next to the served model's.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest

from backend.factory import open_app
from backend.service.sweep_plan import parse_sweep_request
from tests.conftest import STUB_KEY, TINY_MODEL

ENGINE_KEY_ENV = "BL_LOCAL_ENGINE_KEY"


@pytest.fixture(scope="module")
def local_app(engine, tiny_spec, app_settings, tmp_path_factory):
    """An app over the shared engine whose endpoints file names that engine's chat endpoint."""
    endpoint = engine.ensure(tiny_spec, 300)
    root = tmp_path_factory.mktemp("local-chat")
    (root / "endpoints.toml").write_text(
        f'[endpoints.local]\nbase_url = "{endpoint.base_url}/v1"\nmodel = "{endpoint.model}"\napi_key_env = "{ENGINE_KEY_ENV}"\n'
        'knob = "vllm_thinking_budget"\nbudgets = [64, 128, 256]\nmax_concurrency = 64\nreturn_token_ids = true\n\n'
        f'[endpoints.local-plain]\nbase_url = "{endpoint.base_url}/v1"\nmodel = "{endpoint.model}"\napi_key_env = "{ENGINE_KEY_ENV}"\n'
        'knob = "vllm_thinking_budget"\nmax_concurrency = 64\n')
    settings = dataclasses.replace(app_settings, db=str(root / "store.duckdb"), endpoints=str(root / "endpoints.toml"))
    with open_app(settings, env={ENGINE_KEY_ENV: endpoint.api_key}, engine=engine, shell=True) as app:
        yield app, endpoint.model


def rows(app, run_id: str) -> list[dict]:
    app.store.flush()
    with app.store.reader() as cur:
        result = cur.execute("SELECT question_id, budget, correct, thinking_tokens, answer_tokens, total_tokens, token_counts FROM generations "
                             "WHERE run_id = ? ORDER BY question_id, budget", [run_id])
        names = [c[0] for c in result.description]
        return [dict(zip(names, r)) for r in result.fetchall()]


def test_a_sweep_through_the_chat_endpoint_matches_the_token_id_path(local_app):
    app, served = local_app
    for model, run in ((TINY_MODEL, "chat-vs-ids-tokens"), (f"{served}@local", "chat-vs-ids-chat"), (f"{served}@local-plain", "chat-vs-ids-plain")):
        outcome = asyncio.run(app.service.sweep(parse_sweep_request(models=model, dataset="arith", controllers="l1_exact", budgets="64,128",
                                                                    samples=1, limit=20, seed=3, run=run)))
        assert outcome.progress.complete == 40 and outcome.progress.failed == 0
    by_ids, by_chat, by_plain = rows(app, "chat-vs-ids-tokens"), rows(app, "chat-vs-ids-chat"), rows(app, "chat-vs-ids-plain")
    assert {r["token_counts"] for r in by_ids} == {"counted"}
    # return_token_ids: the chunks' token ids, counted. Without them vLLM's usage has the total, and
    # its R1 parser's thinking count is 0 when the prompt opens <think> (as l1-tiny's template does):
    # the app then splits the total by the streamed chunks, "estimated".
    assert {r["token_counts"] for r in by_chat} == {"counted"} and {r["token_counts"] for r in by_plain} <= {"reported", "estimated"}
    accuracy = [sum(bool(r["correct"]) for r in side) / len(side) for side in (by_ids, by_chat, by_plain)]
    assert max(accuracy) - min(accuracy) <= 0.15, accuracy  # 40 answers each: within noise
    # Same template, same seeds: the same generations (batching on the CPU may, rarely, change a
    # sampled token: compared where both came out alike), counted two or three ways.
    for side, most_apart, mean_apart in ((by_chat, 1, 0.5), (by_plain, 16, 5.0)):
        alike = [(a, b) for a, b in zip(by_ids, side) if a["total_tokens"] == b["total_tokens"]]
        assert len(alike) >= 36, f"only {len(alike)} of 40 generations came out alike"
        gaps = [abs(a["thinking_tokens"] - b["thinking_tokens"]) for a, b in alike]
        assert max(gaps) <= most_apart and sum(gaps) / len(gaps) <= mean_apart, gaps


def test_the_audit_on_the_local_engine_finds_its_caps_enforced(local_app):
    app, served = local_app
    for model, controllers, run in ((TINY_MODEL, "thinking_cap,hard_cap", "audit-local-ids"), (f"{served}@local", "api_budget", "audit-local-chat")):
        outcome = asyncio.run(app.service.sweep(parse_sweep_request(models=model, dataset="arith", controllers=controllers, budgets="8,16,32",
                                                                    samples=1, limit=20, run=run)))  # the audit's minimum
        assert outcome.progress.failed == 0
    verdicts = {v["controller"]: v for run in ("audit-local-ids", "audit-local-chat") for v in app.service.audit(run)["verdicts"]}
    assert verdicts["thinking_cap"]["verdict"] == "enforced", verdicts["thinking_cap"]
    assert verdicts["hard_cap"]["verdict"] == "enforced", verdicts["hard_cap"]
    # vLLM's thinking_token_budget through the chat endpoint (counts: see the test above)
    assert verdicts["api_budget"]["verdict"] == "enforced" and verdicts["api_budget"]["token_counts"] == "counted", verdicts["api_budget"]


def test_the_dashboard_compares_an_endpoint_model_next_to_the_served_one(app_url, app_settings):
    from gradio_client import Client

    client = Client(app_url, verbose=False, httpx_kwargs={"timeout": 120})
    result = client.predict("What is 17 + 25?", TINY_MODEL, [64], ["l1_exact", "s1"], "42", 5, "obey@stub", api_name="/compare")
    cards = {(g["model"], g["controller"]): g for g in result["generations"]}
    assert set(cards) == {(TINY_MODEL, "l1_exact"), (TINY_MODEL, "s1"), ("obey@stub", "l1_exact"), ("obey@stub", "s1")}
    assert cards[(TINY_MODEL, "l1_exact")]["token_counts"] == "counted" and cards[("obey@stub", "l1_exact")]["token_counts"] == "reported"
    stub = cards[("obey@stub", "l1_exact")]
    assert stub["cost_usd"] == pytest.approx((stub["prompt_tokens"] * 1.0 + stub["total_tokens"] * 10.0) / 1e6)  # the stub's prices
    assert "chat API cannot do" in cards[("obey@stub", "s1")]["error"]
    assert cards[(TINY_MODEL, "s1")]["phase"] == "done"
    # the key never reaches the page, its config, or the store
    import httpx

    for path in ("", "config"):
        assert STUB_KEY not in httpx.get(app_url + path, timeout=30).text
    for path in Path(app_settings.data_dir).rglob("*"):
        if path.is_file() and path.stat().st_size < 512 * 2**20:
            assert STUB_KEY.encode() not in path.read_bytes(), f"the key is in {path}"


def test_the_audit_is_a_panel_and_an_api_of_the_dashboard(app_url, service):
    from gradio_client import Client

    from ui.analytics_tab import _audit

    asyncio.run(service.sweep(parse_sweep_request(models="obey@stub,l1-tiny", dataset="arith", controllers="l1_exact", budgets="16,64,128",
                                                  samples=1, limit=20, run="audit-panel")))  # the audit's minimum
    client = Client(app_url, verbose=False, httpx_kwargs={"timeout": 120})
    report = client.predict("audit-panel", api_name="/audit")
    verdicts = {v["model"]: v for v in report["verdicts"]}
    # the stub thinks 64 tokens whatever the prompt asks: over N at 16, and flat; l1-tiny follows N
    # inside its trained range (64-512), so its thinking grows with N over the three budgets
    assert verdicts["obey@stub"]["verdict"] == "ignored" and verdicts["obey@stub"]["token_counts"] == "reported"
    assert verdicts[TINY_MODEL]["token_counts"] == "counted" and verdicts[TINY_MODEL]["verdict"] in ("enforced", "overrun, follows N", "not reached")
    table, chart = _audit(service, "audit-panel")
    assert "| obey@stub | l1_exact | **ignored** |" in table
    spec = chart.to_dict()
    assert len(spec["layer"]) == 3 and (spec["title"]["text"], spec["title"]["subtitle"]) == ("Does the budget hold?", ["dashed: thinking = N"])
    with pytest.raises(Exception, match="no such run"):
        client.predict("audit-nothing", api_name="/audit")


def test_app_py_audit_prints_a_verdict_per_knob(engine, tiny_spec, chat_stub, tmp_path):
    import json
    import os
    import subprocess
    import sys

    from backend.settings import REPO_ROOT

    endpoint = engine.ensure(tiny_spec, 300)
    (tmp_path / "endpoints.toml").write_text(f'[endpoints.stub]\nbase_url = "{chat_stub.base_url}"\nmodel = "ignore"\napi_key_env = "BL_STUB_KEY"\n'
                                             'knob = "anthropic_thinking"\n')
    common = ["--db", str(tmp_path / "audit.duckdb"), "--endpoints", str(tmp_path / "endpoints.toml"), "--limit", "20", "--json"]  # the audit's minimum per budget
    env = {**os.environ, "BL_STUB_KEY": STUB_KEY}
    hosted = subprocess.run([sys.executable, "app.py", "audit", "--model", "ignore@stub", "--controllers", "api_budget", "--budgets", "16,32", *common],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert hosted.returncode == 0, hosted.stderr
    verdict, = json.loads(hosted.stdout)["verdicts"]
    assert (verdict["model"], verdict["verdict"]) == ("ignore@stub", "ignored")
    served = subprocess.run([sys.executable, "app.py", "audit", "--backend-url", endpoint.base_url, f"--backend-api-key={endpoint.api_key}",
                             "--model", TINY_MODEL, "--controllers", "thinking_cap,hard_cap", "--budgets", "8,16", "--run", "audit-cli", *common],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert served.returncode == 0, served.stderr
    assert {v["controller"]: v["verdict"] for v in json.loads(served.stdout)["verdicts"]} == {"thinking_cap": "enforced", "hard_cap": "enforced"}
    assert "audit-cli" in subprocess.run([sys.executable, "app.py", "report", "--db", str(tmp_path / "audit.duckdb")], cwd=REPO_ROOT,
                                         capture_output=True, text=True, timeout=120).stdout  # stored like any run
    for done in (hosted, served):
        assert STUB_KEY not in done.stdout + done.stderr
    assert STUB_KEY.encode() not in (tmp_path / "audit.duckdb").read_bytes()
    (tmp_path / "bad.toml").write_text('[endpoints.stub]\nbase_url = "ftp://x"\nmodel = "m"\n')
    bad = subprocess.run([sys.executable, "app.py", "audit", "--model", "m@stub", "--controllers", "api_budget", "--endpoints", str(tmp_path / "bad.toml")],
                         cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "must start with http:// or https://" in bad.stderr
