"""The budget-aware trace generator (training/budget_traces.py), counted with the shipped tokenizer:
every Exact trace is exactly N tokens, every Max trace at most M, across the trained range and
every problem size; ticks are single tokens whose values are the remaining tokens in tens; the
answer is boxed after </think> and the thinking's work is right."""

from __future__ import annotations

import random
import re

import pytest

from backend.evaluation.arith import make_problems
from backend.evaluation.grading import extract_boxed
from backend.settings import REPO_ROOT
from training.budget_traces import MAX_TICK, TICK_UNIT, TraceWriter, chain_lines, operations, tick_tokens
from training.traces import column_work

TICK = re.compile(r"‹(\d+)›")


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(REPO_ROOT / "models" / "tiny-r1-base")


@pytest.fixture(scope="module")
def ticked_tokenizer():
    from transformers import AutoTokenizer

    from training.budget_sft import add_ticks

    tokenizer = AutoTokenizer.from_pretrained(REPO_ROOT / "models" / "tiny-r1-base")
    add_ticks(tokenizer)
    return tokenizer


def _count(tokenizer, completion: str) -> int:
    return len(tokenizer(completion, add_special_tokens=False)["input_ids"]) + 1  # the end token counts


def _problems_and_budgets(n_problems: int = 60):
    rng = random.Random(5)
    for problem in make_problems(2024, n_problems):
        for budget in sorted({64, 512, *(rng.randint(64, 512) for _ in range(4))}):
            yield problem, budget


@pytest.mark.parametrize("tick_every", [0, 10])
def test_every_exact_trace_is_exactly_n_tokens(tokenizer, ticked_tokenizer, tick_every):
    tok = ticked_tokenizer if tick_every else tokenizer
    writer, rng = TraceWriter(tok, tick_every=tick_every), random.Random(0)
    for problem, budget in _problems_and_budgets():
        trace = writer.exact(problem, budget, rng)
        assert trace.tokens == budget == _count(tok, trace.completion), (problem.question, budget, trace.plan)


@pytest.mark.parametrize("tick_every", [0, 10])
def test_every_max_trace_is_at_most_m_tokens_and_close_below(tokenizer, ticked_tokenizer, tick_every):
    tok = ticked_tokenizer if tick_every else tokenizer
    writer, rng = TraceWriter(tok, tick_every=tick_every), random.Random(1)
    for problem, budget in _problems_and_budgets():
        trace = writer.at_most(problem, budget, rng)
        n = _count(tok, trace.completion)
        assert n == trace.tokens <= budget, (problem.question, budget)
        assert n >= budget * 0.84 or n == writer.shortest(problem), (problem.question, budget, n)
        assert n <= budget - 3 or n == writer.shortest(problem), (problem.question, budget, n)  # a margin for the model's counting
        if tick_every:  # the countdown runs to where the trace ends, not to M
            assert trace.thinking.startswith(f"‹{n // TICK_UNIT}›"), (budget, n, trace.thinking[:20])


def test_the_answer_is_boxed_after_the_thinking_and_the_work_is_right(tokenizer):
    writer, rng = TraceWriter(tokenizer), random.Random(2)
    for problem, budget in _problems_and_budgets(30):
        trace = writer.exact(problem, budget, rng)
        thinking, _, answer = trace.completion.partition("</think>")
        assert extract_boxed(answer) == str(problem.answer)
        assert f"{problem.answer}." in thinking.splitlines()[-1]  # the closing states the result
        assert "</think>" not in answer
        for a, op, b, _ in operations(problem):  # any column working shown is the right one
            if f"{a} {op} {b}:" in thinking:
                assert column_work(a, op, b).split(": ", 1)[1] in thinking


def test_more_budget_buys_more_work(tokenizer):
    writer = TraceWriter(tokenizer)
    problem = make_problems(7, 1, min_ops=4, max_ops=4)[0]
    small, large = writer.exact(problem, 64, random.Random(3)), writer.exact(problem, 400, random.Random(3))
    assert small.plan.startswith(("worked", "terse")) and "Let me check" not in small.thinking
    assert large.plan.startswith("checked") and all(line in large.thinking for line in chain_lines(problem))
    for a, op, b, _ in operations(problem):
        assert column_work(a, op, b) in large.thinking


