"""The endpoints file and the budget knobs (no network: parsing and request parameters only)."""

from __future__ import annotations

import math

import pytest

from backend.errors import InputError
from backend.serving.endpoints import KNOBS, ChatEndpoint, VerifierEndpoint, knob_params, load_endpoints, load_verifiers, parse_model_ref
from backend.settings import REPO_ROOT


def test_the_example_file_loads():
    endpoints = load_endpoints(REPO_ROOT / "endpoints.example.toml")
    assert set(endpoints) == {"openai", "anthropic", "local-vllm", "llamacpp"}
    openai = endpoints["openai"]
    assert (openai.model, openai.api_key_env, openai.knob, openai.price_out_per_m, openai.max_concurrency) == ("o4-mini", "OPENAI_API_KEY", "reasoning_effort", 4.4, 8)
    assert openai.effort_map == (("low", 1024), ("medium", 8192), ("high", math.inf))
    assert endpoints["local-vllm"].api_key_env == ""
    assert load_verifiers(REPO_ROOT / "endpoints.example.toml") == {"far-prm": VerifierEndpoint("far-prm", "http://10.0.0.7:8000", "tiny-prm", 448)}


@pytest.mark.parametrize(("text", "message"), [
    ('[verifiers.v]\nbase_url = "http://h:8000/v1"\nmodel = "m"\nstep_tag_id = 7\n', None),
    ('[verifiers.v]\nbase_url = "h:8000"\nmodel = "m"\nstep_tag_id = 7\n', "base_url (http:// or https://, the server's root) and model are required"),
    ('[verifiers.v]\nbase_url = "http://h"\nmodel = "m"\n', "step_tag_id must be the id of the token that ends each step"),
    ('[verifiers.v]\nbase_url = "http://h"\nmodel = "m"\nstep_tag_id = 7\napi_key = "x"\n', "unknown field(s) api_key"),
])
def test_verifiers_of_the_endpoints_file(tmp_path, text, message):
    path = tmp_path / "endpoints.toml"
    path.write_text(text)
    if message is None:
        assert load_verifiers(path)["v"].base_url == "http://h:8000"  # the server's root: /v1 dropped
        assert load_endpoints(path) == {}  # a file with verifiers only is a valid endpoints file
    else:
        with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
            load_verifiers(path)


@pytest.mark.parametrize(("knob", "native", "extra"), [
    ("reasoning_effort", {"reasoning_effort": "medium"}, {}),
    ("max_completion_tokens", {"max_completion_tokens": 2048}, {}),
    ("anthropic_thinking", {}, {"thinking": {"type": "enabled", "budget_tokens": 2048}}),
    ("vllm_thinking_budget", {}, {"thinking_token_budget": 2048}),
    ("llamacpp_thinking_budget", {}, {"thinking_budget_tokens": 2048}),
    ("sglang_thinking_budget", {}, {"custom_params": {"thinking_budget": 2048}}),
    ("none", {}, {}),
])
def test_each_knob_carries_the_budget(knob, native, extra):
    assert knob_params(ChatEndpoint("e", "http://x/v1", "m", knob=knob), 2048) == (native, extra)
    assert set(KNOBS) >= {knob}


def test_the_effort_map_is_editable_and_its_top_level_is_unbounded():
    endpoint = ChatEndpoint("e", "http://x/v1", "m", knob="reasoning_effort")
    assert [endpoint.effort(n) for n in (1, 1024, 1025, 8192, 100_000)] == ["low", "low", "medium", "medium", "high"]


def write(tmp_path, text: str):
    path = tmp_path / "endpoints.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(("text", "message"), [
    ('[endpoints.x]\nbase_url = "https://a/v1"\nmodel = "m"\napi_key = "sk-123"', "a key never goes in the file"),
    ('[endpoints.x]\nbase_url = "ftp://a"\nmodel = "m"', "must start with http:// or https://"),
    ('[endpoints.x]\nbase_url = "https://a/v1"', "model is required"),
    ('[endpoints.x]\nbase_url = "https://a/v1"\nmodel = "m"\nknob = "magic"', "knob 'magic': choose one of reasoning_effort"),
    ('[endpoints.x]\nbase_url = "https://a/v1"\nmodel = "m"\nprice_out_per_m = -1', "price_out_per_m -1 must be a positive number or 0"),
    ('[endpoints.x]\nbase_url = "https://a/v1"\nmodel = "m"\nmax_concurrency = 0', "max_concurrency 0 must be a positive number"),
    ('[endpoints.x]\nbase_url = "https://a/v1"\nmodel = "m"\nurl = "x"', "unknown field(s) url"),
    ('[endpoints.x]\nbase_url = "https://a/v1"\nmodel = "m"\napi_key_env = "NOT A NAME"', "is not an environment variable name"),
    ('[endpoints.x]\nbase_url = "https://a/v1"\nmodel = "m"\nmax_retries = 11', "max_retries 11 must be a whole number from 0 to 10"),
    ('[endpoints.x]\nbase_url = "https://a/v1"\nmodel = "m"\nstream = "yes"', "stream must be true or false"),
    ('[endpoints.x]\nbase_url = "https://a/v1"\nmodel = "m"\nbudgets = [0, 64]', "budgets must be a list of positive token counts"),
    ('[endpoints.x\n', "not valid TOML"),
    ('title = "none here"', "no [endpoints.NAME] or [verifiers.NAME] tables"),
])
def test_a_bad_endpoints_file_is_refused_with_what_to_fix(tmp_path, text, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[").replace("]", r"\]")):
        load_endpoints(write(tmp_path, text))


def test_a_model_ref_names_only_configured_endpoints():
    endpoints = load_endpoints(REPO_ROOT / "endpoints.example.toml")
    model, endpoint = parse_model_ref("gpt-4o@openai", endpoints)
    assert model == "gpt-4o" and endpoint.name == "openai"
    assert parse_model_ref("l1-tiny", endpoints) is None
    with pytest.raises(InputError, match="no endpoint named 'elsewhere'; endpoints: anthropic, llamacpp, local-vllm, openai"):
        parse_model_ref("m@elsewhere", endpoints)
    with pytest.raises(InputError, match="write MODEL_ID@openai"):
        parse_model_ref("@openai", endpoints)
