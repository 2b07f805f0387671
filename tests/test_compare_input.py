"""Validation of comparison requests: every bad input gets a specific message."""

import pytest

from backend.errors import InputError
from backend.evaluation.costs import estimate_cost
from backend.service.compare import parse_compare_request
from backend.service.inputs import parse_budgets
from backend.serving.registry import ModelRegistry, UnknownModelError
from backend.settings import REPO_ROOT


def test_budgets_parse_from_text_and_lists():
    assert parse_budgets("256, 64 128") == (64, 128, 256)
    assert parse_budgets(["64", 128, "64"]) == (64, 128)
    assert parse_budgets(32) == (32,)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0", "budget 0: must be a positive whole number of tokens"),
        ("-5", "budget -5: must be a positive whole number of tokens"),
        ("12.5", "budget 12.5: must be a positive whole number of tokens"),
        ("lots", "budget 'lots': not a number"),
        ("", "no budget given"),
        ([], "no budget given"),
    ],
)
def test_bad_budgets(value, message):
    with pytest.raises(InputError, match=message):
        parse_budgets(value)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"question": "   "}, "the question is empty"),
        ({"question": "x" * 20_001}, "at most 20000 are accepted"),
        ({"controllers": []}, "no controller chosen"),
        ({"controllers": ["l1_exact", "magic"]}, "unknown controller 'magic'"),
        ({"model": ""}, "no model chosen"),
        ({"seed": "abc"}, "seed 'abc': must be a whole number"),
        ({"budgets": "1 2 3 4 5 6 7 8 9", "controllers": ["l1_exact", "l1_max", "s1"]}, "27 columns"),
    ],
)
def test_bad_requests(kwargs, message):
    args = {"question": "What is 2 + 2?", "model": "tiny-r1-base", "budgets": "64", "controllers": ["s1"]} | kwargs
    with pytest.raises(InputError, match=message):
        parse_compare_request(**args, max_columns=24)


def test_good_request_keeps_order_and_gold():
    request = parse_compare_request("Q?", "tiny-r1-base", ["128", "64"], ["s1", "l1_exact"], gold=" 7 ", seed="3", max_columns=24)
    m = "tiny-r1-base"
    assert request.columns == [(m, "s1", 64), (m, "s1", 128), (m, "l1_exact", 64), (m, "l1_exact", 128)]
    assert request.gold == "7" and request.seed == 3


def test_a_second_model_doubles_the_columns_and_counts_against_the_limit():
    request = parse_compare_request("Q?", "l1-tiny", ["64"], ["l1_exact"], other_model="o4-mini@openai", max_columns=24)
    assert request.columns == [("l1-tiny", "l1_exact", 64), ("o4-mini@openai", "l1_exact", 64)]
    with pytest.raises(InputError, match=r"4 columns \(2 controllers x 1 budgets x 2 models\): at most 3"):
        parse_compare_request("Q?", "l1-tiny", ["64"], ["l1_exact", "s1"], other_model="o4-mini@openai", max_columns=3)
    with pytest.raises(InputError, match="chosen twice"):
        parse_compare_request("Q?", "l1-tiny", ["64"], ["l1_exact"], other_model="l1-tiny", max_columns=24)


def test_the_chosen_verifier_goes_to_the_verifier_guided_controllers_that_name_none():
    request = parse_compare_request("Q?", "l1-tiny", ["256"], ["l1_exact", "maj4:l1_exact", "prm4:l1_exact", "beam2x2", "particles4@tiny-prm"],
                                    verifier=" oracle ", max_columns=24)
    assert request.controllers == ("l1_exact", "maj4:l1_exact", "prm4:l1_exact@oracle", "beam2x2@oracle", "particles4@tiny-prm")
    # A name the box turns into one already chosen is one column, not two.
    assert parse_compare_request("Q?", "l1-tiny", ["256"], ["beam2x2", "beam2x2@oracle"], verifier="oracle", max_columns=24).controllers == ("beam2x2@oracle",)
    # No verifier chosen: the names are left to the search_verifier setting.
    assert parse_compare_request("Q?", "l1-tiny", ["256"], ["beam2x2"], max_columns=24).controllers == ("beam2x2",)


def test_cost_estimate():
    assert estimate_cost(1_000_000, 2_000_000, 0.5, 2.0) == pytest.approx(4.5)


def test_model_registry(tmp_path):
    registry = ModelRegistry(REPO_ROOT / "models")
    assert registry.resolve("l3lab/L1-Qwen-1.5B-Exact").source == "l3lab/L1-Qwen-1.5B-Exact"
    assert registry.resolve("some-org/some-model").budgets[0] >= 512  # hub ids pass through to vLLM
    with pytest.raises(UnknownModelError, match="not a model folder"):
        registry.resolve(str(tmp_path))
    with pytest.raises(UnknownModelError, match="unknown model 'nope'"):
        registry.resolve("nope")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "config.json").write_text("{}")
    assert ModelRegistry(tmp_path).resolve("mine").source == str((tmp_path / "mine").resolve())