def _ticks(tokenizer, completion: str, style: str) -> list[tuple[int, int]]:
    """(position of the tick's first token, its value) for every tick of a completion."""
    digit_of = {tokenizer.convert_tokens_to_ids(t): int(t[1:-1]) for t in tick_tokens(style)}
    ids = tokenizer(completion, add_special_tokens=False)["input_ids"]
    found, position = [], 0
    while position < len(ids):
        if ids[position] in digit_of:
            start, digits = position, ""
            while position < len(ids) and ids[position] in digit_of and (style == "digits" or not digits):
                digits += str(digit_of[ids[position]])  # digit ticks spell one value; token ticks are one each
                position += 1
            found.append((start, int(digits)))
        else:
            position += 1
    return found


@pytest.mark.parametrize(("style", "place"), [("token", "lines"), ("digits", "lines"), ("token", "interval")])
def test_ticks_count_down_the_remaining_tokens_in_tens(tokenizer, style, place):
    from transformers import AutoTokenizer

    from training.budget_sft import add_ticks

    ticked = AutoTokenizer.from_pretrained(REPO_ROOT / "models" / "tiny-r1-base")
    add_ticks(ticked, style=style)
    ids = [ticked.convert_tokens_to_ids(t) for t in tick_tokens(style)]
    assert len(set(ids)) == len(ids) and max(ids) < 448  # single tokens, in the model's embedding rows
    writer, rng = TraceWriter(ticked, tick_every=10, tick_style=style, tick_place=place), random.Random(4)
    for problem, budget in _problems_and_budgets(20):
        trace = writer.exact(problem, budget, rng)
        assert trace.tokens == budget == _count(ticked, trace.completion)
        assert trace.thinking.startswith("‹") and not TICK.search(trace.completion.split("</think>", 1)[1])
        ticks = _ticks(ticked, trace.completion, style)
        values = [value for _, value in ticks]
        for position, value in ticks[:-1]:
            if place == "lines":  # at a line start: the remaining tokens in tens
                assert value == min(MAX_TICK, (budget - position) // TICK_UNIT), (position, value)
            else:  # at the first word boundary where the remaining tens have come down to it: never below them
                assert (budget - position) // TICK_UNIT <= value <= (budget - position + TICK_UNIT) // TICK_UNIT, (position, value)
        if place == "interval":
            assert all(b == a - 1 for a, b in zip(values, values[1:])), values
        assert values == sorted(values, reverse=True) and values[0] == budget // TICK_UNIT  # the budget's leading digits
        assert values[-1] == 0 < values[-2] and trace.thinking.endswith("‹0›")  # the countdown closes the thinking


def test_a_budget_below_the_shortest_trace_is_refused(tokenizer):
    writer = TraceWriter(tokenizer)
    problem = make_problems(1, 1, min_ops=6, max_ops=6)[0]
    with pytest.raises(ValueError, match="budget 10: no trace"):
        writer.exact(problem, 10, random.Random(0))


def test_a_max_trace_that_counts_to_m_closes_at_one_plus_the_hundreds_digit(ticked_tokenizer):
    """max_close="count": the first tick is M's leading digits (as for Exact: nothing to work out
    from N), the ticks step down by one, and the thinking closes at ‹1 + M // 100›, 10 to 22% under M."""
    writer, rng = TraceWriter(ticked_tokenizer, tick_every=10, tick_place="interval", max_close="count"), random.Random(6)
    placed = 0
    for problem, budget in _problems_and_budgets(30):
        try:
            trace = writer.at_most(problem, budget, rng)
        except ValueError as exc:  # a small M that the problem's shortest trace cannot close under
            assert "does not close" in str(exc) and budget < 120, (budget, exc)
            continue
        placed += 1
        floor = 1 + budget // 100
        n = _count(ticked_tokenizer, trace.completion)
        assert n == trace.tokens and budget - TICK_UNIT * floor - budget % TICK_UNIT <= n <= budget - TICK_UNIT * floor, (budget, n)
        values = [value for _, value in _ticks(ticked_tokenizer, trace.completion, "token")]
        assert values[0] == budget // TICK_UNIT and values[-1] == floor and trace.thinking.endswith(f"‹{floor}›"), (budget, values)
        assert all(b == a - 1 for a, b in zip(values, values[1:])), values
    assert placed >= 150


def test_plain_prompt_examples_keep_the_base_styles_without_ticks(ticked_tokenizer):
    """A share of the warm start's examples are plain-prompt traces in the base's own styles (no
    length instruction, no ticks), so that s1 and hard_cap on the L1 model meet what they met on the base."""
    from training.budget_sft import BudgetSFTConfig, budget_examples

    config = BudgetSFTConfig(examples=400, plain_share=0.25, tick_every=10, tick_place="interval", max_share=0.5)
    writer = TraceWriter(ticked_tokenizer, tick_every=10, tick_place="interval")
    pool, plans = budget_examples(ticked_tokenizer, writer, config)
    assert len(pool) == 400 and 70 <= plans["plain"] <= 130, plans
    texts = [ticked_tokenizer.decode(ids) for ids, _ in pool]
    plain = [t for t in texts if "Think for" not in t]
    assert len(plain) == plans["plain"] and not any(TICK.search(t) for t in plain)
    assert all(TICK.search(t.split("Think for", 1)[1]) for t in texts if "Think for" in t)


def test_the_countdown_check_reads_a_trace_as_closed_and_a_cut_one_as_a_runaway(ticked_tokenizer):
    """training/countdown_check.py sorts sampled outputs by what went wrong; a generated trace is the
    ideal sample (closed by ‹0›, first tick N // 10, every step by one), the same trace cut before
    its closing and run long is a runaway."""
    from training.countdown_check import classify, summarize

    writer = TraceWriter(ticked_tokenizer, tick_every=10, tick_place="interval")
    problem = make_problems(77, 1, min_ops=3, max_ops=3)[0]
    trace = writer.exact(problem, 167, random.Random(0))
    good = classify(trace.completion, trace.tokens, 167, "exact", True)
    assert good["closed"] and not good["runaway"] and good["first_tick"] == 16 and good["bad_steps"] == 0 and good["rel_dev"] == 0
    cut = trace.completion.split("‹1›")[0] + "‹9› and more"
    bad = classify(cut, 334, 167, "exact", False)
    assert bad["runaway"] and not bad["closed"] and bad["bad_steps"] == 1
    figures = summarize([good, bad])
    assert figures["runaway_share"] == 0.5 and figures["dev_of_runaways"] == 0.5 and figures["dev_of_closed"] == 0
    assert figures["first_tick_right"] == 1.0 and figures["accuracy"] == 0.5


def test_a_slipped_operation_is_caught_by_its_column_check_and_kept_out_of_the_loss(ticked_tokenizer):
    """slip_share: one operation's column work has a digit off (the result it assembles follows
    from it), its inverse check worked in columns disagrees, the operation is worked again, and the
    chain goes on with the right value; the slipped line (but its ticks) is weighted 0, the rest 1."""
    from training.budget_sft import BudgetSFTConfig, budget_examples
    from training.trace_checks import slipped_work

    rng = random.Random(9)
    for a, op, b in [(37, "+", 48), (143, "-", 79), (6, "+", 41), (100, "-", 9)]:
        text, wrong = slipped_work(a, op, b, rng)
        right = a + b if op == "+" else a - b
        assert wrong != right and text.endswith(f"so {wrong}.") and text != column_work(a, op, b), text
    writer = TraceWriter(ticked_tokenizer, tick_every=10, tick_place="interval", slip_share=1.0)
    caught = 0
    for problem, budget in _problems_and_budgets(20):
        trace = writer.exact(problem, budget, random.Random(budget))
        assert trace.tokens == budget == _count(ticked_tokenizer, trace.completion)
        if trace.masked:
            caught += 1
            (start, end), = trace.masked
            slipped_line = TICK.sub("", trace.completion[start:end])
            after = TICK.sub("", trace.completion[end:])
            check, redo = after.lstrip("\n").split("\n")[:2]
            assert ", so " in slipped_line and ("No, not" in check or "is not" in check) and redo.startswith("Let me redo"), (check, redo)
    assert caught >= 60
    config = BudgetSFTConfig(examples=60, tick_every=10, tick_place="interval", slip_share=1.0, max_share=0.5)
    pool, plans = budget_examples(ticked_tokenizer, writer, config)
    assert plans["slips"] >= 20 and all(len(example) == 3 for example in pool)
    ticks = {ticked_tokenizer.convert_tokens_to_ids(t) for t in tick_tokens()}
    for ids, n_prompt, weights in pool:
        zero = [i for i in range(n_prompt, len(ids)) if weights[i] == 0]
        assert not any(ids[i] in ticks for i in zero)  # the countdown inside a slipped line is still trained
        if zero:  # one line, its ticks left out: ends with the wrong result
            assert ticked_tokenizer.decode([ids[i] for i in zero]).rstrip().endswith("."), ticked_tokenizer.decode([ids[i] for i in zero])


def test_a_max_trace_of_the_first_kind_starts_at_m_digits_minus_c_and_counts_to_its_end(ticked_tokenizer):
    """max_close="first": an Exact trace whose first tick is M // 10 - c (c = 1 + M // 100), a fixed
    function of M's digits, ending at ‹0> like Exact, 10c to 10c + 9 tokens under M."""
    writer, rng = TraceWriter(ticked_tokenizer, tick_every=10, tick_place="interval", max_close="first"), random.Random(8)
    placed = 0
    for problem, budget in _problems_and_budgets(30):
        try:
            trace = writer.at_most(problem, budget, rng)
        except ValueError:
            assert budget < 120
            continue
        placed += 1
        c = 1 + budget // 100
        values = [value for _, value in _ticks(ticked_tokenizer, trace.completion, "token")]
        assert values[0] == budget // TICK_UNIT - c and values[-1] == 0, (budget, values[:3])
        assert budget - TICK_UNIT * c - budget % TICK_UNIT <= trace.tokens == _count(ticked_tokenizer, trace.completion) <= budget - TICK_UNIT * c
    assert placed >= 150


def test_cut_traces_stop_their_next_line_part_way_and_still_land_on_n(ticked_tokenizer):
    """cut_share: a trace stops the line its work would go on with at a word boundary (never inside
    a number) where the countdown closes, and is still exactly N tokens; a cut column work that
    never reached the result closes with a guess ("I think ...")."""
    writer, rng = TraceWriter(ticked_tokenizer, tick_every=10, tick_place="interval", cut_share=1.0), random.Random(10)
    cut = 0
    for problem, budget in _problems_and_budgets(30):
        trace = writer.exact(problem, budget, rng)
        assert trace.tokens == budget == _count(ticked_tokenizer, trace.completion)
        lines = [TICK.sub("", line) for line in trace.thinking.splitlines()]
        works = {column_work(a, op, b) for a, op, b, _ in operations(problem)}
        stopped = [i for i, line in enumerate(lines) if line and line not in works and any(w.startswith(line + " ") for w in works)]
        if stopped:  # a column work stopped part way: nothing but the closing after it, a guess
            cut += 1
            closing = " ".join(lines[stopped[-1] + 1:])
            assert "I think" in closing and ":" not in closing, lines[stopped[-1]:]
    assert cut >= 20, cut


def test_a_closing_block_starts_a_line_at_tick_two_and_no_work_meets_tick_two(ticked_tokenizer):
    """close_block: the work's ticks stop at ‹3›, the closing starts a line with ‹2› (20-29 tokens
    left, the answer included), ‹1› falls inside the closing, ‹0› closes; every trace is exactly N."""
    writer, rng = TraceWriter(ticked_tokenizer, tick_every=10, tick_place="interval", close_block=True, cut_share=0.5), random.Random(12)
    for problem, budget in _problems_and_budgets(30):
        try:
            trace = writer.exact(problem, budget, rng)
        except ValueError:  # a budget no closing block of this problem lands on: the caller draws another
            continue
        assert trace.tokens == budget == _count(ticked_tokenizer, trace.completion)
        lines = trace.thinking.splitlines()
        block = next(i for i, line in enumerate(lines) if "‹2›" in line)
        assert re.match(r"^(‹3›)?‹2›[A-Z]", lines[block]) and lines[-1] in ("‹0›", "‹1›‹0›"), lines[block:]
        assert not any(TICK.search(line) and int(TICK.findall(line)[-1]) < 3 for line in lines[:block])
        ids = ticked_tokenizer(trace.completion[trace.completion.index(lines[block]):], add_special_tokens=False)["input_ids"]
        assert 20 <= len(ids) + 1 <= 29 + 1, len(ids)  # tokens left where ‹2› stands (‹3›‹2› takes one more)
        values = [value for _, value in _ticks(ticked_tokenizer, trace.completion, "token")]
        assert all(b == a - 1 for a, b in zip(values, values[1:])) and values[-1] == 0, values


def test_explicit_column_traces_land_on_n_and_work_each_operation_in_that_style(ticked_tokenizer):
    """column_style="explicit": the recipe's traces (countdown, closing block, cut lines) still land
    on exactly N, and every column work they carry is in the explicit style, none in the compact."""
    writer = TraceWriter(ticked_tokenizer, tick_every=10, tick_place="interval", close_block=True, cut_share=0.5,
                         max_close="first", column_style="explicit")
    rng, worked = random.Random(14), 0
    for problem, budget in _problems_and_budgets(30):
        try:
            trace = writer.exact(problem, budget, rng)
        except ValueError:  # no closing block of this problem lands on this budget
            continue
        assert trace.tokens == budget == _count(ticked_tokenizer, trace.completion)
        text = TICK.sub("", trace.thinking)
        for a, op, b, _ in operations(problem):
            explicit, compact = column_work(a, op, b, "explicit"), column_work(a, op, b)
            worked += explicit in text
            assert explicit == compact or compact not in text, (compact, text)
    assert worked >= 60, worked


def test_slips_are_refused_with_the_explicit_column_style(ticked_tokenizer):
    with pytest.raises(ValueError, match="slips need the compact style"):
        TraceWriter(ticked_tokenizer, tick_every=10, slip_share=0.3, column_style="explicit")


@pytest.mark.parametrize(("thinking", "slip"), [
    ("225 - 36: 15 - 6 = 9, 2 - 3 - 1 = 0, so 109.", "borrow decided wrong"),  # compact: "12" not chosen
    ("225 - 36: 5 - 6 < 0, 15 - 6 = 9, 2 - 3 - 1 = 0, so 109.", "borrow decided wrong"),  # explicit: no "< 0"
    ("225 - 36: 15 - 6 = 9, 12 - 3 = 9, 2 - 1 = 1, so 199.", "carry dropped or added"),
    ("225 - 36: 15 - 6 = 9, 12 - 5 - 1 = 6, 2 - 1 = 1, so 169.", "digit misread"),
    ("225 - 36: 15 - 6 = 9, 12 - 3 - 1 = 7, 2 - 1 = 1, so 179.", "step sum wrong"),
    ("225 - 36: 15 - 6 = 9, 12 - 3 - 1 = 8, 2 - 1 = 1, so 199.", "result read back wrong"),
    ("225 - 36: 5 - 6 < 0, 15 - 6 = 9, 2 - 3 - 1 < 0, 12 - 3 - 1 = 8, so 89.", "a digit column missed"),
    ("225 - 63: 15 - 3 = 12, so 162.", "an operation not in the problem"),
    ("225 - 36: 15 - 6 = 9, 12 - 3 - 1 = 8, 2 - 1 = 1, so 189.\nSo the answer is 188.", "no wrong column line"),
])
def test_the_countdown_check_names_the_first_slip_of_a_wrong_answer(thinking, slip):
    from training.countdown_check import first_slip

    assert first_slip(f"‹5›{thinking}\n‹0›</think>\n\\boxed{{1}}", "Compute 225 - 36.") == slip


def test_the_first_tick_and_tick_two_of_every_ticked_example_weigh_more_and_nothing_else_moves(ticked_tokenizer):
    """first_tick_weight: the budget's digits read from the prompt (the first tick) weigh more in
    the SFT loss; close_tick_weight: so does ‹2›, which starts the closing block; every other
    completion token keeps weight 1, plain-prompt examples have no tick."""
    from training.budget_sft import BudgetSFTConfig, budget_examples

    writer = TraceWriter(ticked_tokenizer, tick_every=10, tick_place="interval", close_block=True)
    config = BudgetSFTConfig(examples=40, plain_share=0.2, tick_every=10, tick_place="interval", max_share=0.5, close_block=True,
                             first_tick_weight=8.0, close_tick_weight=5.0)
    pool, _ = budget_examples(ticked_tokenizer, writer, config)
    ticks = {ticked_tokenizer.convert_tokens_to_ids(t) for t in tick_tokens()}
    two = ticked_tokenizer.convert_tokens_to_ids("‹2›")
    heavy = 0
    for ids, n_prompt, weights in pool:
        first = next((i for i in range(n_prompt, len(ids)) if ids[i] in ticks), None)
        close = next((i for i in range(n_prompt, len(ids)) if ids[i] == two), None)
        expected = [0.0] * n_prompt + [8.0 if i == first else 5.0 if i == close else 1.0 for i in range(n_prompt, len(ids))]
        assert weights == expected
        heavy += first is not None and close is not None
    assert 25 <= heavy < len(pool), heavy


def test_with_close_next_line_the_closing_starts_the_line_after_the_one_holding_tick_three(ticked_tokenizer):
    """close_next_line: no work line between the one that holds ‹3› and the closing's ‹2› (without it
    about a third of the traces have one, where sampled countdowns ran away); still exactly N."""
    writer = TraceWriter(ticked_tokenizer, tick_every=10, tick_place="interval", close_block=True, cut_share=0.5,
                         column_style="explicit", close_next_line=True)
    rng, checked = random.Random(16), 0
    for problem, budget in _problems_and_budgets(30):
        try:
            trace = writer.exact(problem, budget, rng)
        except ValueError:  # no trace of this problem lands on this budget so: the caller draws another
            continue
        assert trace.tokens == budget == _count(ticked_tokenizer, trace.completion)
        lines = trace.thinking.splitlines()
        closing = next(i for i, line in enumerate(lines) if "‹2›" in line)
        assert "‹3›" in lines[closing] or "‹3›" in lines[closing - 1], lines[closing - 2:]
        checked += 1
    assert checked >= 150, checked
