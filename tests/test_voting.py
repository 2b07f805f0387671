"""Majority vote and best-of over hand-made answer sets, with the real grader (math-verify workers).

No engine: the samples are `LiveGeneration` records filled in by hand, as a parallel controller
leaves them, and `settle` (the service's grading step) chooses the group's answer.
"""

from __future__ import annotations

import pytest

from backend.controllers.early_exit import settled_at
from backend.controllers.live import LiveGeneration
from backend.evaluation.grading import same_answer
from backend.evaluation.voting import answer_classes, best_of, majority_vote
from backend.service.records import generation_rows, sample_gen_id, settle
from backend.serving.sampling import Sampling
from store.schema import utc_now
from tests.conftest import run


def same(a: str, b: str) -> bool:
    return same_answer(a, b, timeout_s=10)


def test_equivalent_answers_in_different_forms_share_a_class():
    answers = ["\\frac{1}{2}", "0.5", "1/2", "3", None, "\\dfrac12", "3.0"]
    assert answer_classes(answers, same) == [0, 0, 0, 3, None, 0, 3]


def test_the_largest_class_wins_and_ties_go_to_the_earliest_sample():
    assert majority_vote([0, 1, 1, 3]) == 1           # two votes for the class of sample 1
    assert majority_vote([0, 1, 0, 1]) == 0           # a tie: the class whose first sample came first
    assert majority_vote([None, 1, None, 3, 3]) == 3  # ungraded samples do not vote
    assert majority_vote([None, None]) is None        # nobody answered: no answer


def test_best_of_takes_the_most_confident_answer_ties_earliest_and_skips_no_answer():
    assert best_of([-0.5, -0.1, -0.3]) == 1
    assert best_of([-0.2, -0.2, -0.9]) == 0
    assert best_of([None, -3.0, None]) == 1
    assert best_of([None, None]) is None


def group(controller: str, answers: list[str | None], logprobs: list[float] | None = None) -> LiveGeneration:
    """A finished parallel group as the controller leaves it: each sample's answer text and counts."""
    live = LiveGeneration(controller=controller, budget=256, budget_kind="hint", inner_budget=256 // len(answers))
    for j, answer in enumerate(answers):
        sample = LiveGeneration(controller=controller, budget=256, group_idx=j, inner_budget=live.inner_budget, thinking_tokens=50 + j,
                                delimiter_tokens=1, answer_tokens=10, thinking_text="work", phase="answering",
                                answer_text=f"\n\nThe answer is \\boxed{{{answer}}}." if answer is not None else "\n\nI am not sure.")
        if logprobs is not None:
            sample.answer_logprob_sum, sample.answer_logprob_count = logprobs[j] * 10, 10
        live.samples.append(sample)
    return live


def test_settle_votes_on_graded_equivalence_and_stores_every_sample():
    live = group("maj4:l1_exact", ["7", "0.5", "\\frac{1}{2}", None])
    run(settle(live, gold="1/2", timeout_s=10))
    assert [s.answer_class for s in live.samples] == [0, 1, 1, None]
    assert [s.chosen for s in live.samples] == [False, True, False, False]
    assert live.extracted_answer == "0.5" and live.correct is True
    assert [s.correct for s in live.samples] == [False, True, True, False]
    rows = generation_rows(live, gen_id="g" * 32, run_id="r", created_at=utc_now(), model="m", question="q", gold="1/2", sampling=Sampling(seed=5))
    assert [r["gen_id"] for r in rows] == [sample_gen_id("g" * 32, j) for j in range(4)] == ["g" * 32, "g" * 32 + ".1", "g" * 32 + ".2", "g" * 32 + ".3"]
    assert {r["group_id"] for r in rows} == {"g" * 32}
    assert [r["group_idx"] for r in rows] == [0, 1, 2, 3] and {r["inner_budget"] for r in rows} == {64} and {r["budget"] for r in rows} == {256}
    assert rows[0]["seed"] == 5 and len({r["seed"] for r in rows}) == 4  # sample 0 keeps the group's seed, the others their own


def test_settle_best_of_picks_the_most_confident_answered_sample():
    live = group("best4:l1_exact", ["7", "8", None, "8"], logprobs=[-0.4, -0.2, -0.01, -0.2])
    run(settle(live, gold="7", timeout_s=10))
    assert [s.chosen for s in live.samples] == [False, True, False, False]  # the unanswered sample's confidence does not count
    assert live.extracted_answer == "8" and live.correct is False


@pytest.mark.parametrize(("controller", "chosen"), [
    ("prm4:l1_exact@oracle", [False, False, False, True]),   # the best-scored answered sample (the unanswered one's 0.99 does not count)
    ("pvote4:l1_exact@oracle", [True, False, False, False]),  # "8" weighs 0.4 + 0.3 = 0.7 against "7"'s 0.6
])
def test_verifier_scores_choose_the_answer(controller, chosen):
    live = group(controller, ["8", "7", None, "8"])
    for sample, score in zip(live.samples, [0.4, 0.6, 0.99, 0.3]):
        sample.verifier_score = score
    if controller.startswith("prm"):
        live.samples[3].verifier_score = 0.65
    run(settle(live, gold="8", timeout_s=10))
    assert [s.chosen for s in live.samples] == chosen
    assert live.extracted_answer == "8" and live.correct is True
    rows = generation_rows(live, gen_id="g", run_id="r", created_at=utc_now(), model="m", question="q", gold="8", sampling=Sampling(seed=1))
    assert [r["verifier_score"] for r in rows] == [s.verifier_score for s in live.samples]


def test_a_group_with_no_answer_is_wrong_not_ungraded():
    live = group("maj2:l1_exact", [None, None])
    run(settle(live, gold="3", timeout_s=10))
    assert live.extracted_answer is None and live.correct is False
    assert [s.chosen for s in live.samples] == [False, False]


@pytest.mark.parametrize(("probes", "final", "expected"), [
    ([(32, "5"), (64, "5"), (96, "5")], "5", 32),
    ([(32, "4"), (64, "5"), (96, "5")], "5", 64),
    ([(32, "5"), (64, "4"), (96, "5")], "5", 96),     # settled for good only at the last run of it
    ([(32, "5"), (64, "5"), (96, "4")], "5", None),   # the last probe disagreed: it had not settled
    ([], "5", None),
    ([(32, "5")], None, None),
])
def test_where_the_answer_settled(probes, final, expected):
    assert settled_at(probes, final) == expected


def test_best_of_keeps_answered_samples_without_answer_tokens_eligible():
    # Truncated in their thinking (hard_cap): the box is read from the thinking, no answer tokens were generated.
    live = group("best3:hard_cap", ["7", "8", "7"])
    run(settle(live, gold="8", timeout_s=10))
    assert [s.chosen for s in live.samples] == [True, False, False]  # no confidence anywhere: the earliest answered sample
    assert live.extracted_answer == "7"


def test_each_sample_row_ends_when_its_sample_ended():
    live = group("maj2:l1_exact", ["3", "3"])
    live.samples[0].started_at, live.samples[0].ended_at, live.samples[0].latency_s = 100.0, 104.0, 4.0
    live.samples[1].started_at, live.samples[1].ended_at, live.samples[1].latency_s = 100.0, 101.5, 1.5
    run(settle(live, gold="3", timeout_s=10))
    ended = utc_now()
    rows = generation_rows(live, gen_id="g", run_id="r", created_at=ended, model="m", question="q", gold="3", sampling=Sampling(seed=1))
    assert rows[0]["created_at"] == ended and (ended - rows[1]["created_at"]).total_seconds() == 2.5
